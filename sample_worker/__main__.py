"""`python -m sample_worker`: the image's CMD, hearing SIGTERM from its first instruction (worker_health/early_sigterm.py)."""

from worker_health import early_sigterm

early_sigterm.install()

from sample_worker.leave import leave  # noqa: E402
from sample_worker.worker import run_process  # noqa: E402  (after the handler: these imports take a second)

leave(run_process())  # with its exit code, past a finalization the native bridge can abort (sample_worker/leave.py)
