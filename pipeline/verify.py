"""Is the new version really working? Ask Temporal who polls the task queue.

A rollout that Kubernetes calls complete only says the pods passed their
readiness probes. The pipeline's stronger claim is that every new pod is a
live poller of the app's task queue, with the new build id, as Temporal itself
sees it (`DescribeTaskQueue`, workflow and activity queues).

Temporal keeps listing a poller for a while after it stopped, so the judgement
uses each poller's last-access time against the pod's start time, never the
absence of an identity. Old pods are judged by their state in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from pipeline.models import Poller

QUEUE_TYPES = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}
# Clocks of the Temporal server and the cluster may differ a little.
CLOCK_SKEW = timedelta(seconds=2)


@dataclass(frozen=True)
class PodState:
    """What the verifier needs to know of a pod (from the Kubernetes layer)."""

    name: str
    pod_template_hash: str
    started_at: datetime | None
    terminating: bool
    phase: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str
    polling_pods: list[str]
    missing: list[str]
    old_pods_running: list[str]


async def describe_pollers(client: Client, *, namespace: str, task_queue: str) -> list[Poller]:
    """Every poller Temporal lists for `task_queue`, workflow and activity queues alike."""
    pollers: list[Poller] = []
    for type_name, queue_type in QUEUE_TYPES.items():
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=queue_type,
            )
        )
        for info in response.pollers:
            pollers.append(
                Poller(
                    identity=info.identity,
                    task_queue_type=type_name,
                    build_id=info.worker_version_capabilities.build_id,
                    last_access_time=info.last_access_time.ToDatetime().replace(tzinfo=None).isoformat() + "Z",
                )
            )
    return pollers


def judge(
    *,
    pods: Sequence[PodState],
    pollers: Iterable[Poller],
    new_hash: str,
    build_id: str,
    queue_types: Iterable[str] = ("workflow", "activity"),
) -> Verdict:
    """Every new pod polls every queue type with `build_id` since it started; no old pod still runs."""
    pollers = list(pollers)
    new_pods = [p for p in pods if p.pod_template_hash == new_hash and not p.terminating]
    old_running = sorted(p.name for p in pods if p.pod_template_hash != new_hash and p.phase in ("Pending", "Running"))
    missing: list[str] = []
    polling: list[str] = []
    for pod in new_pods:
        if all(_polls_freshly(pod, pollers, build_id, queue_type) for queue_type in queue_types):
            polling.append(pod.name)
        else:
            missing.append(pod.name)
    problems = []
    if not new_pods:
        problems.append("no pod of the new ReplicaSet exists")
    if missing:
        problems.append(f"not polling with build {build_id}: {', '.join(sorted(missing))}")
    if old_running:
        problems.append(f"pods of the old version still running: {', '.join(old_running)}")
    ok = not problems
    detail = f"{len(polling)} pods polling with build {build_id}" if ok else "; ".join(problems)
    return Verdict(ok, detail, sorted(polling), sorted(missing), old_running)


def _polls_freshly(pod: PodState, pollers: list[Poller], build_id: str, queue_type: str) -> bool:
    for poller in pollers:
        if poller.task_queue_type != queue_type or pod.name not in _identity_pod(poller.identity):
            continue
        if poller.build_id != build_id:
            continue
        if pod.started_at is None:
            return True
        last = datetime.fromisoformat(poller.last_access_time.rstrip("Z"))
        if last + CLOCK_SKEW >= pod.started_at.replace(tzinfo=None):
            return True
    return False


def _identity_pod(identity: str) -> list[str]:
    """The pod part of `<pod>@<build id>` identities, tolerant of SDK-default `<pid>@<host>` ones."""
    return [identity.split("@", 1)[0], identity]
