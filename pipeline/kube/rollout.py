"""Wait for a Deployment's rollout with watches, and fail fast when it cannot succeed.

    outcome = wait_for_rollout(kc, namespace="temporal-workers", name="sample-worker", generation=applied_generation,
                               timeout=300, on_progress=heartbeat, cancelled=lambda: False)

Two watches, the Deployment (by field selector) and the pods of its selector,
each streamed by its own thread into one queue, resuming from its last
resourceVersion (relisting after a 410); the waiting thread judges the rollout
the moment an event arrives, and checks `cancelled()` and the deadline every
`POLL_SECONDS` in between, without sleeping.

Done, as `kubectl rollout status` judges it: the controller observed the
applied generation, updatedReplicas >= spec.replicas, status.replicas <=
updatedReplicas and availableReplicas >= updatedReplicas; and, from the pods:
spec.replicas ready pods of the new ReplicaSet and no pod of an older one that
is not already terminating.

Failed (RolloutFailed, with Kubernetes' reason), without waiting for the
progress deadline when the pods already show it:
  * Progressing=False with reason ProgressDeadlineExceeded;
  * a container of a new-ReplicaSet pod waiting with reason CrashLoopBackOff,
    ImagePullBackOff, ErrImagePull, ErrImageNeverPull, CreateContainerConfigError,
    InvalidImageName or RunContainerError;
  * such a container terminated (or crashed again) after `MAX_RESTARTS` restarts;
  * with `unready_seconds`: a new pod whose containers have all run that long
    without the pod becoming Ready: `ReadinessProbeFailed` when its containers
    are not ready (the probe and its last error, from the pod's Unhealthy
    events), `NotPolling` when only a readiness gate is missing (Temporal does
    not list the pod as a poller of its task queue).
A crash is named by the container's last termination message (the renderer
sets `terminationMessagePolicy: FallbackToLogsOnError`, so it holds the last
log lines when the worker wrote none) and the last failed liveness probe.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import watch

from pipeline.kube._resources import describe
from pipeline.kube.client import KubeClient
from pipeline.kube.errors import KubeError, RolloutCancelled, RolloutFailed, RolloutTimedOut
from pipeline.kube.pods import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    ContainerState,
    PodInfo,
    pod_events,
    pod_info,
    selector_string,
)
from pipeline.kube.watching import Event as _Event, Pump as _Pump, events as _events
from pipeline.markers import QUEUE_TYPES_ANNOTATION, TASK_QUEUE_ANNOTATION, TEMPORAL_NAMESPACE_ANNOTATION

# A watch request's server-side length: only bounds how long a stopped pump lingers.
WATCH_SLICE_SECONDS = 5
# How often the waiting thread checks cancellation and the deadline between events.
POLL_SECONDS = 0.25
# The longest gap between two progress reports (the activity's heartbeats) when nothing moves.
PROGRESS_SECONDS = 2.0
FAILING_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "InvalidImageName",
        "RunContainerError",
    }
)
MAX_RESTARTS = 2
DEADLINE_REASON = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class RolloutProgress:
    """Where the rollout is; sent to `on_progress` after every burst of events (and at least every 2 s)."""

    replicas: int
    updated: int
    ready: int
    available: int
    new_replica_set: str = ""
    message: str = ""


@dataclass(frozen=True)
class RolloutOutcome:
    """The finished rollout: the ReplicaSet that now runs the app and its pods."""

    replica_set: str
    pod_template_hash: str
    pods: list[str]
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    revision: str = ""


@dataclass
class _State:
    namespace: str
    name: str
    generation: int
    deployment: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_rs: tuple[str, str] | None = None  # (name, pod-template-hash)
    new_rs_revision: str = ""
    unready_seconds: float = 0

    @property
    def what(self) -> str:
        return describe("Deployment", self.namespace, self.name)


def wait_for_rollout(
    kc: KubeClient,
    *,
    namespace: str,
    name: str,
    generation: int,
    timeout: float,
    on_progress: Callable[[RolloutProgress], None],
    cancelled: Callable[[], bool],
    unready_seconds: float = 0,
) -> RolloutOutcome:
    """Watch the Deployment `namespace/name` until generation `generation` (0 = its current one) has rolled out.

    `unready_seconds` > 0: fail once a new pod's containers have all run that long without it being Ready.

    Raises RolloutFailed (non-retryable) with the reason when it cannot succeed,
    RolloutTimedOut after `timeout` seconds, RolloutCancelled once `cancelled()`
    is true, and other KubeErrors for API failures.
    """
    deadline = time.monotonic() + timeout
    state = _State(namespace=namespace, name=name, generation=generation, unready_seconds=unready_seconds)
    items, dep_rv = _list_deployment(kc, state)
    state.deployment = items[0] if items else None
    if state.deployment is None:
        raise RolloutFailed("NotFound", f"{state.what}: not found; apply the manifests before waiting for the rollout")
    if state.generation <= 0:
        state.generation = int(state.deployment["metadata"].get("generation") or 0)
    selector = _selector(state.deployment)
    items, pods_rv = _list_pods(kc, state, selector)
    state.pods = {item["metadata"]["name"]: item for item in items}
    events: queue.Queue[_Event] = queue.Queue()
    stop = threading.Event()
    pumps = (
        _Pump(
            "deployment",
            events,
            stop,
            dep_rv,
            lambda w, rv: _watch_deployment(kc, state, w, rv),
            lambda: _list_deployment(kc, state),
        ),
        _Pump(
            "pods",
            events,
            stop,
            pods_rv,
            lambda w, rv: _watch_pods(kc, state, w, selector, rv),
            lambda: _list_pods(kc, state, selector),
        ),
    )
    for pump in pumps:
        pump.start()
    try:
        last = _Judge(kc, state).judge()
        on_progress(last.progress)
        reported = time.monotonic()
        while last.outcome is None:
            if cancelled():
                raise RolloutCancelled(
                    "Cancelled", f"{state.what}: stopped waiting for the rollout: cancelled ({last.progress.message})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RolloutTimedOut(
                    "RolloutTimeout",
                    f"{state.what}: the rollout did not finish within {timeout:g}s: {last.progress.message}; "
                    f"see `kubectl -n {namespace} describe deployment {name}`",
                )
            try:
                _apply_event(state, events.get(timeout=min(POLL_SECONDS, remaining)))
            except queue.Empty:
                if time.monotonic() - reported >= PROGRESS_SECONDS:  # a heartbeat even when nothing moves
                    last = _Judge(kc, state).judge()  # also the clock of the unready limit
                    on_progress(last.progress)
                    reported = time.monotonic()
                continue
            while not events.empty():  # judge once per burst of events
                _apply_event(state, events.get_nowait())
            last = _Judge(kc, state).judge()
            on_progress(last.progress)
            reported = time.monotonic()
        return last.outcome
    finally:
        stop.set()


# ----- applying the pumps' events (pipeline/kube/watching.py) -----


def _apply_event(state: _State, event: _Event) -> None:
    source, kind, payload = event
    if kind == "ERROR":
        raise payload
    if source == "deployment":
        if kind == "DELETED":
            raise RolloutFailed("DeploymentDeleted", f"{state.what}: was deleted while rolling out")
        if kind == "RELIST":
            state.deployment = payload[0] if payload else state.deployment
        else:
            state.deployment = payload
        return
    if kind == "RELIST":
        state.pods = {item["metadata"]["name"]: item for item in payload}
    elif kind == "DELETED":
        state.pods.pop(str(payload.get("metadata", {}).get("name") or ""), None)
    else:
        state.pods[str(payload.get("metadata", {}).get("name") or "")] = payload


def _list_deployment(kc: KubeClient, state: _State) -> tuple[list[dict[str, Any]], str]:
    raw = kc.request(
        method="GET",
        path=f"/apis/apps/v1/namespaces/{state.namespace}/deployments",
        what=state.what,
        query=[("fieldSelector", f"metadata.name={state.name}")],
    )
    return list(raw.get("items") or []), str((raw.get("metadata") or {}).get("resourceVersion") or "")


def _list_pods(kc: KubeClient, state: _State, selector: Mapping[str, str]) -> tuple[list[dict[str, Any]], str]:
    raw = kc.request(
        method="GET",
        path=f"/api/v1/namespaces/{state.namespace}/pods",
        what=f"pods of {state.what}",
        query=[("labelSelector", selector_string(selector))],
    )
    return list(raw.get("items") or []), str((raw.get("metadata") or {}).get("resourceVersion") or "")


def _watch_deployment(kc: KubeClient, state: _State, w: watch.Watch, rv: str) -> Iterator[tuple[str, dict[str, Any]]]:
    return _events(
        w,
        kc.apps.list_namespaced_deployment,
        state.what,
        namespace=state.namespace,
        field_selector=f"metadata.name={state.name}",
        resource_version=rv,
        timeout_seconds=WATCH_SLICE_SECONDS,
    )


def _watch_pods(
    kc: KubeClient, state: _State, w: watch.Watch, selector: Mapping[str, str], rv: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    return _events(
        w,
        kc.core.list_namespaced_pod,
        f"pods of {state.what}",
        namespace=state.namespace,
        label_selector=selector_string(selector),
        resource_version=rv,
        timeout_seconds=WATCH_SLICE_SECONDS,
    )


def _selector(deployment: Mapping[str, Any]) -> dict[str, str]:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {str(k): str(v) for k, v in labels.items()}


# ----- judging -----


@dataclass(frozen=True)
class _Verdict:
    progress: RolloutProgress
    outcome: RolloutOutcome | None = None


class _Judge:
    def __init__(self, kc: KubeClient, state: _State) -> None:
        self.kc = kc
        self.state = state

    def judge(self) -> _Verdict:
        state = self.state
        dep = state.deployment
        assert dep is not None
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        want = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas") or 0)
        current = int(status.get("replicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        observed = int(status.get("observedGeneration") or 0) >= state.generation

        def progress(message: str) -> RolloutProgress:
            rs = state.new_rs[0] if state.new_rs else ""
            return RolloutProgress(
                replicas=want, updated=updated, ready=ready, available=available, new_replica_set=rs, message=message
            )

        if not observed:
            return _Verdict(progress(f"waiting for the controller to observe generation {state.generation}"))
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("reason") == DEADLINE_REASON:
                self._find_new_replica_set(dep)
                unready = [p for p in self._pods()[0] if not p.ready and not p.terminating]
                why = "; ".join(self._why_unready(p) for p in unready)
                raise RolloutFailed(
                    DEADLINE_REASON,
                    f"{state.what}: {DEADLINE_REASON}: {condition.get('message') or 'no progress within the deadline'}; "
                    f"{updated} of {want} updated, {available} available"
                    + (f"; {why}" if why else "")
                    + f"; see `kubectl -n {state.namespace} describe deployment {state.name}` and the new pods' events",
                    not_polling=tuple(p.name for p in unready if p.containers_ready and p.unready_gates),
                )
        self._find_new_replica_set(dep)
        new_pods, old_live = self._pods()
        for pod in new_pods:
            self._fail_fast(pod)
            self._fail_unready(pod)
        if state.new_rs is None:
            return _Verdict(progress("waiting for the new ReplicaSet"))
        if updated < want:
            return _Verdict(progress(f"{updated} of {want} new replicas have been updated"))
        if current > updated:
            return _Verdict(progress(f"{current - updated} old replicas are pending termination"))
        if available < updated:
            return _Verdict(progress(f"{available} of {updated} updated replicas are available"))
        live_new = [p for p in new_pods if not p.terminating]
        ready_new = [p for p in live_new if p.ready]
        if len(ready_new) < want:
            return _Verdict(progress(f"{len(ready_new)} of {want} new pods seen ready"))
        if old_live:
            return _Verdict(progress(f"{len(old_live)} old pods still running: {', '.join(p.name for p in old_live)}"))
        name, pod_hash = state.new_rs
        outcome = RolloutOutcome(
            replica_set=name,
            pod_template_hash=pod_hash,
            pods=sorted(p.name for p in ready_new),
            replicas=want,
            updated_replicas=updated,
            ready_replicas=ready,
            available_replicas=available,
            revision=state.new_rs_revision,
        )
        return _Verdict(progress(f"successfully rolled out ({name})"), outcome)

    def _find_new_replica_set(self, dep: Mapping[str, Any]) -> None:
        """The ReplicaSet whose revision is the Deployment's (cached per revision)."""
        state = self.state
        revision = str(((dep.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION) or "")
        if not revision or (state.new_rs is not None and state.new_rs_revision == revision):
            return
        raw = self.kc.request(
            method="GET",
            path=f"/apis/apps/v1/namespaces/{state.namespace}/replicasets",
            what=f"ReplicaSets of {state.what}",
            query=[("labelSelector", selector_string(_selector(dep)))],
        )
        uid = (dep.get("metadata") or {}).get("uid")
        for item in raw.get("items") or []:
            meta = item.get("metadata") or {}
            owned = any(o.get("uid") == uid and o.get("controller") for o in meta.get("ownerReferences") or [])
            if owned and str((meta.get("annotations") or {}).get(REVISION_ANNOTATION)) == revision:
                state.new_rs = (str(meta["name"]), str((meta.get("labels") or {}).get(HASH_LABEL, "")))
                state.new_rs_revision = revision
                return

    def _pods(self) -> tuple[list[PodInfo], list[PodInfo]]:
        """(pods of the new ReplicaSet, pods of older ones that are not terminating)."""
        infos = [pod_info(raw) for raw in self.state.pods.values()]
        if self.state.new_rs is None:
            return [], []
        new_hash = self.state.new_rs[1]
        new = [p for p in infos if p.pod_template_hash == new_hash]
        old = [
            p for p in infos if p.pod_template_hash != new_hash and not p.terminating and p.phase not in ("Succeeded", "Failed")
        ]
        return sorted(new, key=lambda p: p.name), sorted(old, key=lambda p: p.name)

    def _fail_fast(self, pod: PodInfo) -> None:
        if pod.terminating:
            return
        for c in [*pod.init_containers, *pod.containers]:
            reason = _failing_reason(c)
            if reason:
                detail = c.message or c.last_terminated_reason or c.reason
                exit_code = c.exit_code if c.exit_code is not None else c.last_exit_code
                code = f", last exit code {exit_code}" if exit_code is not None else ""
                logs = f"`kubectl -n {self.state.namespace} logs {pod.name} -c {c.name} --previous`"
                hint = "check the image reference and registry access" if "Image" in reason else f"see {logs}"
                said = _last_lines(c.last_message)
                probe = self._last_probe_failure(pod, "Liveness")
                raise RolloutFailed(
                    reason,
                    f"{self.state.what}: pod {pod.name} container {c.name}: {reason}: {detail} "
                    f"(restarts {c.restart_count}{code})"
                    + (f"; its last output: {said}" if said else "")
                    + (f"; {probe}; the app declares a health endpoint: serve it, or remove health_port" if probe else "")
                    + f"; {hint}",
                )

    def _fail_unready(self, pod: PodInfo) -> None:
        """A new pod whose containers all ran `unready_seconds` without the pod being Ready: say why, and fail."""
        limit = self.state.unready_seconds
        if limit <= 0 or pod.ready or pod.terminating or pod.phase != "Running" or not pod.containers:
            return
        if any(c.state != "running" or not c.started_at for c in pod.containers):
            return
        running_for = time.time() - max(_epoch(c.started_at) for c in pod.containers)
        if running_for < limit:
            return
        reason = "ReadinessProbeFailed" if not pod.containers_ready else "NotPolling"
        raise RolloutFailed(
            reason,
            f"{self.state.what}: {reason}: {self._why_unready(pod)} (running {running_for:.0f}s)",
            not_polling=(pod.name,) if reason == "NotPolling" else (),
        )

    def _why_unready(self, pod: PodInfo) -> str:
        """Why a running new pod is not Ready: its failing readiness probe, or the readiness gate nobody set."""
        if not pod.containers_ready:
            probe = self._last_probe_failure(pod, "Readiness")
            if probe:
                return (
                    f"pod {pod.name}: {probe}; the app declares a health endpoint (health_port): serve its "
                    "readiness path there, or remove health_port from the app if the worker has none"
                )
            return f"pod {pod.name}: containers not ready"
        if pod.unready_gates:
            queue = pod.annotations.get(TASK_QUEUE_ANNOTATION, "")
            types = pod.annotations.get(QUEUE_TYPES_ANNOTATION, "")
            gates = ", ".join(pod.unready_gates)
            if queue:
                return (
                    f"pod {pod.name} runs but Temporal does not list it as a poller of task queue {queue!r} ({types}) "
                    f"in namespace {pod.annotations.get(TEMPORAL_NAMESPACE_ANNOTATION, '?')} (readiness gate {gates} not True)"
                )
            return f"pod {pod.name}: readiness gate {gates} not True"
        return f"pod {pod.name}: not ready"

    def _last_probe_failure(self, pod: PodInfo, kind: str) -> str:
        """`<kind> probe failed: <its last error> (N times)` from the pod's Unhealthy events, or ""."""
        try:
            found = pod_events(self.kc, namespace=self.state.namespace, name=pod.name, reason="Unhealthy")
        except KubeError:
            return ""  # the events are an explanation, never a reason to fail differently
        mine = [e for e in found if str(e.get("message") or "").startswith(f"{kind} probe failed")]
        if not mine:
            return ""
        last = mine[-1]
        count = int(last.get("count") or 1)
        return f"{str(last.get('message')).strip()} ({count} time{'s' if count != 1 else ''})"


def _last_lines(text: str, lines: int = 5, chars: int = 600) -> str:
    """The end of a termination message, on one line: what the crash said last."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:]


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _failing_reason(c: ContainerState) -> str:
    if c.state == "waiting" and c.reason in FAILING_WAITING_REASONS:
        return c.reason
    crashed = c.state == "terminated" or (c.state == "waiting" and c.last_terminated_reason != "")
    if crashed and c.restart_count >= MAX_RESTARTS:
        return "CrashLoopBackOff" if c.state == "waiting" else "ContainerCrashing"
    return ""
