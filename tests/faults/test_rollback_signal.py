"""`pipeline rollback` at each step of a deployment, end to end: the previous verified revision comes back.

The module's app (2 replicas) reaches the cluster API through a fault proxy
(faultproxy.py), so its applies can be held. v1 is deployed and verified once.
Then, per step, a version that keeps that step busy, and `pipeline rollback`
(the real CLI) as soon as the workflow's `status` query names the step:

    build     the image takes 15 s to build (a slow layer)
    apply     the proxy holds every server-side-apply PATCH of the Deployment for 4 s (a slow API
              server): the signal comes while the new version's PATCH is held (a version that
              would get ready only 120 s after it starts, so that its pod goes at once)
    rollout   a version that would get ready only 120 s after it starts
    verify    a version whose pods say "ready" a minute before they poll (a lying readiness
              probe): the rollout completes, verification waits for Temporal to see them poll

Each must end rolled back, as the cluster and Temporal show it: `pipeline
deploy` exits 3 and `pipeline rollback` 0, the workflow's result is
`rolled_back` to v1's image for the reason given, the Deployment's pod template
is v1's (image by digest, build-id annotation), the revision ConfigMap still
records v1, v1's pods poll the task queue with v1's build id, and no pod of
another version runs. Signal -> rolled back and verified is printed, not asserted.

One more case: a rollback while only the new version's apply request is slow must
not let that stale request land after the rollback (the workflow waits for a
cancelled apply to settle before it rolls back).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus

from pipeline import kube
from pipeline.activities import REVISION_CONFIGMAP_SUFFIX
from pipeline.models import DeploymentResult
from pipeline.workflows import DeploymentWorkflow
from tests.conftest import eventually
from tests.e2e.support import EXIT_ROLLED_BACK, Deployed, Run, assert_polling, deployed
from tests.faults.chaos_fixtures import (
    FaultApp,
    late_worker,
    new_fault_app,
    ready_before_polling,
    slow_build_context,
    template_build_id,
    through_fault_proxy,
    worker_running,
)
from tests.faults.faultproxy import FaultProxy, hold_patches

pytestmark = pytest.mark.e2e

APPLY_HOLD_SECONDS = 4.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proxied(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[tuple[FaultApp, FaultProxy]]:
    app = new_fault_app(request)
    async with through_fault_proxy(app) as proxy, worker_running(app, stack_client):
        yield app, proxy


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(proxied: tuple[FaultApp, FaultProxy]) -> Deployed:
    app, _ = proxied
    return deployed(await app.cli("deploy", "--follow", config=app.config("v1")), app)


@dataclass(frozen=True)
class RolledBack:
    deploy: Run
    rollback: Run
    result: DeploymentResult


async def _roll_back_during(
    app: FaultApp, client: Client, *, step: str, config: Path, busy: Callable[[], Awaitable[None]], reason: str
) -> RolledBack:
    """Start `pipeline deploy` with `config`; once the status query says `step` and `busy()` passes, run `pipeline rollback`."""
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=config)
    handle = client.get_workflow_handle(app.workflow_id)
    try:

        async def at_step() -> None:
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING, "the deployment has not started yet"
            status = await handle.query(DeploymentWorkflow.status)
            assert status.step == step, f"step {status.step!r}"
            await busy()

        await eventually(at_step, timeout=120, interval=0.1, what=f"the deployment at step {step!r}")
        rollback = await app.cli("rollback", app.name, "--reason", reason, config=app.config("v1"))
    finally:
        deploy = await app.finish(process, args, started=started, timeout=180)
    rollback.expect(0, diagnose=app.diagnose)
    deploy.expect(EXIT_ROLLED_BACK, diagnose=app.diagnose)
    result = await client.get_workflow_handle_for(DeploymentWorkflow.run, app.workflow_id, run_id=deploy.run_id).result()
    return RolledBack(deploy, rollback, result)


def _recorded_image(app: FaultApp) -> str:
    with app.real_kube_client() as kc:
        data = kube.get_configmap(kc, namespace=app.namespace, name=app.name + REVISION_CONFIGMAP_SUFFIX)
    assert data and "revision.json" in data, f"no recorded revision for {app.name}"
    return str(json.loads(data["revision.json"])["image"])


async def _assert_back_on_v1(app: FaultApp, client: Client, v1: Deployed, done: RolledBack, *, step: str, reason: str) -> None:
    result = done.result
    assert result.outcome == "rolled_back", result
    assert result.reason == f"rollback requested: {reason}", result.reason
    assert result.restored_image == v1.image and result.previous_image == v1.image, result
    assert {p.build_id for p in result.pollers} == {v1.build_id}, result.pollers
    assert result.steps[-4:] == ["rollback: apply", "rollback: rollout", "rollback: verify", "rollback: record"], result.steps
    assert result.steps[-5] == step, f"the signal did not interrupt {step!r}: steps {result.steps}"

    template = app.real_deployment()["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == v1.image, "the Deployment's pod template is not v1's"
    assert template_build_id(app.real_deployment()) == v1.build_id
    assert _recorded_image(app) == v1.image, "the last verified revision is no longer v1"
    pods = await assert_polling(client, app, v1)
    others = {
        p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
        for p in app.raw_pods()
        if p["status"].get("phase") in ("Pending", "Running") and p["spec"]["containers"][0]["image"] != v1.image
    }
    assert not others, f"pods of another version still run after the rollback: {others}"
    print(
        f"rollback during {step}: `pipeline rollback` -> rolled back and v1 verified in {done.rollback.seconds:.1f}s "
        f"(deploy {done.deploy.seconds:.1f}s in all); polling: {pods}"
    )


def _has_pod_of(app: FaultApp, command: list[str]) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        commands = [p["spec"]["containers"][0].get("command") for p in app.raw_pods()]
        assert command in commands, "no pod of the new version yet"

    return check


async def _nothing() -> None:
    return None


STEPS = ["build", "apply", "rollout", "verify"]


@pytest.mark.parametrize("step", STEPS)
async def test_rollback_signal_restores_the_verified_revision(
    proxied: tuple[FaultApp, FaultProxy], v1: Deployed, stack_client: Client, step: str
) -> None:
    app, proxy = proxied
    version = f"v2-{step}-{uuid.uuid4().hex[:6]}"  # a new image each run: never a build the registry already has
    generation = app.real_deployment()["metadata"]["generation"]
    busy: Callable[[], Awaitable[None]] = _nothing
    if step == "build":
        config = app.config(version, build_context=slow_build_context(app.directory, v1.image, seconds=15))
    elif step == "apply":
        # Never ready in time: its pod, created once the held PATCH lands, goes at once when the rollback deletes it.
        config = app.config(version, command=late_worker(ready_after=120))

        async def held() -> None:
            assert proxy.holding, f"the new version's Deployment PATCH is not held yet: {proxy.seen}"

        busy = held
        proxy.seen.clear()
        proxy.rule = hold_patches(app.deployment_path, seconds=APPLY_HOLD_SECONDS)
    elif step == "rollout":
        late = late_worker(ready_after=120)
        config, busy = app.config(version, command=late), _has_pod_of(app, late)
    else:
        config = app.config(version, command=ready_before_polling(60))
    reason = f"fault test: roll back during {step}"
    try:
        done = await _roll_back_during(app, stack_client, step=step, config=config, busy=busy, reason=reason)
    finally:
        proxy.rule = lambda method, path: None

    await _assert_back_on_v1(app, stack_client, v1, done, step=step, reason=reason)
    if step == "build":
        assert done.result.image == "", f"the build was not interrupted: {done.result.image}"
        assert app.real_deployment()["metadata"]["generation"] == generation, "a build-time rollback changed the Deployment"
    else:
        assert done.result.image not in ("", v1.image), done.result
        # Two pod-template changes: the new version's apply, then the rollback's (the template is v1's, see above).
        assert app.real_deployment()["metadata"]["generation"] == generation + 2, "not exactly one apply each way"
    if step == "apply":
        assert proxy.seen["held"] == proxy.seen["delivered"] == 2, f"the new version's PATCH and the rollback's: {proxy.seen}"


async def test_a_stale_apply_cannot_land_after_the_rollback(
    proxied: tuple[FaultApp, FaultProxy], v1: Deployed, stack_client: Client
) -> None:
    """Only the new version's apply is slow (one request stuck 15 s); the rollback's own apply passes at once.

    Once the stuck PATCH has been delivered, the Deployment must still be v1's: the
    workflow waits for the cancelled apply to end (WAIT_CANCELLATION_COMPLETED, patched
    "apply-settles-before-rollback") and only then re-applies v1. Before that fix the
    rollback returned while the PATCH was in flight, and the PATCH then rolled the new
    version out under a result that said rolled_back.
    """
    app, proxy = proxied
    proxy.seen.clear()
    proxy.rule = hold_patches(app.deployment_path, seconds=15, times=1)

    async def held() -> None:
        assert proxy.holding, f"the new version's Deployment PATCH is not held yet: {proxy.seen}"

    reason = "fault test: roll back during a stuck apply"
    try:
        done = await _roll_back_during(
            app, stack_client, step="apply", config=app.config(f"v3-{uuid.uuid4().hex[:6]}"), busy=held, reason=reason
        )

        async def delivered() -> None:
            assert proxy.seen["delivered"] == 1, f"the stuck PATCH is not delivered yet: {proxy.seen}"

        await eventually(delivered, timeout=60, what="the stuck Deployment PATCH delivered")
    finally:
        proxy.rule = lambda method, path: None
    assert done.result.outcome == "rolled_back", done.result
    now = template_build_id(app.real_deployment())
    assert now == v1.build_id, (
        f"the result says {done.result.outcome} to {done.result.restored_image}, but the Deployment's pod template "
        f"is build {now} now, not v1's {v1.build_id}: the cancelled apply landed after the rollback"
    )
    await assert_polling(stack_client, app, v1)
