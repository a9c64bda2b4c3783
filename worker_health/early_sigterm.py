"""SIGTERM heard from a worker process's first instruction.

In a container the worker is PID 1, and the kernel gives PID 1 no default
action for SIGTERM: a signal that comes before a handler exists is lost, and
the kubelet waits out the whole grace period before it SIGKILLs (a pod deleted
while it starts, say by a rollback, lingers that long). An image's entry point
(`python -m sample_worker`, `python -m pipeline`) calls `install()` before its
slow imports; the worker, once its event loop handles signals, checks
`RECEIVED` and stops at once if one came early.
"""

from __future__ import annotations

import signal

RECEIVED: list[int] = []


def install() -> None:
    """Record SIGTERM until the worker installs its own handler (which replaces this one)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: RECEIVED.append(signum))
