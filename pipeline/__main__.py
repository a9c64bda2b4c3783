"""`python -m pipeline ARGS`: the CLI; the pipeline-worker image's CMD is `python -m pipeline worker`.

It hears SIGTERM from its first instruction (worker_health/early_sigterm.py): in a
pod it is PID 1, and a signal before the worker's own handler would be lost.
"""

from worker_health import early_sigterm

early_sigterm.install()

from pipeline.cli import main  # noqa: E402  (after the handler: the imports take a while)

main()
