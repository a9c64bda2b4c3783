"""Readiness that means "Temporal sees this pod polling": the controller behind the pods' readiness gate.

    async with PollingGate(client, connect=lambda: clusters.connect(ref), namespace="temporal-workers"):
        ...  # while it runs, every gated pod becomes Ready once Temporal lists it as a poller

Every pod the pipeline renders carries a readiness gate (`spec.readinessGates`,
condition type `markers.POLLING_CONDITION`): Kubernetes calls it Ready only when
its containers are ready *and* that condition is True. This controller, run in
the pipeline's own worker process, watches the gated pods of its namespace and
sets the condition (a status patch, with reason and message) as soon as
Temporal lists the pod as a poller of its task queue on every queue type the
app serves (`DescribeTaskQueue` over every partition, the verifier's own view),
with a last access after the pod started. So Kubernetes' rolling update never
removes an old pod before its replacement polls, for a worker with no probe at
all, and a pod made later by anyone (`kubectl scale`, a node restart) becomes
Ready the same way.

A pod is recognised by either identity shape (`verify.identity_names_pod`):
`<pod>@<build id>` or the SDK's default `<pid>@<hostname>`, the hostname being
the pod's name. The pod's template annotations say what to look for: its task
queue, its queue types and its Temporal namespace (a controller connected to
another namespace leaves the pod alone).

The condition is only ever set True: it is a gate before traffic, like a
startup probe; a worker that later stops polling is what liveness probes and
`pipeline doctor` are for. When no pipeline worker runs, new pods wait unready
and old pods keep serving. The pipeline worker's own pods carry the gate too,
and each pipeline worker's controller also watches its own pod, so a pipeline
worker that polls makes itself Ready: the first bootstrap and a restart after
every pod was lost need nobody else (see README, "Readiness").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from temporalio.client import Client

from pipeline import kube
from pipeline.kube.gates import list_gated_pods, set_pod_condition, start_pod_watch
from pipeline.kube.watching import Event
from pipeline.markers import (
    POLLING_CONDITION,
    QUEUE_TYPES_ANNOTATION,
    TASK_QUEUE_ANNOTATION,
    TEMPORAL_NAMESPACE_ANNOTATION,
)
from pipeline.models import Poller
from pipeline.render import MANAGED_BY
from pipeline.verify import DEFAULT_PARTITIONS, describe_pollers, polled_since

log = logging.getLogger("pipeline.readiness")

# How often Temporal is asked while some gated pod is not Ready yet (never when none waits).
CHECK_SECONDS = 0.2
# After a failure (API server or Temporal away), the next try waits this long, doubling to MAX.
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
POLLING_REASON = "TemporalPollerSeen"
SELECTOR = {"app.kubernetes.io/managed-by": MANAGED_BY}


@dataclass(frozen=True)
class GatedPod:
    """A pod waiting for its gate: what to look for in Temporal's poller lists."""

    name: str
    uid: str
    task_queue: str
    queue_types: tuple[str, ...]
    started_at: datetime | None  # naive UTC


def waiting_pod(raw: Mapping[str, Any], *, temporal_namespace: str) -> GatedPod | None:
    """The pod, if it carries the gate, runs, is not stopping, belongs to `temporal_namespace` and is not yet passed."""
    meta, spec, status = raw.get("metadata") or {}, raw.get("spec") or {}, raw.get("status") or {}
    gates = {str(g.get("conditionType")) for g in spec.get("readinessGates") or []}
    if POLLING_CONDITION not in gates or meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    annotations = meta.get("annotations") or {}
    task_queue = str(annotations.get(TASK_QUEUE_ANNOTATION) or "")
    if not task_queue or str(annotations.get(TEMPORAL_NAMESPACE_ANNOTATION) or temporal_namespace) != temporal_namespace:
        return None
    if any(c.get("type") == POLLING_CONDITION and c.get("status") == "True" for c in status.get("conditions") or []):
        return None
    types = tuple(t for t in str(annotations.get(QUEUE_TYPES_ANNOTATION) or "workflow,activity").split(",") if t)
    started = str(status.get("startTime") or "")
    return GatedPod(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        task_queue=task_queue,
        queue_types=types,
        started_at=datetime.fromisoformat(started.replace("Z", "+00:00")).replace(tzinfo=None) if started else None,
    )


def seen_polling(pod: GatedPod, pollers: Iterable[Poller]) -> dict[str, Poller] | None:
    """Per queue type of `pod`, a poller naming it with a last access since it started; None while one is missing."""
    found: dict[str, Poller] = {}
    for poller in pollers:
        if poller.task_queue_type in found or poller.task_queue_type not in pod.queue_types:
            continue
        if polled_since(poller, pod.name, pod.started_at):
            found[poller.task_queue_type] = poller
    return found if all(t in found for t in pod.queue_types) else None


class PollingGate:
    """Sets the polling condition of the gated pods in `namespace` (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        *,
        connect: Callable[[], kube.KubeClient],
        namespace: str,
        partitions: int = DEFAULT_PARTITIONS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.client = client
        self.connect = connect
        self.namespace = namespace
        self.temporal_namespace = client.namespace
        self.partitions = partitions
        self.check_seconds = check_seconds
        self.passed: dict[str, float] = {}  # uid -> when the condition was set (monotonic), for the log and tests
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> PollingGate:
        self._task = asyncio.create_task(self.run(self._stop), name=f"polling-gate-{self.namespace}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Cancelled, not awaited to a pause: the worker's shutdown must not wait for a watch or a Temporal call.
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: watch, check, set; reconnect with back-off after any failure."""
        backoff = BACKOFF_SECONDS
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._watch_and_gate(stop)
            except Exception as exc:  # the gate must outlive a flaky API server or Temporal
                log.warning("readiness gate for namespace %s: %s: %s; retrying", self.namespace, type(exc).__name__, exc)
                if time.monotonic() - started > MAX_BACKOFF_SECONDS:
                    backoff = BACKOFF_SECONDS
                await _wait(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _watch_and_gate(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        kc = await asyncio.to_thread(self.connect)
        halt = threading.Event()
        try:
            items, rv = await asyncio.to_thread(list_gated_pods, kc, namespace=self.namespace, selector=SELECTOR)
            pods = {str(p["metadata"]["name"]): p for p in items}
            changes: asyncio.Queue[Event] = asyncio.Queue()
            start_pod_watch(
                kc,
                namespace=self.namespace,
                selector=SELECTOR,
                rv=rv,
                put=lambda event: _hand_over(loop, changes, event),
                stop=halt,
            )
            while not stop.is_set():
                waiting = [
                    pod
                    for raw in pods.values()
                    if (pod := waiting_pod(raw, temporal_namespace=self.temporal_namespace)) is not None
                    and pod.uid not in self.passed
                ]
                if waiting:
                    await self._gate(kc, waiting)
                timeout = self.check_seconds if waiting else 1.0
                try:
                    event = await asyncio.wait_for(changes.get(), timeout=timeout)
                except TimeoutError:
                    continue
                _apply(pods, event)
                while not changes.empty():
                    _apply(pods, changes.get_nowait())
                live = {str(p["metadata"].get("uid") or "") for p in pods.values()}
                for uid in [uid for uid in self.passed if uid not in live]:
                    del self.passed[uid]
        finally:
            halt.set()
            kc.close()

    async def _gate(self, kc: kube.KubeClient, waiting: Sequence[GatedPod]) -> None:
        """Ask Temporal once per task queue; set the condition of every pod it lists as polling."""
        for task_queue in sorted({pod.task_queue for pod in waiting}):
            pollers = await describe_pollers(
                self.client, namespace=self.temporal_namespace, task_queue=task_queue, partitions=self.partitions
            )
            for pod in (p for p in waiting if p.task_queue == task_queue):
                found = seen_polling(pod, pollers)
                if found is None:
                    continue
                identities = sorted({p.identity for p in found.values()})
                message = (
                    f"Temporal lists {', '.join(identities)} polling task queue {task_queue!r} "
                    f"({'+'.join(pod.queue_types)}) in namespace {self.temporal_namespace}"
                )
                try:
                    await asyncio.to_thread(
                        set_pod_condition,
                        kc,
                        namespace=self.namespace,
                        name=pod.name,
                        condition_type=POLLING_CONDITION,
                        status=True,
                        reason=POLLING_REASON,
                        message=message,
                    )
                except kube.KubeNotFound:
                    continue  # gone meanwhile
                self.passed[pod.uid] = time.monotonic()
                log.info("pod %s/%s is polling: readiness gate %s set (%s)", self.namespace, pod.name, POLLING_CONDITION, message)


def _apply(pods: dict[str, dict[str, Any]], event: Event) -> None:
    _, kind, payload = event
    if kind == "ERROR":
        raise payload
    if kind == "RELIST":
        pods.clear()
        pods.update((str(p["metadata"]["name"]), p) for p in payload)
    elif kind == "DELETED":
        pods.pop(str(payload.get("metadata", {}).get("name") or ""), None)
    else:
        pods[str(payload.get("metadata", {}).get("name") or "")] = payload


def _hand_over(loop: asyncio.AbstractEventLoop, changes: asyncio.Queue[Event], event: Event) -> None:
    """From the watch's thread into the loop's queue."""
    loop.call_soon_threadsafe(changes.put_nowait, event)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


__all__ = ["GatedPod", "PollingGate", "seen_polling", "waiting_pod"]
