"""Heartbeats that keep coming while a long step is silent.

A Docker build can spend minutes in one `RUN` step without printing a line,
and an ACR run's log, or a Runs_Get retried after a 429, can pause as long.
The build activity's heartbeat timeout is what bounds recovery when its worker
dies (Temporal hands the activity to another worker only once a heartbeat is
missed), so the heartbeats must not depend on output: `Keepalive` repeats the
latest details every `interval` seconds from a thread of its own, and the
build's heartbeat timeout can be as short as the other long activities'.

    with Keepalive(activity.heartbeat, interval=5) as beat:
        beat({"run_id": run_id})   # sent now, and repeated until the block ends

The thread runs in a copy of the caller's context: that is where temporalio
keeps the current activity, so `activity.heartbeat` works from it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

KEEPALIVE_SECONDS = 5.0


class Keepalive:
    """Call `beat(*details)` now and every `interval` s with the latest details, until the block ends.

    `initial`: what to repeat until the first call, e.g. a previous attempt's
    last details (an ACR run id), which must not be lost to an empty beat.
    """

    def __init__(self, beat: Callable[..., None], *, interval: float = KEEPALIVE_SECONDS, initial: tuple[Any, ...] = ()) -> None:
        self._beat = beat
        self._interval = interval
        self._details = initial
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._repeat,), name="heartbeat-keepalive", daemon=True
        )

    def __call__(self, *details: Any) -> None:
        with self._lock:
            self._details = details
            self._beat(*details)

    def __enter__(self) -> Keepalive:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _repeat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                self._beat(*self._details)
