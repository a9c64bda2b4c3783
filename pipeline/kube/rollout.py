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
  * such a container terminated (or crashed again) after `MAX_RESTARTS` restarts.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch

from pipeline.kube._resources import describe
from pipeline.kube.client import KubeClient
from pipeline.kube.errors import KubeExpired, RolloutCancelled, RolloutFailed, RolloutTimedOut, api_errors
from pipeline.kube.pods import HASH_LABEL, REVISION_ANNOTATION, ContainerState, PodInfo, pod_info, selector_string

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
) -> RolloutOutcome:
    """Watch the Deployment `namespace/name` until generation `generation` (0 = its current one) has rolled out.

    Raises RolloutFailed (non-retryable) with the reason when it cannot succeed,
    RolloutTimedOut after `timeout` seconds, RolloutCancelled once `cancelled()`
    is true, and other KubeErrors for API failures.
    """
    deadline = time.monotonic() + timeout
    state = _State(namespace=namespace, name=name, generation=generation)
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


# ----- watches, each pumped by its own thread into one queue -----

# (source, event type or "RELIST" or "ERROR", object / list of objects / exception)
_Event = tuple[str, str, Any]


class _Pump(threading.Thread):
    """Streams one watch into the queue, resuming from its resourceVersion and relisting after 410.

    Only the waiting thread touches the rollout state: a pump hands over events,
    relisted items and its own failure, so judging happens the moment an event
    arrives rather than after a watch slice ends.
    """

    def __init__(
        self,
        source: str,
        out: queue.Queue[_Event],
        stop: threading.Event,
        rv: str,
        stream: Callable[[watch.Watch, str], Iterator[tuple[str, dict[str, Any]]]],
        relist: Callable[[], tuple[list[dict[str, Any]], str]],
    ) -> None:
        super().__init__(name=f"rollout-watch-{source}", daemon=True)
        self.source, self.out, self.stop, self.rv, self.stream, self.relist = source, out, stop, rv, stream, relist

    def run(self) -> None:
        w = _new_watch()
        while not self.stop.is_set():
            try:
                for kind, obj in self.stream(w, self.rv):
                    self.rv = str(obj.get("metadata", {}).get("resourceVersion") or self.rv)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.out.put((self.source, kind, obj))
                    if self.stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        return
            except KubeExpired:
                items, self.rv = self.relist()
                self.out.put((self.source, "RELIST", items))
            except Exception as exc:  # handed to the waiting thread, which raises it
                self.out.put((self.source, "ERROR", exc))
                return


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


def _new_watch() -> watch.Watch:
    """A Watch that yields the API's JSON as dicts (no model classes to trip over)."""
    return watch.Watch(return_type="object")  # type: ignore[no-untyped-call]


def _events(w: watch.Watch, func: Callable[..., Any], what: str, **kwargs: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    with api_errors(what):
        stream = w.stream(func, allow_watch_bookmarks=True, _request_timeout=(5, 30), **kwargs)  # type: ignore[no-untyped-call]
        for event in stream:
            yield str(event["type"]), event["raw_object"]


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
                raise RolloutFailed(
                    DEADLINE_REASON,
                    f"{state.what}: {DEADLINE_REASON}: {condition.get('message') or 'no progress within the deadline'}; "
                    f"{updated} of {want} updated, {available} available; "
                    f"see `kubectl -n {state.namespace} describe deployment {state.name}` and the new pods' events",
                )
        self._find_new_replica_set(dep)
        new_pods, old_live = self._pods()
        for pod in new_pods:
            self._fail_fast(pod)
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
                raise RolloutFailed(
                    reason,
                    f"{self.state.what}: pod {pod.name} container {c.name}: {reason}: {detail} "
                    f"(restarts {c.restart_count}{code}); {hint}",
                )


def _failing_reason(c: ContainerState) -> str:
    if c.state == "waiting" and c.reason in FAILING_WAITING_REASONS:
        return c.reason
    crashed = c.state == "terminated" or (c.state == "waiting" and c.last_terminated_reason != "")
    if crashed and c.restart_count >= MAX_RESTARTS:
        return "CrashLoopBackOff" if c.state == "waiting" else "ContainerCrashing"
    return ""
