"""Pure helpers of the Deployment controller, after kubernetes/pkg/controller/deployment/util.

Nothing here touches the store: these are the arithmetic (surge/unavailable
fenceposts, proportions), the annotations, the template hash and the
conditions, each as Kubernetes computes them, so the controller reads like
its Go original.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from bootstrap.cluster.controllers._util import condition, parse_time, scaled_value
from bootstrap.cluster.store import Obj, now_rfc3339

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Deployment annotations that stay on the Deployment (Kubernetes' skipCopyAnnotation).
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)

# Condition types and reasons (k8s.io/kubernetes/pkg/controller/deployment/util).
PROGRESSING = "Progressing"
AVAILABLE = "Available"
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"

_SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


# ----- spec accessors with the API server's defaults -----


def replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field, 0) or 0)


def is_rolling(d: Obj) -> bool:
    return ((d["spec"].get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def progress_deadline(d: Obj) -> int | None:
    """None when the deadline is disabled (Kubernetes' MaxInt32 sentinel)."""
    value = d["spec"].get("progressDeadlineSeconds", 600)
    if value is None or int(value) >= 2**31 - 1:
        return None
    return int(value)


def history_limit(d: Obj) -> int:
    return int(d["spec"].get("revisionHistoryLimit", 10))


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable): surge rounds up, unavailable down; both 0 means unavailable 1."""
    rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(rolling.get("maxSurge"), desired, round_up=True, default="25%")
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(fenceposts(d)[1], replicas(d))


# ----- template hash and equality -----


def template_hash(template: Obj, collision_count: int | None) -> str:
    """FNV-1a (32 bit) of the template (plus collisionCount), encoded as Kubernetes' SafeEncodeString."""
    data = json.dumps(_normalized(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_CHARS[b % len(_SAFE_CHARS)] for b in str(h).encode())


def _normalized(value: Any) -> Any:
    """Go's view of a JSON value: null, {} and [] are the zero value, the same as absent.

    Kubernetes compares typed structs, so `creationTimestamp: null` (which kubectl writes into a
    template on `rollout undo`) or `resources: {}` must not make two templates differ.
    """
    if isinstance(value, dict):
        items = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _without_hash(template: Obj) -> Obj:
    t: Obj = _normalized(copy.deepcopy(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return t


def templates_equal(a: Obj, b: Obj) -> bool:
    """Kubernetes' EqualIgnoreHash: the same pod template, apart from the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


# ----- revisions and annotations -----


def revision(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def copy_annotations(d: Obj, rs: Obj) -> bool:
    """Copy the Deployment's own annotations (change-cause, ...) onto the ReplicaSet; True if any changed."""
    changed = False
    target = rs["metadata"].setdefault("annotations", {})
    for key, value in (d["metadata"].get("annotations") or {}).items():
        if key in _NOT_COPIED or target.get(key) == value:
            continue
        target[key] = value
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_total: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_total))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def set_new_rs_revision(rs: Obj, new_revision: int) -> bool:
    """Give the new ReplicaSet its revision, remembering the ones it had (a rollback reuses an old RS)."""
    annotations = rs["metadata"].setdefault("annotations", {})
    old = annotations.get(REVISION)
    if old is not None and int(old or 0) >= new_revision:
        return False
    annotations[REVISION] = str(new_revision)
    if old:
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        annotations[REVISION_HISTORY] = ",".join([*history, old])
    return True


def int_annotation(rs: Obj, key: str) -> int | None:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# ----- conditions -----


def new_condition(cond_type: str, status: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now_rfc3339()
    return {
        "type": cond_type,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: dict[str, Any]) -> None:
    """Kubernetes' SetDeploymentCondition: same status and reason is a no-op; same status keeps the transition time."""
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == cond["type"]), None)
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
    status["conditions"] = [c for c in conditions if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, cond_type: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond_type]


def status_condition(status: Obj, cond_type: str) -> dict[str, Any] | None:
    return condition({"status": status}, cond_type)


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (
        int(status.get("updatedReplicas", 0)) == want
        and int(status.get("replicas", 0)) == want
        and int(status.get("availableReplicas", 0)) == want
        and int(status.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 1))
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas", 0)) - int(old.get("updatedReplicas", 0))
    new_old = int(new.get("replicas", 0)) - int(new.get("updatedReplicas", 0))
    return (
        int(new.get("updatedReplicas", 0)) > int(old.get("updatedReplicas", 0))
        or new_old < old_old
        or int(new.get("readyReplicas", 0)) > int(old.get("readyReplicas", 0))
        or int(new.get("availableReplicas", 0)) > int(old.get("availableReplicas", 0))
    )


def seconds_to_deadline(d: Obj, status: Obj, at: datetime) -> float | None:
    """Seconds left before the Progressing condition times out; None if it cannot (no deadline, done, timed out)."""
    deadline = progress_deadline(d)
    cond = status_condition(status, PROGRESSING)
    if deadline is None or cond is None or cond.get("reason") in (NEW_RS_AVAILABLE_REASON, TIMED_OUT_REASON):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return (since - at).total_seconds() + deadline
