"""The reconcile loop every workload controller shares, as kube-controller-manager runs it.

Store events only enqueue keys (listeners must be cheap, they run inside the
store's write); the loop takes every queued key, syncs it, and re-queues a
failed one with a short back-off (an API conflict) or a longer one (a bug).
"""

from __future__ import annotations

import asyncio
import logging

from bootstrap.cluster.controllers._queue import WorkQueue
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import ResourceType
from bootstrap.cluster.store import Store, WatchEvent

Key = tuple[str, str]

log = logging.getLogger(__name__)


class Controller:
    """Subclasses name the resource they own and implement `sync(key)` and `_on_event(event)`."""

    resource: ResourceType

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: WorkQueue[Key] = WorkQueue()

    async def run(self) -> None:
        """Reconcile until cancelled: every existing object once, then whatever events enqueue."""
        self._store.subscribe(self._on_event)
        try:
            for obj in self._store.list(self.resource):
                self._queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
            while True:
                for key in await self._queue.take_all():
                    self._sync_or_retry(key)
                await asyncio.sleep(0)
        finally:
            self._store.unsubscribe(self._on_event)
            self._queue.close()

    def _sync_or_retry(self, key: Key) -> None:
        what = f"{self.resource.singular} {key[0]}/{key[1]}"
        try:
            self.sync(key)
        except ApiError as err:
            log.warning("%s: %s; retrying", what, err.message)
            self._queue.add_after(key, 1.0)
        except Exception:
            log.exception("%s sync failed; retrying", what)
            self._queue.add_after(key, 5.0)

    def sync(self, key: Key) -> None:
        raise NotImplementedError

    def _on_event(self, event: WatchEvent) -> None:
        raise NotImplementedError
