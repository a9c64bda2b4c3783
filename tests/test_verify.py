"""pipeline/verify.py: who counts as polling, which old pods block, and pollers found on any partition."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, PollWorkflowTaskQueueRequest
from temporalio.client import Client

from pipeline.kube.pods import pod_info
from pipeline.models import Poller
from pipeline.verify import PodState, describe_pollers, identity_names_pod, judge, pod_hostname, pod_state
from tests.helpers import unique_name

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
BUILD = "sha256:new"


def pod(name: str, pod_hash: str, *, started: int = -30, deleted: int | None = None, phase: str = "Running") -> PodState:
    return PodState(
        name=name,
        pod_template_hash=pod_hash,
        started_at=NOW + timedelta(seconds=started),
        terminating=deleted is not None,
        phase=phase,
        deleted_at=None if deleted is None else NOW + timedelta(seconds=deleted),
    )


def polls(name: str, at: int, build: str = BUILD, types: tuple[str, ...] = ("workflow", "activity")) -> list[Poller]:
    when = (NOW + timedelta(seconds=at)).replace(tzinfo=None).isoformat() + "Z"
    return [Poller(identity=f"{name}@{build}", task_queue_type=t, build_id=build, last_access_time=when) for t in types]


def test_every_new_pod_polling_both_queues_since_it_started_is_verified() -> None:
    verdict = judge(
        pods=[pod("n1", "new"), pod("n2", "new")], pollers=polls("n1", -1) + polls("n2", -2), new_hash="new", build_id=BUILD
    )
    assert verdict.ok and verdict.polling_pods == ["n1", "n2"], verdict


def test_a_new_pod_missing_a_queue_type_or_a_fresh_poll_is_not_verified() -> None:
    pods = [pod("n1", "new", started=-10)]
    for pollers in (polls("n1", -1, types=("workflow",)), polls("n1", -20), polls("n1x", -1), polls("x-n1", -1)):
        verdict = judge(pods=pods, pollers=pollers, new_hash="new", build_id=BUILD)
        assert not verdict.ok and verdict.missing == ["n1"], (pollers, verdict)


def sdk_default(pod_name: str, at: int, types: tuple[str, ...] = ("workflow", "activity")) -> list[Poller]:
    """What a worker that keeps the SDK's defaults reports: `<pid>@<hostname>` and the SDK's own build id."""
    when = (NOW + timedelta(seconds=at)).replace(tzinfo=None).isoformat() + "Z"
    return [Poller(identity=f"1@{pod_name}", task_queue_type=t, build_id="1f3e0c9d", last_access_time=when) for t in types]


def test_a_worker_with_the_sdk_default_identity_and_no_build_id_of_ours_is_verified_by_its_hostname() -> None:
    verdict = judge(pods=[pod("n1", "new", started=-10)], pollers=sdk_default("n1", -1), new_hash="new", build_id=BUILD)
    assert verdict.ok and verdict.polling_pods == ["n1"], verdict


def test_only_the_queue_types_the_app_serves_are_required() -> None:
    pollers = sdk_default("n1", -1, types=("activity",))
    pods = [pod("n1", "new", started=-10)]
    assert not judge(pods=pods, pollers=pollers, new_hash="new", build_id=BUILD).ok
    assert judge(pods=pods, pollers=pollers, new_hash="new", build_id=BUILD, queue_types=("activity",)).ok


def test_a_long_pod_name_is_matched_by_the_hostname_kubernetes_cuts_from_it() -> None:
    name = "a-very-long-worker-deployment-name-that-goes-on-7d9f8c6b5d-" + "x" * 10
    assert len(name) > 63 and pod_hostname(name) == name[:63].rstrip("-.")
    assert identity_names_pod(f"7@{pod_hostname(name)}", name)
    assert identity_names_pod(f"{name}@sha256:abc", name)
    assert not identity_names_pod("7@other-pod", name) and not identity_names_pod(name + "x@b", name)


def test_an_old_pod_that_is_not_terminating_blocks() -> None:
    verdict = judge(pods=[pod("n1", "new"), pod("o1", "old")], pollers=polls("n1", -1), new_hash="new", build_id=BUILD)
    assert not verdict.ok and verdict.old_pods_running == ["o1"], verdict
    assert "pods of the old version still running: o1" in verdict.detail


def test_an_old_pod_in_graceful_termination_is_draining_and_does_not_block() -> None:
    """On SIGTERM a worker stops polling and only finishes what it runs: its last poll predates its deletion."""
    pods = [pod("n1", "new"), pod("o1", "old", deleted=-5)]
    verdict = judge(pods=pods, pollers=polls("n1", -1) + polls("o1", -40, build="sha256:old"), new_hash="new", build_id=BUILD)
    assert verdict.ok and verdict.old_pods_draining == ["o1"] and not verdict.old_pods_running, verdict
    assert verdict.detail == f"1 pods of build {BUILD} polling; old pods draining: o1"


def test_an_old_pod_of_a_worker_that_may_ignore_sigterm_serves_until_it_is_gone() -> None:
    """Without graceful_shutdown, an idle long poll begun before the deletion proves nothing: the pod still serves."""
    pods = [pod("n1", "new"), pod("o1", "old", deleted=-5)]
    pollers = polls("n1", -1) + polls("o1", -40, build="sha256:old")
    verdict = judge(pods=pods, pollers=pollers, new_hash="new", build_id=BUILD, graceful_shutdown=False)
    assert not verdict.ok and verdict.old_pods_running == ["o1"] and not verdict.old_pods_draining, verdict


def test_an_old_pod_that_polled_after_it_was_told_to_stop_still_serves() -> None:
    """A worker that ignores SIGTERM keeps taking tasks until it is killed: it blocks verification."""
    pods = [pod("n1", "new"), pod("o1", "old", deleted=-10)]
    verdict = judge(pods=pods, pollers=polls("n1", -1) + polls("o1", -1, build="sha256:old"), new_hash="new", build_id=BUILD)
    assert not verdict.ok and verdict.old_pods_running == ["o1"], verdict


def test_pod_state_reads_start_and_deletion_times_from_the_api_object() -> None:
    raw = {
        "metadata": {"name": "p", "labels": {"pod-template-hash": "h"}, "deletionTimestamp": "2026-11-26T12:00:05Z"},
        "status": {"phase": "Running", "startTime": "2026-11-26T11:59:00Z"},
    }
    state = pod_state(pod_info(raw))
    assert state == PodState("p", "h", NOW - timedelta(seconds=60), True, "Running", NOW + timedelta(seconds=5))


async def test_pollers_on_every_partition_are_found(client: Client) -> None:
    """Real long polls land on random partitions: the root partition alone misses some; describe_pollers does not.

    (The frontend refuses a poll addressed to a partition, so the test makes many and lets the server spread them.)
    """
    queue = unique_name("partitions")
    identities = [f"{unique_name('pod')}@sha256:partition" for _ in range(12)]
    namespace = client.namespace
    polls = [
        asyncio.create_task(
            client.workflow_service.poll_workflow_task_queue(
                PollWorkflowTaskQueueRequest(namespace=namespace, task_queue=TaskQueue(name=queue), identity=identity)
            )
        )
        for identity in identities
    ]
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            listed = {p.identity for p in await describe_pollers(client, namespace=namespace, task_queue=queue)}
            if set(identities) <= listed:
                break
            assert asyncio.get_running_loop().time() < deadline, f"pollers never listed: {set(identities) - listed}"
            await asyncio.sleep(0.1)
        root = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace, task_queue=TaskQueue(name=queue), task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
            )
        )
        on_root = {p.identity for p in root.pollers}
        assert not set(identities) <= on_root, "the root partition lists every poller: the test proves nothing"
    finally:
        for poll in polls:
            poll.cancel()
        for poll in polls:
            with contextlib.suppress(BaseException):
                await poll
