"""core/v1 Events, written the way Kubernetes' client-go event recorder writes them.

`kubectl describe` shows an object's events by `involvedObject.uid`, and folds
repeats: the recorder keeps one Event per (object, reason, message, source)
and bumps `count` / `lastTimestamp` instead of writing a new one each time.
Recording is best effort: an event that cannot be written (its namespace is
terminating, say) is dropped, never raised to the controller that reported it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import EVENTS
from bootstrap.cluster.store import Obj, Store, now_rfc3339

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

_DedupKey = tuple[str, str, str, str, str, str]


class EventRecorder:
    """Writes and deduplicates Events in the store; call only from the store's event loop."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._names: dict[_DedupKey, tuple[str, str]] = {}  # key -> (namespace, event name)

    def record(
        self,
        involved: Obj,
        *,
        reason: str,
        message: str,
        component: str,
        type: str = NORMAL,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        """Record that `reason: message` happened to `involved` (a full object as the store returns it)."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        key: _DedupKey = (namespace, meta.get("uid", ""), field_path or "", reason, message, component)
        now = now_rfc3339()
        try:
            if key in self._names and self._bump(key, now):
                return
            name = f"{meta.get('name', 'unknown')}.{time.time_ns():x}"
            ref: dict[str, Any] = {
                "kind": involved.get("kind"),
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "apiVersion": involved.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion"),
            }
            if field_path:
                ref["fieldPath"] = field_path
            source: dict[str, str] = {"component": component}
            if host:
                source["host"] = host
            event: Obj = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in ref.items() if v is not None},
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": type,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host or "",
            }
            self._store.create(EVENTS, event)
            self._names[key] = (namespace, name)
        except ApiError as err:
            log.debug("event %s for %s/%s dropped: %s", reason, namespace, meta.get("name"), err.message)

    def _bump(self, key: _DedupKey, now: str) -> bool:
        """Count a repeat on the existing Event; False if it is gone (deleted or expired)."""
        namespace, name = self._names[key]
        existing = self._store.try_get(EVENTS, namespace, name)
        if existing is None:
            del self._names[key]
            return False
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = now
        self._store.update(EVENTS, existing)
        return True
