"""What a running sample worker answers: its health endpoints, its pollers, its activities in the history.

For the sample worker's tests, in-process and as a process, and the image tests.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from sample_worker.settings import Settings
from sample_worker.worker import build_worker
from sample_worker.workflows import OrderResult


async def http_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """GET http://127.0.0.1:port/path → (status, JSON body); AssertionError while nothing answers."""

    def fetch() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            raise AssertionError(f"no answer on port {port}: {err}") from None

    return await asyncio.to_thread(fetch)


async def expect_status(port: int, path: str, status: int) -> dict[str, Any]:
    got, body = await http_get(port, path)
    assert got == status, f"{path} answered {got}, expected {status}: {body}"
    return body


async def pollers(client: Client, task_queue: str) -> dict[str, list[PollerInfo]]:
    """DescribeTaskQueue for the workflow and the activity side of a task queue."""
    found: dict[str, list[PollerInfo]] = {}
    for name, kind in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind)
        )
        found[name] = list(resp.pollers)
    return found


async def expect_poller(client: Client, task_queue: str, *, identity: str, build_id: str) -> dict[str, PollerInfo]:
    """Both task queue types list a poller with this identity and reported build id."""
    found = await pollers(client, task_queue)
    match: dict[str, PollerInfo] = {}
    for kind, infos in found.items():
        mine = [p for p in infos if p.identity == identity]
        assert mine, f"no {kind} poller with identity {identity!r}: {[p.identity for p in infos]}"
        assert mine[0].worker_version_capabilities.build_id == build_id, mine[0]
        match[kind] = mine[0]
    return match


async def expect_charge_in_flight(handle: WorkflowHandle[Any, Any]) -> None:
    desc = await handle.describe()
    states = {pa.activity_type.name: pa.state for pa in desc.raw_description.pending_activities}
    assert states.get("charge_payment") == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED, states


@dataclass
class ChargeRecord:
    """Who ran charge_payment, according to the workflow history."""

    started_by: str
    attempt: int
    completed_by: str


async def charge_record(handle: WorkflowHandle[Any, Any]) -> ChargeRecord:
    history = await handle.fetch_history()
    scheduled = next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "charge_payment"
    )
    started = next(
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id == scheduled
    )
    completed = next(
        e.activity_task_completed_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id == scheduled
    )
    return ChargeRecord(started_by=started.identity, attempt=started.attempt, completed_by=completed.identity)


async def finish_with_fresh_worker(client: Client, handle: WorkflowHandle[Any, OrderResult], task_queue: str) -> OrderResult:
    """Run the rest of a workflow whose worker went away (as a rollout's next pod would)."""
    async with build_worker(client, Settings(task_queue=task_queue, pod_name="next-pod", build_id="next")):
        return await asyncio.wait_for(handle.result(), 30)
