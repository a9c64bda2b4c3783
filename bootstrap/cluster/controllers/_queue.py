"""A work queue of object keys, as client-go's workqueue: deduplicated, ordered, with delays.

Store listeners run synchronously inside every write, so they only `add` a key
here; the controller's `run()` loop drains the queue and reconciles. A key
added many times before the loop wakes is reconciled once.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

K = TypeVar("K")


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._pending: dict[K, None] = {}  # an ordered set
        self._ready = asyncio.Event()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def add(self, key: K) -> None:
        self._pending[key] = None
        self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Reconcile `key` again after `delay` seconds (one timer per key: the earliest wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def take_all(self) -> list[K]:
        """Wait for work, then hand over every pending key at once."""
        await self._ready.wait()
        self._ready.clear()
        keys = list(self._pending)
        self._pending.clear()
        return keys

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
