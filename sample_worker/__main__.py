"""`python -m sample_worker`: the image's CMD, hearing SIGTERM from its first instruction.

In a container this process is PID 1, and the kernel gives PID 1 no default
action for SIGTERM: a signal that comes before a handler exists is lost, and
the kubelet then waits out the whole grace period before it SIGKILLs. A pod
deleted in its first second or two (a rollback of a version that just
started) lingered 30 s that way. So the handler goes in here, before the
imports that take that second, and `worker.main` hears about any early signal.
"""

import signal
import sys

_early: list[int] = []
signal.signal(signal.SIGTERM, lambda signum, frame: _early.append(signum))

from sample_worker.worker import run_process  # noqa: E402

sys.exit(run_process(early_signals=_early))
