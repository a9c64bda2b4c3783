"""Helpers the controllers share: owner references, pod readiness, times, int-or-percent."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from bootstrap.cluster.store import Obj


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller=true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_reference(owner: Obj) -> dict[str, Any]:
    """A controller reference to `owner`, as the workload controllers set it on what they create."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def condition(obj: Obj, cond_type: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == cond_type:
            return dict(cond)
    return None


def is_pod_active(pod: Obj) -> bool:
    """Counted by a ReplicaSet: not terminating and not finished (Kubernetes' FilterActivePods)."""
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def is_pod_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def seconds_until_available(pod: Obj, min_ready_seconds: int, at: datetime) -> float | None:
    """0 if the pod is available now, the wait if it is ready but not yet for long enough, None if not ready."""
    if not is_pod_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    cond = condition(pod, "Ready") or {}
    since = parse_time(cond.get("lastTransitionTime"))
    if since is None:
        return 0.0
    remaining = (since - at).total_seconds() + min_ready_seconds
    return max(0.0, remaining)


def scaled_value(value: int | str | None, total: int, *, round_up: bool, default: str) -> int:
    """An IntOrString such as 1 or "25%" resolved against `total`, rounding like Kubernetes."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)
