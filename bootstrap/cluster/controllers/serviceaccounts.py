"""The serviceaccounts controller: a `default` ServiceAccount in every active namespace.

kube-controller-manager's controller creates it soon after the namespace; here it is created inside the
namespace's own write (a store listener), so that a pod created right after its namespace finds it (the
ServiceAccount admission refuses pods naming a missing account, registry.py). Namespaces that exist when
the controller starts get theirs at once, and a deleted `default` account comes back unless its namespace
is terminating.
"""

from __future__ import annotations

import asyncio
import logging

from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import NAMESPACES, SERVICEACCOUNTS
from bootstrap.cluster.store import Store, WatchEvent

log = logging.getLogger(__name__)

DEFAULT = "default"


class ServiceAccountsController:
    def __init__(self, store: Store) -> None:
        self._store = store
        store.subscribe(self._on_event)  # from construction on: before the API serves a request
        for ns in store.list(NAMESPACES):
            self.ensure(ns["metadata"]["name"])

    def ensure(self, namespace: str) -> None:
        ns = self._store.try_get(NAMESPACES, None, namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        if self._store.try_get(SERVICEACCOUNTS, namespace, DEFAULT) is not None:
            return
        try:
            self._store.create(SERVICEACCOUNTS, {"metadata": {"name": DEFAULT, "namespace": namespace}})
        except ApiError as err:  # raced by a client creating it: fine
            if err.code != 409:
                log.warning("default service account in %s: %s", namespace, err.message)

    def _on_event(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        if event.resource is NAMESPACES and event.type != "DELETED":
            self.ensure(meta["name"])
        elif event.resource is SERVICEACCOUNTS and event.type == "DELETED" and meta["name"] == DEFAULT:
            self.ensure(meta.get("namespace", ""))

    async def run(self) -> None:
        """Nothing to poll (the listener does the work); stop listening when cancelled."""
        try:
            await asyncio.Event().wait()
        finally:
            self._store.unsubscribe(self._on_event)
