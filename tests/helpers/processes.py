"""Child processes of tests and benchmarks: a free port to give one, and when it is ready to be signalled."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import poll_until


def free_port() -> int:
    """A loopback TCP port nothing listens on right now, for a child (or a test's server) to take."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def catches_signal(pid: int, sig: signal.Signals) -> bool:
    """True once `pid` has a handler for `sig`: its bit in `SigCgt` of /proc/<pid>/status (signal n is bit n-1).

    What a test or benchmark watches instead of sleeping before it signals a
    child that installs a handler while starting; False once the process is gone.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def wait_for_sigterm_handler(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Return once `process` handles SIGTERM (its SigCgt bit, polled every 2 ms): what to wait for before signalling it.

    Fails at once if the process exited first (its output in the message when it went to a pipe), and
    kills the process when it fails.
    """

    def handled() -> bool:
        if process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            pytest.fail(f"the process exited {process.returncode} before it handled SIGTERM:\n{out}")
        return catches_signal(process.pid, signal.SIGTERM)

    try:
        poll_until(handled, timeout=timeout, interval=0.002, what=f"a SIGTERM handler in pid {process.pid}")
    except BaseException:
        process.kill()
        process.wait()
        raise
