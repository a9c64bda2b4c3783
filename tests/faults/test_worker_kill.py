"""The pipeline worker is SIGKILLed mid-deployment; a new one finishes it, doing each step once.

    v1  deployed normally
    v2  slow to start (ready 6 s late), and slow to stop (it polls 15 s after SIGTERM):
        worker killed during the rollout wait
    v3  declares no graceful shutdown, so its verification waits for v2's terminating pods
        (still polling) to be gone: the worker is killed meanwhile
    v4  a slow build (8 s): worker killed during the build
    v5  worker killed during the apply: the fault proxy in front of the cluster API holds
        the Deployment's server-side-apply PATCH for a few seconds, the worker is killed
        while it is held, and the held PATCH then lands anyway (as a request the server
        had received would); the apply is retried once its heartbeat times out and must
        change nothing more

After each kill a new worker starts at once; Temporal retries the killed
activity when its heartbeat times out (20 s for every step: the build and the
apply heartbeat from a keepalive thread, pipeline/keepalive.py), and the
deployment completes: one build, one apply (the Deployment's generation and
revision advance by one, one ReplicaSet for the new pod template), verified.
Timings (kill -> verified) are printed, not asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.e2e.support import Deployed, activity_spans, assert_polling, deployed, history_of
from tests.faults.chaos_fixtures import (
    FaultApp,
    attempts_of,
    new_fault_app,
    pending_activity,
    slow_build_context,
    slow_worker,
    template_build_id,
    through_fault_proxy,
    worker_running,
)
from tests.faults.faultproxy import FaultProxy, hold_patches
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

REVISION = "deployment.kubernetes.io/revision"


def _generation_and_revision(app: FaultApp) -> tuple[int, int]:
    found = app.real_deployment()
    meta: dict[str, Any] = found["metadata"]
    return int(meta["generation"]), int((meta.get("annotations") or {}).get(REVISION, "0"))


async def _deploy_killing_worker_during(
    app: FaultApp,
    client: Client,
    *,
    config: Path,
    activity: str,
    held_by: FaultProxy | None = None,
    after_kill: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Deployed, float]:
    """Deploy `config`, SIGKILL the worker while `activity` runs (and `held_by` holds a request), start a new one.

    `after_kill` runs once the new worker is started; returns the result and kill -> done.
    """
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=config)
    handle = client.get_workflow_handle(app.workflow_id)

    async def running() -> None:
        assert activity in await pending_activity(handle), f"{activity} is not running yet"
        assert held_by is None or held_by.holding, f"{activity} runs, but the proxy holds no request yet: {held_by.seen}"

    await eventually(running, timeout=90, interval=0.05, what=f"{activity} running")
    app.kill_worker()
    killed = time.monotonic()
    app.start_worker()
    if after_kill is not None:
        await after_kill()
    run = await app.finish(process, args, started=started, timeout=180)
    return deployed(run, app), time.monotonic() - killed


def _assert_each_step_once(spans: list[Any], attempts: dict[str, list[int]], killed: str) -> None:
    by_type: dict[str, list[Any]] = {}
    for span in spans:
        by_type.setdefault(span.activity, []).append(span)
    for step in ("build_image", "apply_manifests", "wait_for_rollout", "verify_polling", "record_revision"):
        outcomes = [s.outcome for s in by_type.get(step, [])]
        assert outcomes == ["completed"], f"{step}: expected one completed execution, history has {outcomes}"
    built = [1] if killed != "build_image" else [2]
    assert attempts["build_image"] == built, f"the build's attempts: {attempts['build_image']}, expected {built}"
    applied = [1] if killed != "apply_manifests" else [2]
    assert attempts["apply_manifests"] == applied, f"the apply's attempts: {attempts['apply_manifests']}, expected {applied}"
    assert attempts[killed] == [2], f"{killed} should have been retried once after the kill: attempts {attempts[killed]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proxied(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[tuple[FaultApp, FaultProxy]]:
    """The module's app, reaching the cluster through a fault proxy (passing everything unless a test says otherwise)."""
    app = new_fault_app(request)
    async with through_fault_proxy(app) as proxy, worker_running(app, stack_client):
        yield app, proxy


@pytest.fixture(scope="module")
def killable_app(proxied: tuple[FaultApp, FaultProxy]) -> FaultApp:
    return proxied[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(killable_app: FaultApp) -> Deployed:
    return deployed(await killable_app.cli("deploy", "--follow", config=killable_app.config("v1")), killable_app)


@pytest.mark.parametrize(
    ("version", "command", "killed", "graceful"),
    [
        ("v2", slow_worker(start=6, stop=15), "wait_for_rollout", None),
        ("v3", (), "verify_polling", False),
    ],
    ids=["during-rollout", "during-verification"],
)
async def test_killed_worker_deployment_completes_once(
    killable_app: FaultApp,
    v1: Deployed,
    stack_client: Client,
    version: str,
    command: list[str],
    killed: str,
    graceful: bool | None,
) -> None:
    generation, revision = _generation_and_revision(killable_app)

    config = killable_app.config(version, command=command, graceful_shutdown=graceful)
    done, kill_to_verified = await _deploy_killing_worker_during(killable_app, stack_client, config=config, activity=killed)

    history = await history_of(stack_client, killable_app, done.run)
    attempts = {a: attempts_of(history, a) for a in ("build_image", "apply_manifests", killed)}
    _assert_each_step_once(activity_spans(history), attempts, killed)
    assert _generation_and_revision(killable_app) == (generation + 1, revision + 1), "one apply, one new revision"
    assert done.image != v1.image
    print(f"worker SIGKILLed during {killed}: kill -> verified {kill_to_verified:.1f}s (heartbeat timeout 20 s)")


def _build_result(history: Any) -> dict[str, Any]:
    scheduled = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "build_image"
    }
    for e in history.events:
        if e.HasField("activity_task_completed_event_attributes"):
            attrs = e.activity_task_completed_event_attributes
            if attrs.scheduled_event_id in scheduled:
                return dict(json.loads(attrs.result.payloads[0].data))
    raise AssertionError("no completed build_image in the history")


async def test_killed_worker_during_build_deployment_builds_once(
    killable_app: FaultApp, v1: Deployed, stack_client: Client
) -> None:
    generation, revision = _generation_and_revision(killable_app)
    config = killable_app.config("v4", build_context=slow_build_context(killable_app.directory, v1.image))

    done, kill_to_verified = await _deploy_killing_worker_during(
        killable_app, stack_client, config=config, activity="build_image"
    )

    history = await history_of(stack_client, killable_app, done.run)
    attempts = {a: attempts_of(history, a) for a in ("build_image", "apply_manifests")}
    _assert_each_step_once(activity_spans(history), attempts, "build_image")
    assert _generation_and_revision(killable_app) == (generation + 1, revision + 1), "one apply, one new revision"
    built = _build_result(history)
    assert built["digest"] == done.build_id, f"the deployed image is not the one built: {built} vs {done.image}"
    print(
        f"worker SIGKILLed during build_image: kill -> verified {kill_to_verified:.1f}s (heartbeat timeout 20 s); "
        f"the retried build reused the pushed image: {built.get('reused')}"
    )


async def test_killed_worker_during_apply_applies_one_revision(
    proxied: tuple[FaultApp, FaultProxy], v1: Deployed, stack_client: Client
) -> None:
    app, proxy = proxied
    generation, revision = _generation_and_revision(app)
    hold = 6.0

    async def held_apply_lands() -> None:
        """The PATCH the killed worker sent is delivered after the kill: that apply happened, unacknowledged."""

        async def delivered() -> None:
            assert proxy.seen["delivered"] == 1, f"the held apply is not delivered yet: {proxy.seen}"

        await eventually(delivered, timeout=hold + 30, interval=0.1, what="the held Deployment PATCH delivered")
        assert _generation_and_revision(app) == (generation + 1, revision + 1), "the killed worker's apply did not land"

    proxy.rule = hold_patches(app.deployment_path, seconds=hold, times=1)
    try:
        done, kill_to_verified = await _deploy_killing_worker_during(
            app, stack_client, config=app.config("v5"), activity="apply_manifests", held_by=proxy, after_kill=held_apply_lands
        )
    finally:
        proxy.rule = lambda method, path: None

    history = await history_of(stack_client, app, done.run)
    attempts = {a: attempts_of(history, a) for a in ("build_image", "apply_manifests")}
    _assert_each_step_once(activity_spans(history), attempts, "apply_manifests")
    assert proxy.seen["held"] == 1, f"exactly the killed worker's Deployment PATCH was held: {proxy.seen}"
    assert _generation_and_revision(app) == (generation + 1, revision + 1), "the retried apply changed the Deployment again"
    assert template_build_id(app.real_deployment()) == done.build_id
    new_sets = [rs["metadata"]["name"] for rs in app.real_replica_sets() if template_build_id(rs) == done.build_id]
    assert len(new_sets) == 1, f"expected one ReplicaSet for the new pod template, found {new_sets}"
    pods = await assert_polling(stack_client, app, done)
    assert done.image != v1.image
    print(
        f"worker SIGKILLed during apply_manifests (PATCH held {hold:.0f}s, then delivered): kill -> verified "
        f"{kill_to_verified:.1f}s (heartbeat timeout 20 s); polling: {pods}"
    )
