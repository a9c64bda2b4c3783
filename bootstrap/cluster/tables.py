"""Server-side printing: `meta.k8s.io/v1` Tables, so `kubectl get` shows the usual columns.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
server's columns verbatim (without a Table it can only print NAME and AGE).
The columns follow kube-apiserver's printers for the kinds served here: pods
(READY, STATUS with waiting reasons such as CrashLoopBackOff, RESTARTS),
deployments, replicasets, namespaces, services, secrets, configmaps, events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bootstrap.cluster import errors
from bootstrap.cluster.resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def age(timestamp: str | None) -> str:
    """kube's short duration (`45s`, `3m12s`, `5h`, `2d`)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return _human(int((datetime.now(UTC) - then).total_seconds()))


def _human(seconds: int) -> str:
    seconds = max(0, seconds)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _pod_status(pod: Obj) -> str:
    meta, status = pod["metadata"], pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(pod: Obj) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    return [
        f"{ready}/{total}",
        _pod_status(pod),
        restarts,
        age(pod["metadata"].get("creationTimestamp")),
        ((status.get("podIPs") or [{}])[0].get("ip") or status.get("podIP")) or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(pod),
    ]


def _readiness_gates(pod: Obj) -> str:
    """printPod's READINESS GATES: how many of the gates' conditions are True, `<none>` without gates."""
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = (pod.get("status") or {}).get("conditions") or []
    met = 0
    for gate in gates:
        found = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
        if found is not None and found.get("status") == "True":
            met += 1
    return f"{met}/{len(gates)}"


def _containers(obj: Obj) -> tuple[str, str]:
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _selector(obj: Obj) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()) or "<none>"


def _deployment(d: Obj) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(d)
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(d["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(d),
    ]


def _replicaset(rs: Obj) -> list[Any]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(rs)
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rs["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(rs),
    ]


def _duration(start: str | None, end: str | None) -> str:
    """kubectl's duration column: from startTime to completionTime (or now), human-readable like AGE."""
    try:
        t0 = datetime.strptime(start or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        t1 = datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if end else datetime.now(UTC)
    except ValueError:
        return ""
    return _human(int((t1 - t0).total_seconds()))


def _job(job: Obj) -> list[Any]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        state = "Complete"
    elif conditions.get("Failed") == "True":
        state = "Failed"
    elif conditions.get("FailureTarget") == "True" or conditions.get("SuccessCriteriaMet") == "True":
        state = "Terminating" if status.get("active") or status.get("terminating") else "Running"
    elif conditions.get("Suspended") == "True":
        state = "Suspended"
    else:
        state = "Running"
    completions = spec.get("completions")
    wanted = f"/{completions}" if completions is not None else f"/1 of {spec.get('parallelism', 1)}"
    names, images = _containers(job)
    return [
        state,
        f"{status.get('succeeded', 0)}{wanted}",
        _duration(status.get("startTime"), status.get("completionTime")),
        age(job["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(job),
    ]


def _cronjob(cj: Obj) -> list[Any]:
    """printCronJob: schedule, time zone, suspend (printBoolPtr), active jobs, last schedule, age; -o wide: the job
    template's containers, images and selector."""
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    names, images = _containers({"spec": job_spec})
    return [
        spec.get("schedule", ""),
        spec.get("timeZone") if spec.get("timeZone") is not None else "<none>",
        "<unset>" if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or []),
        age(last) if last else "<none>",
        age(cj["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector({"spec": job_spec}),
    ]


def _node(node: Obj) -> list[Any]:
    """printNode: STATUS from the Ready condition (+SchedulingDisabled), ROLES from node-role labels."""
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None or ready.get("status") not in ("True", "False") else "Ready"
    if ready is not None and ready.get("status") == "False":
        state = "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = set()
    for key, value in ((node["metadata"].get("labels")) or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    addresses = status.get("addresses") or []
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    external = next((a.get("address") for a in addresses if a.get("type") == "ExternalIP"), None)
    info = status.get("nodeInfo") or {}
    return [
        state,
        ",".join(sorted(roles)) or "<none>",
        age(node["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        internal or "<none>",
        external or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _service(svc: Obj) -> list[Any]:
    spec = svc.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports,
        age(svc["metadata"].get("creationTimestamp")),
    ]


def _event(ev: Obj) -> list[Any]:
    involved = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    return [
        age(last),
        ev.get("type", ""),
        ev.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        ev.get("message", ""),
    ]


def _created(obj: Obj) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


_PRINTERS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "Pod": (
        [
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    "Deployment": (
        [
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deployment,
    ),
    "ReplicaSet": (
        [
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _replicaset,
    ),
    "Job": (
        [
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _job,
    ),
    "CronJob": (
        [
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _cronjob,
    ),
    "Node": (
        [
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    "Namespace": (
        [("Status", "string", 0), ("Age", "string", 0)],
        lambda o: [(o.get("status") or {}).get("phase", "Active"), _created(o)],
    ),
    "Service": (
        [
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
        ],
        _service,
    ),
    "Secret": (
        [("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        lambda o: [o.get("type", "Opaque"), len(o.get("data") or {}), _created(o)],
    ),
    "ConfigMap": (
        [("Data", "integer", 0), ("Age", "string", 0)],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _created(o)],
    ),
    "Event": (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _event,
    ),
    "RoleBinding": (
        [("Role", "string", 0), ("Age", "string", 0)],
        lambda o: [f"{(o.get('roleRef') or {}).get('kind', '')}/{(o.get('roleRef') or {}).get('name', '')}", _created(o)],
    ),
}
_DEFAULT: tuple[list[Column], Callable[[Obj], list[Any]]] = ([("Age", "string", 0)], lambda o: [_created(o)])
_PRINTERS["ClusterRoleBinding"] = _PRINTERS["RoleBinding"]
_PRINTERS["Role"] = _PRINTERS["ClusterRole"] = (  # printRole: the creation time itself, not an age
    [("Created At", "date", 0)],
    lambda o: [o["metadata"].get("creationTimestamp", "")],
)
_PRINTERS["ServiceAccount"] = (
    [("Secrets", "integer", 0), ("Age", "string", 0)],
    lambda o: [len(o.get("secrets") or []), _created(o)],
)
_PRINTERS["PodDisruptionBudget"] = (
    [
        ("Min Available", "string", 0),
        ("Max Unavailable", "string", 0),
        ("Allowed Disruptions", "integer", 0),
        ("Age", "string", 0),
    ],
    lambda o: [
        str((o.get("spec") or {}).get("minAvailable", "N/A")),
        str((o.get("spec") or {}).get("maxUnavailable", "N/A")),
        int((o.get("status") or {}).get("disruptionsAllowed") or 0),
        _created(o),
    ],
)


def _hpa_targets(hpa: Obj) -> str:
    """printHorizontalPodAutoscaler's formatHPAMetrics for the metrics kinds a local HPA has (no metrics server)."""
    parts = []
    for metric in (hpa.get("spec") or {}).get("metrics") or []:
        kind = str(metric.get("type") or "")
        source = metric.get(kind[:1].lower() + kind[1:]) or {}  # Resource: resource, ContainerResource: containerResource
        target = source.get("target") or {}
        name = source.get("name") or (source.get("metric") or {}).get("name") or "<unknown>"
        if target.get("averageUtilization") is not None:
            parts.append(f"{name}: <unknown>/{target['averageUtilization']}%")
        else:
            parts.append(f"<unknown>/{target.get('averageValue') or target.get('value') or '<unknown>'}")
    return ", ".join(parts) if parts else "<none>"


def _hpa(hpa: Obj) -> list[Any]:
    spec = hpa.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_replicas = spec.get("minReplicas")
    return [
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_targets(hpa),
        "<unset>" if min_replicas is None else str(min_replicas),
        int(spec.get("maxReplicas") or 0),
        int((hpa.get("status") or {}).get("currentReplicas") or 0),
        _created(hpa),
    ]


_PRINTERS["HorizontalPodAutoscaler"] = (
    [
        ("Reference", "string", 0),
        ("Targets", "string", 0),
        ("MinPods", "string", 0),
        ("MaxPods", "integer", 0),
        ("Replicas", "integer", 0),
        ("Age", "string", 0),
    ],
    _hpa,
)


_NAME_LAST = frozenset({"Event"})  # kube prints events without a leading NAME (it is a wide column)


def _columns(res: ResourceType) -> list[Obj]:
    columns, _ = _PRINTERS.get(res.kind, _DEFAULT)
    name = {"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}
    defs = [{"name": n, "type": kind, "format": "", "description": n, "priority": prio} for n, kind, prio in columns]
    if res.kind in _NAME_LAST:
        return [*defs, dict(name, priority=1)]
    return [name, *defs]


INCLUDE_OBJECT = ("None", "Metadata", "Object")


def include_object(value: str | None) -> str:
    """`?includeObject=`: Kubernetes' default for Tables is Metadata; anything else unknown is 400."""
    if not value:
        return "Metadata"
    if value not in INCLUDE_OBJECT:
        raise errors.bad_request(f"unrecognized includeObject value: {json.dumps(value)}")
    return value


def _row(res: ResourceType, obj: Obj, include: str = "Metadata") -> Obj:
    _, cells = _PRINTERS.get(res.kind, _DEFAULT)
    meta = obj.get("metadata") or {}
    values = cells(obj)
    row = [*values, meta.get("name", "")] if res.kind in _NAME_LAST else [meta.get("name", ""), *values]
    if include == "Object":
        return {"cells": row, "object": {"kind": res.kind, "apiVersion": res.api_version, **obj}}
    if include == "None":
        return {"cells": row, "object": None}
    partial = {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
    }
    return {"cells": row, "object": partial}


def table(
    res: ResourceType,
    items: list[Obj],
    resource_version: str,
    *,
    with_columns: bool = True,
    include: str = "Metadata",
    list_meta: Obj | None = None,
) -> Obj:
    """A Table of `items`; each row's `object` per `include` (includeObject: the full object, its
    PartialObjectMetadata, or null). `list_meta`: the list's continue/remainingItemCount, if any."""
    body: Obj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version, **(list_meta or {})},
        "rows": [_row(res, obj, include) for obj in items],
    }
    if with_columns:
        body["columnDefinitions"] = _columns(res)
    return body
