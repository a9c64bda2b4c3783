"""Background processes that outlive the `bootstrap up` command that started them.

Each managed process has a pid file and a log file in the stack's state
directory, so `status` and `down` can find it again from another shell, and
`up` can tell "already running" from "stale pid file". Processes are started
in their own session so that a Ctrl-C in the terminal that ran `up` does not
take the stack down with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ProcessError(RuntimeError):
    """A managed process failed to start, with the tail of its log."""


@dataclass(frozen=True)
class ManagedProcess:
    """A long-running command identified by its pid file."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The recorded pid if that process is still alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(
        self,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start `argv` detached and wait until `ready()`; raise with the log tail if it dies or times out."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                # The repository root: `python -m bootstrap.cluster` imports from the source tree
                # (the local stack is not in the installed wheel).
                cwd=cwd or Path(__file__).resolve().parent.parent,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ProcessError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if ready():
                return proc.pid
            time.sleep(0.1)
        self.stop(grace=5)
        raise ProcessError(
            f"{self.name} did not become ready within {timeout:.0f}s; last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, *, grace: float = 15.0) -> bool:
        """SIGTERM the process group, SIGKILL after `grace` seconds. True if something was running."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie we would only be waiting to reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def stop_child(process: subprocess.Popen[bytes], *, grace: float) -> int:
    """SIGTERM a child this process holds, SIGKILL it if it is still alive after `grace` seconds; its exit code.

    For children started with Popen and owned by the caller (the ARM imitation,
    clusters and pipeline workers of tests and benchmarks); the stack's
    detached services stop by pid file (`ManagedProcess.stop`).
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
