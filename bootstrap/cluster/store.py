"""The cluster's object store: etcd's role, with the API server's object bookkeeping.

Everything runs on one asyncio event loop, so the store needs no locks: the
HTTP layer, the controllers and the kubelet call it from the loop, and only
Docker calls leave the loop (in threads that never touch the store).

What it guarantees, as Kubernetes does:
- a single, increasing `resourceVersion` across all objects; every write bumps it;
- `uid`, `creationTimestamp`, `generation` (bumped when anything but metadata
  and status changes) set by the server, never by the client;
- optimistic concurrency: an update that names a stale resourceVersion gets 409;
- graceful deletion: an object with finalizers, or a pod (which its kubelet
  must stop first), gets `deletionTimestamp` and stays until the finalizers are
  gone or the kubelet deletes it with grace period 0;
- watches from any resourceVersion still in the event history, and 410 Gone
  for older ones;
- every object written through to one JSON file on disk, so a restart loses
  nothing (the event history is not kept: clients relist after 410, as they must).
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootstrap.cluster import errors, paging
from bootstrap.cluster.resources import ALL, BY_KEY, JOBS, NAMESPACES, PODS, ResourceType
from bootstrap.cluster.selectors import Matcher

Obj = dict[str, Any]

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NOT_SPEC = frozenset({"apiVersion", "kind", "metadata", "status"})


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    resource: ResourceType
    object: Obj
    old: Obj | None
    resource_version: int


@dataclass(eq=False)
class Watch:
    """One client's watch: events matching its filter arrive on `queue`; None means the store closed it."""

    resource: ResourceType
    namespace: str | None
    match: Matcher
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def offer(self, event: WatchEvent) -> None:
        """Translate a store event into what this watcher sees (label changes add or remove it from view)."""
        if self.closed or event.resource is not self.resource:
            return
        if self.namespace is not None and event.object["metadata"].get("namespace") != self.namespace:
            return
        now_matches = self.match(event.object)
        old_matched = event.old is not None and self.match(event.old)
        if event.type == "DELETED":
            if now_matches or old_matched:
                self.queue.put_nowait(event)
            return
        if now_matches and (event.type == "ADDED" or old_matched):
            self.queue.put_nowait(event)
        elif now_matches:
            self.queue.put_nowait(WatchEvent("ADDED", event.resource, event.object, event.old, event.resource_version))
        elif old_matched:
            self.queue.put_nowait(WatchEvent("DELETED", event.resource, event.object, event.old, event.resource_version))


class Store:
    def __init__(self, data_dir: Path | None = None, *, history: int = 5000) -> None:
        self._data_dir = data_dir
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r.key: {} for r in ALL}
        self._rv = 0
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._oldest_rv = 0  # watches from before this rv get 410 Gone
        self._watches: set[Watch] = set()
        self._listeners: list[Callable[[WatchEvent], None]] = []
        if data_dir is not None:
            self._load(data_dir)
        self._oldest_rv = self._rv
        for name in INITIAL_NAMESPACES:
            if ("", name) not in self._objects[NAMESPACES.key]:
                self.create(NAMESPACES, {"metadata": {"name": name}})

    # ----- reads -----

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, res: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[res.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(res.plural, name, res.group)
        return copy.deepcopy(obj)

    def try_get(self, res: ResourceType, namespace: str | None, name: str) -> Obj | None:
        obj = self._objects[res.key].get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, res: ResourceType, namespace: str | None = None, match: Matcher | None = None) -> list[Obj]:
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self._objects[res.key].items())
            if (namespace is None or ns == namespace) and (match is None or match(obj))
        ]
        return items

    def list_chunk(
        self,
        res: ResourceType,
        namespace: str | None,
        match: Matcher | None,
        *,
        limit: int,
        start: str = "",
        at: int | None = None,
    ) -> tuple[builtins.list[Obj], int, str | None, int | None]:
        """One page of `list` (see paging.py): (items, resourceVersion read at, last key read if more remain,
        remaining item count if more remain and `match` is None). `at`: read as of that resourceVersion."""
        rv = self._rv if at is None or at > self._rv else at
        objects = self._objects[res.key] if rv == self._rv else self._state_at(res, rv)
        keys = sorted(
            (paging.etcd_key(k), k) for k in objects if (namespace is None or k[0] == namespace) and paging.etcd_key(k) >= start
        )
        items: builtins.list[Obj] = []
        scanned = 0
        for _, key in keys:
            if len(items) >= limit:
                break
            scanned += 1
            if match is None or match(objects[key]):
                items.append(copy.deepcopy(objects[key]))
        if scanned >= len(keys):
            return items, rv, None, None
        return items, rv, keys[scanned - 1][0], (len(keys) - scanned if match is None else None)

    def _state_at(self, res: ResourceType, rv: int) -> dict[tuple[str, str], Obj]:
        """The objects of `res` as of resourceVersion `rv`, by rewinding the event history; 410 if it is too short."""
        if rv < self._oldest_rv:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        state = dict(self._objects[res.key])
        for event in reversed(self._history):
            if event.resource_version <= rv:
                break
            if event.resource.key != res.key:
                continue
            meta = event.object["metadata"]
            key = (meta.get("namespace") or "", meta["name"])
            if event.type == "ADDED" or event.old is None:
                state.pop(key, None)
            else:
                state[key] = event.old
        return state

    def owned_by(self, owner_uid: str) -> builtins.list[tuple[ResourceType, Obj]]:
        """Every object with an ownerReference to `owner_uid` (for garbage collection)."""
        found = []
        for res in ALL:
            for obj in self._objects[res.key].values():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    found.append((res, copy.deepcopy(obj)))
        return found

    def uid_exists(self, uid: str) -> bool:
        return any(obj["metadata"].get("uid") == uid for objects in self._objects.values() for obj in objects.values())

    # ----- writes -----

    def create(self, res: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            raise errors.invalid(res.kind, "", [("metadata.name", "Required value: name or generateName is required")], res.group)
        namespace = self._check_namespace(res, meta, for_create=True)
        key = (namespace, name)
        if key in self._objects[res.key]:
            raise errors.already_exists(res.plural, name, res.group)
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta["uid"] = meta["uid"] if res is JOBS and meta.get("uid") else str(uuid.uuid4())  # registry._job_create
        meta["creationTimestamp"] = now_rfc3339()
        meta.pop("deletionTimestamp", None)
        meta.pop("resourceVersion", None)
        if _has_spec(obj):
            meta["generation"] = 1
        if res is NAMESPACES:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return obj
        self._commit("ADDED", res, key, obj, None)
        return copy.deepcopy(obj)

    def update(
        self,
        res: ResourceType,
        obj: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object (PUT). With subresource="status" only status changes; otherwise status is kept."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        namespace = meta.get("namespace", "") if res.namespaced else ""
        key = (namespace or "", name)
        current = self._objects[res.key].get(key)
        if current is None:
            raise errors.not_found(res.plural, name, res.group)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(
                res.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
                res.group,
            )
        new = self._merge_update(res, current, obj, subresource)
        if new == current:
            return copy.deepcopy(current)  # a no-op write does not bump resourceVersion
        if dry_run:
            return new
        if _finalized(res, new):
            return self._remove(res, key, new)
        self._commit("MODIFIED", res, key, new, current)
        return copy.deepcopy(new)

    def delete(
        self,
        res: ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete now, or mark for deletion when finalizers or a running pod must finish first."""
        key = (namespace or "", name)
        current = self._objects[res.key].get(key)
        if current is None:
            raise errors.not_found(res.plural, name, res.group)
        for field_name, value in (preconditions or {}).items():
            if value and current["metadata"].get(field_name) != value:
                raise errors.conflict(res.plural, name, f"Precondition failed: {field_name}: {value}", res.group)
        new = copy.deepcopy(current)
        meta = new["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers and self.owned_by(meta["uid"]):
            finalizers.append("foregroundDeletion")
        if propagation == "Orphan" and "orphan" not in finalizers and self.owned_by(meta["uid"]):
            finalizers.append("orphan")
        if finalizers:
            meta["finalizers"] = finalizers
        graceful_pod = res is PODS and grace_period_seconds != 0 and _pod_may_be_running(current)
        if res is NAMESPACES:
            new.setdefault("status", {})["phase"] = "Terminating"
        if finalizers or graceful_pod or res is NAMESPACES:
            if dry_run:
                return new
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_rfc3339()
                if res is PODS:
                    grace = grace_period_seconds
                    if grace is None:
                        grace = int(new.get("spec", {}).get("terminationGracePeriodSeconds", 30))
                    meta["deletionGracePeriodSeconds"] = grace
            elif res is PODS and grace_period_seconds is not None:
                meta["deletionGracePeriodSeconds"] = min(
                    grace_period_seconds, meta.get("deletionGracePeriodSeconds", grace_period_seconds)
                )
            if new != current:
                self._commit("MODIFIED", res, key, new, current)
            return copy.deepcopy(new)
        if dry_run:
            return new
        return self._remove(res, key, new)

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        """In-process controllers hear every event, synchronously, right after it is committed."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        """Stop telling `listener`: a component that stops (or restarts on the same store) must not leak."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch(
        self,
        res: ResourceType,
        namespace: str | None,
        match: Matcher,
        *,
        since: int | None,
    ) -> tuple[Watch, builtins.list[WatchEvent]]:
        """Open a watch. `since=None` replays the current state as ADDED events first.

        Returns the watch and the events to send before anything new.
        """
        w = Watch(res, namespace, match)
        backlog: list[WatchEvent]
        if since is None:
            backlog = [
                WatchEvent("ADDED", res, obj, None, int(obj["metadata"]["resourceVersion"]))
                for obj in self.list(res, namespace, match)
            ]
        else:
            if since < self._oldest_rv:
                raise errors.gone(f"too old resource version: {since} ({self._oldest_rv})")
            probe = Watch(res, namespace, match)
            for event in self._history:
                if event.resource_version > since:
                    probe.offer(event)
            backlog = []
            while not probe.queue.empty():
                item = probe.queue.get_nowait()
                if item is not None:
                    backlog.append(item)
        self._watches.add(w)
        return w, backlog

    def stop_watch(self, w: Watch) -> None:
        w.closed = True
        self._watches.discard(w)

    def close(self) -> None:
        for w in list(self._watches):
            w.queue.put_nowait(None)
            self.stop_watch(w)

    # ----- internals -----

    def _check_namespace(self, res: ResourceType, meta: Obj, *, for_create: bool) -> str:
        if not res.namespaced:
            meta.pop("namespace", None)
            return ""
        namespace = meta.get("namespace") or "default"
        meta["namespace"] = namespace
        ns = self._objects[NAMESPACES.key].get(("", namespace))
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if for_create and ns["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f'{res.plural} "{meta.get("name", "")}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
            )
        return str(namespace)

    def _merge_update(self, res: ResourceType, current: Obj, obj: Obj, subresource: str | None) -> Obj:
        incoming = copy.deepcopy(obj)
        cur_meta = current["metadata"]
        if subresource == "status":
            # Only status changes, and the status writer's managedFields entry (the API tracks it).
            new = copy.deepcopy(current)
            if "status" in incoming:
                new["status"] = incoming["status"]
            fields = (incoming.get("metadata") or {}).get("managedFields")
            if fields:
                new["metadata"]["managedFields"] = fields
            return new
        if subresource == "finalize" and res is NAMESPACES:
            # Only the namespace's spec.finalizers change (the namespace controller's last step).
            new = copy.deepcopy(current)
            new.setdefault("spec", {})["finalizers"] = list((incoming.get("spec") or {}).get("finalizers") or [])
            return new
        new = incoming
        new["apiVersion"] = res.api_version
        new["kind"] = res.kind
        meta = new.setdefault("metadata", {})
        for server_field in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if server_field in cur_meta:
                meta[server_field] = cur_meta[server_field]
            else:
                meta.pop(server_field, None)
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        if meta.get("deletionTimestamp") is None:
            meta.pop("deletionTimestamp", None)
        if res.has_status:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        if "generation" in cur_meta:
            meta["generation"] = cur_meta["generation"]
            if _spec_part(new) != _spec_part(current):
                meta["generation"] = cur_meta["generation"] + 1
        elif _has_spec(new):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if res is NAMESPACES:
            new["spec"] = copy.deepcopy(current.get("spec", {}))
        return new

    def _commit(self, kind: str, res: ResourceType, key: tuple[str, str], obj: Obj, old: Obj | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[res.key][key] = obj
        self._persist(res, key, obj)
        self._publish(WatchEvent(kind, res, copy.deepcopy(obj), copy.deepcopy(old) if old else None, self._rv))

    def _remove(self, res: ResourceType, key: tuple[str, str], final: Obj) -> Obj:
        old = self._objects[res.key].pop(key)
        self._rv += 1
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._persist(res, key, None)
        self._publish(WatchEvent("DELETED", res, copy.deepcopy(final), copy.deepcopy(old), self._rv))
        return copy.deepcopy(final)

    def _publish(self, event: WatchEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest_rv = self._history[0].resource_version
        self._history.append(event)
        for w in list(self._watches):
            w.offer(event)
        for listener in self._listeners:
            listener(event)

    # ----- persistence -----

    def _path(self, res: ResourceType, key: tuple[str, str]) -> Path:
        assert self._data_dir is not None
        namespace, name = key
        return self._data_dir / res.key.replace("/", "_") / (namespace or "_cluster") / f"{name}.json"

    def _persist(self, res: ResourceType, key: tuple[str, str], obj: Obj | None) -> None:
        if self._data_dir is None:
            return
        path = self._path(res, key)
        if obj is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(obj, separators=(",", ":")))
            os.replace(tmp, path)
        rv_file = self._data_dir / "resourceVersion"
        tmp_rv = rv_file.with_suffix(".tmp")
        tmp_rv.write_text(str(self._rv))
        os.replace(tmp_rv, rv_file)

    def _load(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        rv_file = data_dir / "resourceVersion"
        if rv_file.exists():
            self._rv = int(rv_file.read_text().strip() or 0)
        for res in ALL:
            for path in _json_files(data_dir / res.key.replace("/", "_")):
                obj = json.loads(path.read_text())
                meta = obj["metadata"]
                self._objects[res.key][(meta.get("namespace", ""), meta["name"])] = obj
                self._rv = max(self._rv, int(meta.get("resourceVersion", 0)))


def _finalized(res: ResourceType, obj: Obj) -> bool:
    """A deleted object whose finalizers are all gone leaves the store (pods leave only via the kubelet).

    A namespace also waits for its spec.finalizers (`kubernetes`), removed through the finalize subresource.
    """
    meta = obj["metadata"]
    if res is PODS or not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if res is NAMESPACES and (obj.get("spec") or {}).get("finalizers"):
        return False
    return True


def _json_files(root: Path) -> Iterable[Path]:
    if not root.exists():
        return []
    return sorted(root.glob("*/*.json"))


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in _NOT_SPEC}


def _has_spec(obj: Obj) -> bool:
    return "spec" in obj


def _pod_may_be_running(pod: Obj) -> bool:
    """A pod that a kubelet may have started must be stopped by it before it disappears."""
    return bool(pod.get("spec", {}).get("nodeName")) and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def resource_for(key: str) -> ResourceType:
    return BY_KEY[key]
