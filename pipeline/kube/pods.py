"""Pods and ReplicaSets of an app, reduced to what the pipeline judges them by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from pipeline.kube._resources import describe
from pipeline.kube.client import KubeClient

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


class ContainerStatusDict(TypedDict, total=False):
    name: str
    ready: bool
    restartCount: int
    state: dict[str, dict[str, Any]]
    lastState: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ContainerState:
    name: str
    state: str  # "waiting", "running", "terminated" or "unknown"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    last_terminated_reason: str = ""
    last_exit_code: int | None = None
    last_message: str = ""  # the last run's termination message (with FallbackToLogsOnError: its last log lines)
    started_at: str = ""  # RFC 3339, while running


@dataclass(frozen=True)
class PodInfo:
    name: str
    phase: str
    ready: bool
    terminating: bool
    pod_template_hash: str
    start_time: str  # RFC 3339, "" before the kubelet starts it
    pod_ip: str = ""
    containers: list[ContainerState] = field(default_factory=list)
    init_containers: list[ContainerState] = field(default_factory=list)
    deletion_timestamp: str = ""  # RFC 3339, set once the pod is told to stop
    containers_ready: bool = False
    unready_gates: tuple[str, ...] = ()  # readiness gates whose condition is not True
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaSetInfo:
    name: str
    pod_template_hash: str
    revision: str
    replicas: int
    ready_replicas: int
    available_replicas: int
    owner: str  # name of the owning Deployment, "" if none


def selector_string(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def container_state(raw: ContainerStatusDict | Mapping[str, Any]) -> ContainerState:
    state = raw.get("state") or {}
    kind = next(iter(state), "unknown")
    detail = state.get(kind) or {}
    last = (raw.get("lastState") or {}).get("terminated") or {}
    return ContainerState(
        name=str(raw.get("name", "")),
        state=kind,
        reason=str(detail.get("reason") or ""),
        message=str(detail.get("message") or ""),
        exit_code=detail.get("exitCode") if kind == "terminated" else None,
        restart_count=int(raw.get("restartCount") or 0),
        ready=bool(raw.get("ready")),
        last_terminated_reason=str(last.get("reason") or ""),
        last_exit_code=last.get("exitCode"),
        last_message=str(last.get("message") or ""),
        started_at=str(detail.get("startedAt") or "") if kind == "running" else "",
    )


def pod_info(raw: Mapping[str, Any]) -> PodInfo:
    """A pod as the pipeline sees it, from the API's JSON."""
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    conditions = status.get("conditions") or []
    true = {str(c.get("type")) for c in conditions if c.get("status") == "True"}
    gates = [str(g.get("conditionType")) for g in (raw.get("spec") or {}).get("readinessGates") or []]
    return PodInfo(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        ready="Ready" in true,
        terminating=bool(meta.get("deletionTimestamp")),
        pod_template_hash=str((meta.get("labels") or {}).get(HASH_LABEL, "")),
        start_time=str(status.get("startTime") or ""),
        pod_ip=str(status.get("podIP") or ""),
        containers=[container_state(c) for c in status.get("containerStatuses") or []],
        init_containers=[container_state(c) for c in status.get("initContainerStatuses") or []],
        deletion_timestamp=str(meta.get("deletionTimestamp") or ""),
        containers_ready="ContainersReady" in true,
        unready_gates=tuple(g for g in gates if g not in true),
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
    )


def pod_events(kc: KubeClient, *, namespace: str, name: str, reason: str = "") -> list[dict[str, Any]]:
    """The events about pod `name` (of one `reason`, e.g. "Unhealthy"), oldest first."""
    selector = f"involvedObject.kind=Pod,involvedObject.name={name}" + (f",reason={reason}" if reason else "")
    raw = kc.request(
        method="GET",
        path=f"/api/v1/namespaces/{namespace}/events",
        what=describe("events of Pod", namespace, name),
        query=[("fieldSelector", selector)],
    )
    items = list(raw.get("items") or [])
    return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def list_pods(kc: KubeClient, *, namespace: str, selector: Mapping[str, str]) -> list[PodInfo]:
    """The pods matching the label `selector` in `namespace`, by name."""
    raw = kc.request(
        method="GET",
        path=f"/api/v1/namespaces/{namespace}/pods",
        what=describe("pods", namespace, selector_string(selector)),
        query=[("labelSelector", selector_string(selector))],
    )
    return sorted((pod_info(item) for item in raw.get("items") or []), key=lambda p: p.name)


def replica_set_info(raw: Mapping[str, Any]) -> ReplicaSetInfo:
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    owner = next(
        (str(o.get("name")) for o in meta.get("ownerReferences") or [] if o.get("kind") == "Deployment" and o.get("controller")),
        "",
    )
    return ReplicaSetInfo(
        name=str(meta.get("name", "")),
        pod_template_hash=str((meta.get("labels") or {}).get(HASH_LABEL, "")),
        revision=str((meta.get("annotations") or {}).get(REVISION_ANNOTATION, "")),
        replicas=int(status.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        owner=owner,
    )


def replica_sets_of(kc: KubeClient, *, namespace: str, deployment: str) -> list[ReplicaSetInfo]:
    """The ReplicaSets the Deployment controls (by owner reference), newest revision first."""
    what = describe("Deployment", namespace, deployment)
    dep = kc.request(method="GET", path=f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}", what=what)
    selector = (dep.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
    raw = kc.request(
        method="GET",
        path=f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        what=f"ReplicaSets of {what}",
        query=[("labelSelector", selector_string(selector))],
    )
    uid = (dep.get("metadata") or {}).get("uid")
    owned = [
        item
        for item in raw.get("items") or []
        if any(o.get("uid") == uid and o.get("controller") for o in (item.get("metadata") or {}).get("ownerReferences") or [])
    ]
    infos = [replica_set_info(item) for item in owned]
    return sorted(infos, key=lambda rs: int(rs.revision) if rs.revision.isdigit() else 0, reverse=True)


def pod_logs(
    kc: KubeClient, *, namespace: str, name: str, container: str = "", previous: bool = False, tail_lines: int = 50
) -> str:
    """The last `tail_lines` lines of a container's log (of its previous run with `previous`), as text."""
    query = [("tailLines", str(tail_lines))]
    if container:
        query.append(("container", container))
    if previous:
        query.append(("previous", "true"))
    what = describe("Pod", namespace, name) + (f" container {container}" if container else "")
    path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
    data = kc.request_bytes(method="GET", path=path, what=what, query=query, accept="text/plain")
    return data.decode("utf-8", "replace")
