"""A rollback in the middle of a rolling update never leaves the task queue without a live poller, nor loses work.

v1 of the module's app (3 replicas, maxSurge 1, maxUnavailable 0) is deployed
and verified. v2's pods start polling (and get ready) 4 s after they start, so
its rollout takes a while; once a v2 pod is ready and a v1 pod is on its way
out, `pipeline rollback` (the real CLI) is sent, and the pipeline rolls the
Deployment back to v1, verified. Throughout, from before v2 is applied until
the rollback is verified, orders (sample_worker's OrderWorkflow) are started
every ~250 ms and the task queue's live pollers are sampled every ~100 ms
(tests/helpers/zero_downtime.py, shared with the rolling-update test in tests/cluster).

Asserted: every sample saw at least one live poller; every order started
completed (none failed or timed out); the deployment ended rolled back to v1,
with three v1 pods polling both queues with v1's build id and no v2 pod running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus

from pipeline.models import Poller
from pipeline.verify import describe_pollers
from pipeline.workflows import DeploymentWorkflow
from sample_worker.workflows import OrderResult
from tests.e2e.support import EXIT_ROLLED_BACK, TEMPORAL_NAMESPACE, Deployed, deployed
from tests.faults.chaos_fixtures import FaultApp, late_worker, new_fault_app, template_build_id, worker_running
from tests.helpers import eventually
from tests.helpers.zero_downtime import OrderStream, Pods, live_pollers, sample_pollers

pytestmark = pytest.mark.e2e

REPLICAS = 3
V2_READY_AFTER = 4


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[FaultApp]:
    async with worker_running(new_fault_app(request), stack_client) as app:
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(app: FaultApp) -> Deployed:
    return deployed(await app.cli("deploy", "--follow", config=app.config("v1", replicas=REPLICAS)), app)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def test_rollback_mid_rollout_keeps_a_live_poller_and_loses_no_order(
    app: FaultApp, v1: Deployed, stack_client: Client
) -> None:
    late = late_worker(ready_after=V2_READY_AFTER)
    kc = app.real_kube_client()

    def list_pods() -> Pods:
        raw = kc.request(
            method="GET",
            path=f"/api/v1/namespaces/{app.namespace}/pods",
            what=f"pods of {app.name}",
            query=[("labelSelector", f"app.kubernetes.io/name={app.name}")],
        )
        return list(raw.get("items") or [])

    rolled_back = asyncio.Event()
    v2_ready_pods: set[str] = set()

    async def until_rolled_back(pods: Pods, pollers: list[Poller]) -> bool:
        return rolled_back.is_set()

    orders = OrderStream(stack_client, app.task_queue)
    sampler = asyncio.create_task(
        sample_pollers(
            stack_client, task_queue=app.task_queue, list_pods=list_pods, done=until_rolled_back, timeout=240, what="rolled back"
        )
    )
    orders.start()
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=app.config("v2", replicas=REPLICAS, command=late))
    handle = stack_client.get_workflow_handle(app.workflow_id)
    try:

        async def mid_rollout() -> None:
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING, "the deployment has not started yet"
            assert (await handle.query(DeploymentWorkflow.status)).step == "rollout"
            pods = await asyncio.to_thread(list_pods)
            v2_ready = [p for p in pods if p["spec"]["containers"][0].get("command") == late and _ready(p)]
            v1_staying = [
                p for p in pods if p["spec"]["containers"][0]["image"] == v1.image and not p["metadata"].get("deletionTimestamp")
            ]
            assert v2_ready and len(v1_staying) < REPLICAS, f"{len(v2_ready)} v2 pods ready, {len(v1_staying)} v1 pods staying"
            v2_ready_pods.update(p["metadata"]["name"] for p in v2_ready)

        await eventually(mid_rollout, timeout=120, interval=0.1, what="v2 half rolled out")
        rollback = await app.cli("rollback", app.name, "--reason", "fault test: zero downtime", config=app.config("v1"))
    finally:
        deploy = await app.finish(process, args, started=started, timeout=180)
        rolled_back.set()
        try:
            sampling = await sampler
        finally:
            await orders.stop()
            kc.close()
    rollback.expect(0, diagnose=app.diagnose)
    deploy.expect(EXIT_ROLLED_BACK, diagnose=app.diagnose)

    outcomes = await orders.outcomes(timeout=120)
    print(
        f"{sampling.summary()}; {len(orders.handles)} orders started; "
        f"`pipeline rollback` -> rolled back and v1 verified in {rollback.seconds:.1f}s"
    )
    sampling.assert_always_live(at_least=1)
    failed = [f"{h.id}: {o!r}" for h, o in zip(orders.handles, outcomes, strict=True) if not isinstance(o, OrderResult)]
    assert not failed, f"{len(failed)} of {len(outcomes)} orders failed or timed out: {failed[:5]}"
    assert all(isinstance(o, OrderResult) and o.tracking_id.startswith("trk-") for o in outcomes), outcomes
    assert len(outcomes) >= 10, f"only {len(outcomes)} orders were started during the rollback"
    # The rollback came mid-rollout: a v2 pod was a live poller at some sampled instant, beside v1's.
    assert any(v2_ready_pods & set(s.live) for s in sampling.samples), f"no sample saw a v2 pod ({v2_ready_pods}) polling"

    result = await stack_client.get_workflow_handle_for(DeploymentWorkflow.run, app.workflow_id, run_id=deploy.run_id).result()
    assert result.outcome == "rolled_back" and result.restored_image == v1.image, result
    assert result.steps[-5] == "rollout", result.steps
    assert template_build_id(app.real_deployment()) == v1.build_id, "the Deployment's pod template is not v1's"
    pods = [p for p in app.raw_pods() if p["status"].get("phase") in ("Pending", "Running")]
    others = [p["metadata"]["name"] for p in pods if p["spec"]["containers"][0]["image"] != v1.image]
    assert not others, f"pods of v2 still run after the rollback: {others}"
    staying = sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
    assert len(staying) == REPLICAS, staying
    pollers = await describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=app.task_queue)
    for queue_type in ("workflow", "activity"):
        live = live_pollers(pods, pollers, queue_type)
        assert sorted(live) == staying, f"{queue_type} pollers {sorted(live)} are not the v1 pods {staying}"
        assert {p.build_id for p in live.values()} == {v1.build_id}, live
