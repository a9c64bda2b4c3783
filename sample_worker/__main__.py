"""`python -m sample_worker`: the image's CMD, hearing SIGTERM from its first instruction (worker_health/early_sigterm.py)."""

import sys

from worker_health import early_sigterm

early_sigterm.install()

from sample_worker.worker import run_process  # noqa: E402  (after the handler: these imports take a second)

sys.exit(run_process())
