"""Garbage collection: owner references and namespace deletion, as kube-controller-manager does them.

- Background: the owner is gone at once; its dependents are then deleted.
- Foreground: the owner waits with the `foregroundDeletion` finalizer while its
  dependents are deleted (themselves in the foreground); once no dependent with
  `blockOwnerDeletion` is left, the finalizer goes and so does the owner.
- Orphan: the `orphan` finalizer: dependents lose their reference to the owner,
  then the finalizer goes.
- A dependent whose owners no longer exist is deleted (a dangling reference after
  a restart, or a create that raced its owner's deletion).
- Namespaces: everything in a Terminating namespace is deleted; when nothing is
  left, the `kubernetes` finalizer is removed (finalize subresource) and the
  namespace disappears.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bootstrap.cluster.controllers._queue import WorkQueue
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import ALL, BY_KEY, NAMESPACES, ResourceType, by_kind
from bootstrap.cluster.store import Obj, Store, WatchEvent

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
NAMESPACE_FINALIZER = "kubernetes"

# Work items: ("owner", resource key, namespace, name) | ("gone", uid) | ("dependent", key, ns, name) | ("namespace", name)
Item = tuple[str, ...]


class GarbageCollector:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: WorkQueue[Item] = WorkQueue()

    async def run(self) -> None:
        """Collect garbage as deletions happen, until cancelled."""
        self._store.subscribe(self._on_event)
        try:
            self._initial_scan()
            while True:
                for item in await self._queue.take_all():
                    try:
                        self.process(item)
                    except ApiError as err:
                        log.warning("garbage collection of %s: %s; retrying", item, err.message)
                        self._queue.add_after(item, 1.0)
                    except Exception:
                        log.exception("garbage collection of %s failed; retrying", item)
                        self._queue.add_after(item, 5.0)
                await asyncio.sleep(0)
        finally:
            self._store.unsubscribe(self._on_event)
            self._queue.close()

    def _initial_scan(self) -> None:
        """After a restart: resume pending deletions and find dependents whose owners vanished meanwhile."""
        for res in ALL:
            for obj in self._store.list(res):
                self._enqueue_for(res, obj, deleted=False, added=True)

    # ----- event handling (cheap: enqueue only) -----

    def _on_event(self, event: WatchEvent) -> None:
        self._enqueue_for(event.resource, event.object, deleted=event.type == "DELETED", added=event.type == "ADDED")

    def _enqueue_for(self, res: ResourceType, obj: Obj, *, deleted: bool, added: bool) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        refs = meta.get("ownerReferences") or []
        if deleted:
            self._queue.add(("gone", meta["uid"]))
            for ref in refs:  # an owner waiting in the foreground may now be free to go
                self._queue.add(("owner-ref", namespace, ref.get("apiVersion", ""), ref.get("kind", ""), ref.get("name", "")))
        elif meta.get("deletionTimestamp") and set(meta.get("finalizers") or []) & {FOREGROUND, ORPHAN}:
            self._queue.add(("owner", res.key, namespace, meta["name"]))
        elif added and refs:
            self._queue.add(("dependent", res.key, namespace, meta["name"]))
        if res is NAMESPACES and meta.get("deletionTimestamp"):
            self._queue.add(("namespace", meta["name"]))
        elif res.namespaced and deleted and namespace:
            ns = self._store.try_get(NAMESPACES, None, namespace)
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self._queue.add(("namespace", namespace))

    # ----- processing -----

    def process(self, item: Item) -> None:
        kind = item[0]
        if kind == "gone":
            self._collect_dependents_of(item[1])
        elif kind == "owner":
            self._process_owner(_resource(item[1]), item[2], item[3])
        elif kind == "owner-ref":
            res = by_kind(item[2], item[3])
            if res is not None:
                self._process_owner(res, item[1] if res.namespaced else "", item[4])
        elif kind == "dependent":
            self._check_dependent(_resource(item[1]), item[2], item[3])
        elif kind == "namespace":
            self._process_namespace(item[1])

    def _collect_dependents_of(self, uid: str) -> None:
        for res, dep in self._store.owned_by(uid):
            self._check_dependent(res, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])

    def _check_dependent(self, res: ResourceType, namespace: str, name: str) -> None:
        """Delete a dependent all of whose owners are gone; drop references to the gone ones otherwise."""
        dep = self._store.try_get(res, namespace, name)
        if dep is None:
            return
        refs: list[dict[str, Any]] = dep["metadata"].get("ownerReferences") or []
        alive = [ref for ref in refs if self._owner_alive(dep, ref)]
        if len(alive) == len(refs):
            return
        if alive:
            dep["metadata"]["ownerReferences"] = alive
            self._store.update(res, dep)
            return
        if not dep["metadata"].get("deletionTimestamp"):
            self._delete(res, dep, "Background")

    def _process_owner(self, res: ResourceType, namespace: str, name: str) -> None:
        owner = self._store.try_get(res, namespace, name)
        if owner is None or not owner["metadata"].get("deletionTimestamp"):
            return
        finalizers: list[str] = list(owner["metadata"].get("finalizers") or [])
        uid = owner["metadata"]["uid"]
        dependents = self._store.owned_by(uid)
        if ORPHAN in finalizers:
            for dep_res, dep in dependents:
                dep["metadata"]["ownerReferences"] = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                self._store.update(dep_res, dep)
            finalizers.remove(ORPHAN)
            self._set_finalizers(res, owner, finalizers)
            return
        if FOREGROUND not in finalizers:
            return
        blocking = 0
        for dep_res, dep in dependents:
            ref = next(r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") == uid)
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not dep["metadata"].get("deletionTimestamp"):
                self._delete(dep_res, dep, "Foreground")
        if blocking == 0:
            finalizers.remove(FOREGROUND)
            self._set_finalizers(res, owner, finalizers)

    def _process_namespace(self, name: str) -> None:
        ns = self._store.try_get(NAMESPACES, None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for res in ALL:
            if not res.namespaced:
                continue
            for obj in self._store.list(res, name):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(res, obj, "Background")
        if remaining:
            return
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != NAMESPACE_FINALIZER]
        if finalizers != (ns.get("spec") or {}).get("finalizers"):
            ns.setdefault("spec", {})["finalizers"] = finalizers
            self._store.update(NAMESPACES, ns, subresource="finalize")

    # ----- store helpers -----

    def _owner_alive(self, dep: Obj, ref: dict[str, Any]) -> bool:
        """The referenced owner exists with the referenced uid (a same-name successor does not count)."""
        res = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if res is None:  # a kind this cluster does not serve: trust the uid alone
            return self._store.uid_exists(ref.get("uid", ""))
        namespace = dep["metadata"].get("namespace", "") if res.namespaced else ""
        owner = self._store.try_get(res, namespace, ref.get("name", ""))
        return owner is not None and owner["metadata"].get("uid") == ref.get("uid")

    def _delete(self, res: ResourceType, obj: Obj, propagation: str) -> None:
        meta = obj["metadata"]
        try:
            self._store.delete(
                res, meta.get("namespace"), meta["name"], propagation=propagation, preconditions={"uid": meta["uid"]}
            )
        except ApiError as err:
            if err.code not in (404, 409):
                raise

    def _set_finalizers(self, res: ResourceType, obj: Obj, finalizers: list[str]) -> None:
        if finalizers:
            obj["metadata"]["finalizers"] = finalizers
        else:
            obj["metadata"].pop("finalizers", None)
        self._store.update(res, obj)


def _resource(key: str) -> ResourceType:
    return BY_KEY[key]
