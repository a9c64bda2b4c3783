"""Is the new version really working? Ask Temporal who polls the task queue.

A rollout that Kubernetes calls complete only says the pods passed their
readiness checks. The pipeline's stronger claim is that every new pod is a
live poller of the app's task queue, as Temporal itself sees it
(`DescribeTaskQueue`, on every queue type the app serves), and that no pod of
the old version still serves.

A poller is matched to its pod by identity, in either shape: `<pod>@<build id>`
(this project's workers) or the SDK's default `<pid>@<hostname>`, whose
hostname Kubernetes sets to the pod's name. Build ids are optional: a pod of
the new ReplicaSet runs the new image whatever build id its worker reports
(the Python SDK's default is a checksum of its code); the ones reported are
kept in the result.

Temporal keeps listing a poller for a while after it stopped, so the judgement
uses each poller's last-access time against the pod's start time, never the
absence of an identity.

A task queue is split into partitions (4 by default, the server's
`matching.numTaskqueueReadPartitions`); each poll lands on one of them and only
that partition records it, and DescribeTaskQueue answers for one partition. So
a worker whose long polls all went to other partitions is missing from the
root partition's list for up to a minute: every partition is asked
(`/_sys/<name>/<n>`, as `temporal task-queue list-partition` names them) and,
per identity, the latest access wins.

Old pods are judged by their state in Kubernetes: one that is not terminating
still serves the old version. One in graceful termination is *draining* when
the app says its worker stops polling on SIGTERM (`graceful_shutdown`), unless
Temporal saw it poll after it was told to stop; otherwise it serves until it is
gone: a worker without a SIGTERM handler ignores it as a container's PID 1, and
an idle long poll that began before the deletion keeps its old last-access time,
so Temporal's view cannot tell such a worker from a draining one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from pipeline.kube.pods import PodInfo
from pipeline.models import Poller

QUEUE_TYPES = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}
# Clocks of the Temporal server and the cluster may differ a little.
CLOCK_SKEW = timedelta(seconds=2)
# Kubernetes cuts a pod's hostname to a DNS label.
HOSTNAME_MAX = 63
DEFAULT_PARTITIONS = 4


@dataclass(frozen=True)
class PodState:
    """What the verifier needs to know of a pod (from the Kubernetes layer)."""

    name: str
    pod_template_hash: str
    started_at: datetime | None
    terminating: bool
    phase: str
    deleted_at: datetime | None = None  # the deletionTimestamp: when it was told to stop


def pod_state(pod: PodInfo) -> PodState:
    """What the verifier needs of a pod as the Kubernetes layer reads it."""
    return PodState(
        name=pod.name,
        pod_template_hash=pod.pod_template_hash,
        started_at=_rfc3339(pod.start_time),
        terminating=pod.terminating,
        phase=pod.phase,
        deleted_at=_rfc3339(pod.deletion_timestamp),
    )


def _rfc3339(value: str) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str
    polling_pods: list[str]
    missing: list[str]
    old_pods_running: list[str]
    old_pods_draining: list[str]


async def describe_pollers(
    client: Client, *, namespace: str, task_queue: str, partitions: int = DEFAULT_PARTITIONS
) -> list[Poller]:
    """Every poller Temporal lists for `task_queue`, workflow and activity queues alike, over all partitions."""
    per_type = await asyncio.gather(
        *(
            partition_pollers(client, namespace=namespace, task_queue=task_queue, queue_type=t, partitions=partitions)
            for t in QUEUE_TYPES
        )
    )
    return [as_poller(type_name, info) for type_name, infos in zip(QUEUE_TYPES, per_type, strict=True) for info in infos]


def as_poller(queue_type: str, info: PollerInfo) -> Poller:
    """Temporal's PollerInfo as the pipeline keeps it (last access in RFC 3339, UTC)."""
    return Poller(
        identity=info.identity,
        task_queue_type=queue_type,
        build_id=info.worker_version_capabilities.build_id,
        last_access_time=info.last_access_time.ToDatetime().replace(tzinfo=None).isoformat() + "Z",
    )


async def partition_pollers(
    client: Client, *, namespace: str, task_queue: str, queue_type: str, partitions: int = DEFAULT_PARTITIONS
) -> list[PollerInfo]:
    """The pollers of one queue type, asked of every partition at once; per identity, the latest access."""
    names = [task_queue] + [f"/_sys/{task_queue}/{n}" for n in range(1, partitions)]
    answers = await asyncio.gather(
        *(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                    task_queue_type=QUEUE_TYPES[queue_type],
                )
            )
            for name in names
        )
    )
    latest: dict[str, PollerInfo] = {}
    for answer in answers:
        for info in answer.pollers:
            known = latest.get(info.identity)
            if known is None or info.last_access_time.ToDatetime() > known.last_access_time.ToDatetime():
                latest[info.identity] = info
    return list(latest.values())


def judge(
    *,
    pods: Sequence[PodState],
    pollers: Iterable[Poller],
    new_hash: str,
    build_id: str,
    queue_types: Sequence[str] = ("workflow", "activity"),
    graceful_shutdown: bool = True,
) -> Verdict:
    """Every new pod polls every queue type since it started; no old pod still serves. `build_id` names the version."""
    pollers = list(pollers)
    new_pods = [p for p in pods if p.pod_template_hash == new_hash and not p.terminating]
    old_live = [p for p in pods if p.pod_template_hash != new_hash and p.phase in ("Pending", "Running")]
    old_draining = sorted(p.name for p in old_live if graceful_shutdown and p.terminating and not _polled_after_stop(p, pollers))
    old_running = sorted(p.name for p in old_live if p.name not in old_draining)
    missing: list[str] = []
    polling: list[str] = []
    for pod in new_pods:
        if all(_polls_freshly(pod, pollers, queue_type) for queue_type in queue_types):
            polling.append(pod.name)
        else:
            missing.append(pod.name)
    problems = []
    if not new_pods:
        problems.append("no pod of the new ReplicaSet exists")
    if missing:
        problems.append(f"not polling task queue types {'+'.join(queue_types)}: {', '.join(sorted(missing))}")
    if old_running:
        problems.append(f"pods of the old version still running: {', '.join(old_running)}")
    ok = not problems
    detail = f"{len(polling)} pods of build {build_id} polling" if ok else "; ".join(problems)
    if ok and old_draining:
        detail += f"; old pods draining: {', '.join(old_draining)}"
    return Verdict(ok, detail, sorted(polling), sorted(missing), old_running, old_draining)


def _polled_after_stop(pod: PodState, pollers: list[Poller]) -> bool:
    """Temporal saw `pod` start a poll after its deletion (+ skew): it ignores SIGTERM and still takes tasks."""
    if pod.deleted_at is None:
        return False
    stop = pod.deleted_at.replace(tzinfo=None) + CLOCK_SKEW
    return any(
        identity_names_pod(p.identity, pod.name) and datetime.fromisoformat(p.last_access_time.rstrip("Z")) > stop
        for p in pollers
    )


def _polls_freshly(pod: PodState, pollers: list[Poller], queue_type: str) -> bool:
    return any(p.task_queue_type == queue_type and polled_since(p, pod.name, pod.started_at) for p in pollers)


def polled_since(poller: Poller, pod: str, started_at: datetime | None) -> bool:
    """`poller` is a worker of `pod` that Temporal saw after the pod started (give or take CLOCK_SKEW; any time
    when the start is unknown): the one test the verifier, the readiness gate and `pipeline doctor` share."""
    if not identity_names_pod(poller.identity, pod):
        return False
    if started_at is None:
        return True
    last = datetime.fromisoformat(poller.last_access_time.rstrip("Z"))
    return last + CLOCK_SKEW >= started_at.replace(tzinfo=None)


def pod_hostname(pod: str) -> str:
    """The hostname Kubernetes gives a pod's containers: its name, cut to 63 characters without a trailing '-' or '.'."""
    return pod[:HOSTNAME_MAX].rstrip("-.")


def identity_names_pod(identity: str, pod: str) -> bool:
    """Is `identity` a worker in `pod`? Either shape: `<pod>@<anything>` (this project's workers, a build id or
    anything else after the "@") or the SDK's default `<pid>@<hostname>`, whose hostname is the pod's."""
    head, sep, tail = identity.partition("@")
    if not sep:
        return identity == pod
    return head == pod or tail == pod_hostname(pod)
