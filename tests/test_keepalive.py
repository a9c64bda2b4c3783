"""pipeline/keepalive.py: heartbeats keep coming while the body is silent, inside a real activity."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from pipeline.keepalive import Keepalive

with workflow.unsafe.imports_passed_through():  # the sandbox re-imports this module for its workflow
    import pytest

    from tests.helpers import poll_until

pytestmark = pytest.mark.unit


def test_the_latest_details_are_repeated_until_the_block_ends() -> None:
    beats: list[tuple[object, ...]] = []
    with Keepalive(lambda *d: beats.append(d), interval=0.05, initial=("resumed",)) as beat:
        poll_until(lambda: ("resumed",) in beats, timeout=5, interval=0.01, what="the initial details repeated")
        beat("step 1")
        poll_until(lambda: beats.count(("step 1",)) >= 2, timeout=5, interval=0.01, what="step 1 repeated")
    count = len(beats)
    time.sleep(0.1)  # the test: two intervals of nothing once the block has ended
    assert len(beats) == count, "beats went on after the block ended"
    assert beats[0] == ("resumed",) and ("step 1",) in beats
    assert beats[-1] == ("step 1",), beats
    assert beats.count(("step 1",)) >= 2, "the latest details were not repeated"


@activity.defn
def silent_step(seconds: float) -> str:
    """Says one thing, then nothing for `seconds`: without the keepalive, a 1 s heartbeat timeout kills it."""
    with Keepalive(activity.heartbeat, interval=0.2) as beat:
        beat("started")
        time.sleep(seconds)
    return "done"


@workflow.defn
class SilentStepWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_activity(
            silent_step,
            seconds,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_a_silent_activity_outlives_its_heartbeat_timeout(client: Client) -> None:
    queue = f"keepalive-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(
            client, task_queue=queue, workflows=[SilentStepWorkflow], activities=[silent_step], activity_executor=pool
        ):
            result = await client.execute_workflow(
                SilentStepWorkflow.run, 3.0, id=f"keepalive-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
    assert result == "done"
