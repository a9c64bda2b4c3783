"""`pipeline rollback` at each step of a deployment, end to end: the previous verified revision comes back.

The module's app (2 replicas) reaches the cluster API through a fault proxy
(faultproxy.py), so its applies can be held. v1 is deployed and verified once.
Then, per step, a version that keeps that step busy, and a rollback as soon as
the workflow's `status` query names the step, sent as people send it: Temporal's
own CLI with no input (build; what the Web UI's "Send a Signal" sends with an
empty box), `pipeline rollback` (apply; the rollback update), Temporal's CLI with
input the workflow cannot read (rollout), and with a reason (verify):

    build     the image takes 15 s to build (a slow layer)
    apply     the proxy holds every server-side-apply PATCH of the Deployment for 4 s (a slow API
              server): the signal comes while the new version's PATCH is held (a version that
              would get ready only 120 s after it starts, so that its pod goes at once)
    rollout   a version that would get ready only 120 s after it starts
    verify    a version that does not declare graceful shutdown, deployed while v1's pods run
              minute-long activities: its pods poll (so the rollout completes), and verification
              waits for v1's pods, which finish what they run before they exit, to be gone

Each must end rolled back, with no failed workflow task, as the cluster and
Temporal show it: `pipeline deploy` exits 3, the workflow's result is
`rolled_back` to v1's image for the reason given, the Deployment's pod template
is v1's (image by digest, build-id annotation), the revision ConfigMap still
records v1, v1's pods poll the task queue with v1's build id, and no pod of
another version runs. Signal -> rolled back and verified is printed, not asserted.

A cancellation (`temporal workflow cancel`, the Web UI's "Request Cancellation")
during build, rollout and verify must restore v1 the same way, verified, and
only then end the workflow Canceled (`pipeline deploy` exits 4).

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
from datetime import UTC
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus

from pipeline import kube
from pipeline.activities import REVISION_CONFIGMAP_SUFFIX
from pipeline.models import DeploymentResult
from pipeline.workflows import DeploymentWorkflow
from sample_worker.client import start_orders
from sample_worker.settings import Settings
from tests.e2e.support import (
    EXIT_CANCELED,
    EXIT_ROLLED_BACK,
    Deployed,
    Run,
    activity_spans,
    assert_polling,
    deployed,
    failed_workflow_tasks,
    temporal,
)
from tests.faults.chaos_fixtures import (
    FaultApp,
    late_worker,
    new_fault_app,
    pending_activity,
    slow_build_context,
    template_build_id,
    through_fault_proxy,
    worker_running,
)
from tests.faults.faultproxy import FaultProxy, hold_patches
from tests.helpers import eventually

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
    rollback_seconds: float
    result: DeploymentResult


# Who sends the rollback at each step, and the reason the result then gives: Temporal's own CLI
# (what a person types, and what the Web UI's "Send a Signal" sends) with no input, with input the
# workflow cannot read, and with a reason; and `pipeline rollback` (the rollback update).
Sender = Callable[[FaultApp, str], Awaitable[None]]


def _temporal_signal(*input_args: str) -> Sender:
    async def send(app: FaultApp, reason: str) -> None:
        await temporal("workflow", "signal", "--workflow-id", app.workflow_id, "--name", "rollback", *input_args)

    return send


async def _pipeline_rollback(app: FaultApp, reason: str) -> None:
    (await app.cli("rollback", app.name, "--reason", reason, "--detach", config=app.config("v1"))).expect(
        0, diagnose=app.diagnose
    )


SENDERS: dict[str, tuple[str, Callable[[str], Sender], Callable[[str], str]]] = {
    "build": ("`temporal workflow signal`, no input", lambda reason: _temporal_signal(), lambda reason: "rollback requested"),
    "apply": (
        "`pipeline rollback` (the update)",
        lambda reason: _pipeline_rollback,
        lambda reason: f"rollback requested: {reason}",
    ),
    "rollout": (
        "`temporal workflow signal --input '[1, 2]'` (unreadable)",
        lambda reason: _temporal_signal("--input", "[1, 2]"),
        lambda reason: "rollback requested: (the rollback's input could not be read: expected",
    ),
    "verify": (
        "`temporal workflow signal --input {reason}`",
        lambda reason: _temporal_signal("--input", json.dumps({"reason": reason, "requested_by": "fault test"})),
        lambda reason: f"rollback requested: {reason}",
    ),
}


async def _interrupt_during(
    app: FaultApp,
    client: Client,
    *,
    step: str,
    config: Path,
    busy: Callable[[], Awaitable[None]],
    send: Callable[[], Awaitable[None]],
    exit_code: int,
) -> tuple[Run, float, str]:
    """Start `pipeline deploy` with `config`; once the status query says `step` and `busy()` passes, `send()`.

    Returns the deploy's run, the seconds from `send()` to the deploy's end, and the workflow's run id.
    """
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=config)
    handle = client.get_workflow_handle(app.workflow_id)
    sent = 0.0
    try:

        async def at_step() -> None:
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING, "the deployment has not started yet"
            status = await handle.query(DeploymentWorkflow.status)
            assert status.step == step, f"step {status.step!r}"
            await busy()

        await eventually(at_step, timeout=120, interval=0.1, what=f"the deployment at step {step!r}")
        sent = time.monotonic()
        await send()
    finally:
        deploy = await app.finish(process, args, started=started, timeout=180)
    deploy.expect(exit_code, diagnose=app.diagnose)
    history = await client.get_workflow_handle(app.workflow_id, run_id=deploy.run_id).fetch_history()
    assert not failed_workflow_tasks(history), f"a workflow task failed: {failed_workflow_tasks(history)}"
    return deploy, time.monotonic() - sent, deploy.run_id


async def _roll_back_during(
    app: FaultApp, client: Client, *, step: str, config: Path, busy: Callable[[], Awaitable[None]], reason: str
) -> RolledBack:
    _, sender, _ = SENDERS[step]
    deploy, seconds, run_id = await _interrupt_during(
        app, client, step=step, config=config, busy=busy, send=lambda: sender(reason)(app, reason), exit_code=EXIT_ROLLED_BACK
    )
    result = await client.get_workflow_handle_for(DeploymentWorkflow.run, app.workflow_id, run_id=run_id).result()
    return RolledBack(deploy, seconds, result)


def _recorded_image(app: FaultApp) -> str:
    with app.real_kube_client() as kc:
        data = kube.get_configmap(kc, namespace=app.namespace, name=app.name + REVISION_CONFIGMAP_SUFFIX)
    assert data and "revision.json" in data, f"no recorded revision for {app.name}"
    return str(json.loads(data["revision.json"])["image"])


async def _assert_back_on_v1(app: FaultApp, client: Client, v1: Deployed, done: RolledBack, *, step: str, reason: str) -> None:
    result = done.result
    assert result.outcome == "rolled_back", result
    assert result.reason.startswith(SENDERS[step][2](reason)), result.reason
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
        f"rollback during {step} by {SENDERS[step][0]} -> rolled back and v1 verified in {done.rollback_seconds:.1f}s "
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


def _busy_version(app: FaultApp, proxy: FaultProxy, v1: Deployed, step: str) -> tuple[Path, Callable[[], Awaitable[None]]]:
    """A new version that keeps `step` busy, and the check that it is busy there now."""
    version = f"v2-{step}-{uuid.uuid4().hex[:6]}"  # a new image each run: never a build the registry already has
    if step == "build":
        return app.config(version, build_context=slow_build_context(app.directory, v1.image, seconds=15)), _nothing
    if step == "apply":

        async def held() -> None:
            assert proxy.holding, f"the new version's Deployment PATCH is not held yet: {proxy.seen}"

        proxy.seen.clear()
        proxy.rule = hold_patches(app.deployment_path, seconds=APPLY_HOLD_SECONDS)
        # Never ready in time: its pod, created once the held PATCH lands, goes at once when the rollback deletes it.
        return app.config(version, command=late_worker(ready_after=120)), held
    if step == "rollout":
        late = late_worker(ready_after=120)
        return app.config(version, command=late), _has_pod_of(app, late)
    # With the polling gate a pod is Ready only once it polls, so what keeps verification busy is the old
    # version: a new version without graceful_shutdown counts v1's terminating pods as serving until they
    # are gone, and v1's pods first finish the long charges `_keep_v1_busy` starts.
    return app.config(version, graceful_shutdown=False), _nothing


async def _keep_v1_busy(app: FaultApp, client: Client, step: str) -> None:
    """For step "verify": orders whose charge takes a minute, in flight on v1's pods before the deployment starts."""
    if step != "verify":
        return
    settings = Settings(temporal_address=app.temporal_address, task_queue=app.task_queue)
    handles = await start_orders(client, settings, count=4, delay_seconds=60)

    async def charging() -> None:
        pending = [await pending_activity(handle) for handle in handles]
        assert all(p == ["charge_payment"] for p in pending), f"the orders' charges have not started yet: {pending}"

    await eventually(charging, timeout=30, what="v1's pods charging")


@pytest.mark.parametrize("step", STEPS)
async def test_rollback_signal_restores_the_verified_revision(
    proxied: tuple[FaultApp, FaultProxy], v1: Deployed, stack_client: Client, step: str
) -> None:
    app, proxy = proxied
    generation = app.real_deployment()["metadata"]["generation"]
    reason = f"fault test: roll back during {step}"
    try:
        config, busy = _busy_version(app, proxy, v1, step)
        await _keep_v1_busy(app, stack_client, step)
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


@pytest.mark.parametrize("step", ["build", "rollout", "verify"])
async def test_a_cancellation_restores_and_verifies_the_previous_revision_before_it_ends(
    proxied: tuple[FaultApp, FaultProxy], v1: Deployed, stack_client: Client, step: str
) -> None:
    """`temporal workflow cancel` (the Web UI's "Request Cancellation") at each step: v1 back, verified, then Canceled."""
    app, proxy = proxied

    async def cancel() -> None:
        await temporal("workflow", "cancel", "--workflow-id", app.workflow_id)

    config, busy = _busy_version(app, proxy, v1, step)
    await _keep_v1_busy(app, stack_client, step)
    deploy, seconds, run_id = await _interrupt_during(
        app, stack_client, step=step, config=config, busy=busy, send=cancel, exit_code=EXIT_CANCELED
    )
    assert f"Canceled: restored {v1.image}, verified polling" in deploy.stderr, deploy.output
    handle = stack_client.get_workflow_handle(app.workflow_id, run_id=run_id)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert (await handle.query(DeploymentWorkflow.status)).step == "canceled"
    history = await handle.fetch_history()
    asked = next(e.event_id for e in history.events if e.HasField("workflow_execution_cancel_requested_event_attributes"))
    after = [
        s
        for s in activity_spans(history)
        if s.scheduled >= next(e.event_time.ToDatetime(tzinfo=UTC) for e in history.events if e.event_id == asked)
    ]
    assert [s.activity for s in after] == ["apply_manifests", "wait_for_rollout", "verify_polling", "record_revision"], after
    assert all(s.outcome == "completed" for s in after), after
    template = app.real_deployment()["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == v1.image and template_build_id(app.real_deployment()) == v1.build_id
    assert _recorded_image(app) == v1.image
    pods = await assert_polling(stack_client, app, v1)
    print(f"cancel during {step} -> v1 restored and verified, then Canceled, in {seconds:.1f}s; polling: {pods}")


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
