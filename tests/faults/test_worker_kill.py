"""The pipeline worker is SIGKILLed mid-deployment; a new one finishes it, doing each step once.

    v1  slow to stop (old pods keep polling 8 s after SIGTERM): deployed normally
    v2  slow to start (ready 6 s late): worker killed during the rollout wait
    v3  worker killed during verification (it waits for v2's slow-stopping pods)

After each kill a new worker starts at once; Temporal retries the killed
activity when its heartbeat times out (20 s), and the deployment completes:
one build, one apply (the Deployment's generation and revision advance by
one), verified. Timings (kill -> verified) are printed, not asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.conftest import eventually
from tests.e2e.support import Deployed, activity_spans, deployed, history_of
from tests.faults.chaos_fixtures import (
    FaultApp,
    attempts_of,
    new_fault_app,
    pending_activity,
    slow_worker,
    worker_running,
)

pytestmark = pytest.mark.e2e

REVISION = "deployment.kubernetes.io/revision"


def _generation_and_revision(app: FaultApp) -> tuple[int, int]:
    found = app.real_deployment()
    meta: dict[str, Any] = found["metadata"]
    return int(meta["generation"]), int((meta.get("annotations") or {}).get(REVISION, "0"))


async def _deploy_killing_worker_during(app: FaultApp, client: Client, *, config: Path, activity: str) -> tuple[Deployed, float]:
    """Deploy `version`, SIGKILL the worker while `activity` runs, start a new one; return the result and kill->done."""
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=config)
    handle = client.get_workflow_handle(app.workflow_id)

    async def running() -> None:
        assert activity in await pending_activity(handle), f"{activity} is not running yet"

    await eventually(running, timeout=90, interval=0.1, what=f"{activity} running")
    app.kill_worker()
    killed = time.monotonic()
    app.start_worker()
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
    assert attempts["apply_manifests"] == [1], f"apply ran more than once: attempts {attempts['apply_manifests']}"
    assert attempts[killed] == [2], f"{killed} should have been retried once after the kill: attempts {attempts[killed]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def killable_app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[FaultApp]:
    async with worker_running(new_fault_app(request), stack_client) as app:
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(killable_app: FaultApp) -> Deployed:
    run = await killable_app.cli("deploy", "--follow", config=killable_app.config("v1", command=slow_worker(stop=8)))
    return deployed(run, killable_app)


@pytest.mark.parametrize(
    ("version", "command", "killed"),
    [
        ("v2", slow_worker(start=6, stop=8), "wait_for_rollout"),
        ("v3", slow_worker(stop=8), "verify_polling"),
    ],
    ids=["during-rollout", "during-verification"],
)
async def test_killed_worker_deployment_completes_once(
    killable_app: FaultApp, v1: Deployed, stack_client: Client, version: str, command: list[str], killed: str
) -> None:
    generation, revision = _generation_and_revision(killable_app)

    config = killable_app.config(version, command=command)
    done, kill_to_verified = await _deploy_killing_worker_during(killable_app, stack_client, config=config, activity=killed)

    history = await history_of(stack_client, killable_app, done.run)
    attempts = {a: attempts_of(history, a) for a in ("build_image", "apply_manifests", killed)}
    _assert_each_step_once(activity_spans(history), attempts, killed)
    assert _generation_and_revision(killable_app) == (generation + 1, revision + 1), "one apply, one new revision"
    assert done.image != v1.image
    print(f"worker SIGKILLed during {killed}: kill -> verified {kill_to_verified:.1f}s (heartbeat timeout 20 s)")


def _slow_build_context(app: FaultApp, base_image: str) -> Path:
    """A build context whose image is `base_image` plus a layer that takes 8 s to build (VERSION makes it new)."""
    context = app.directory / "slow-build"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(
        f"FROM {base_image} AS sample-worker\nARG VERSION\nLABEL fault.version=$VERSION\nRUN sleep 8 && echo $VERSION > /tmp/version\n"
    )
    return context


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
    config = killable_app.config("v4", build_context=_slow_build_context(killable_app, v1.image))

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
        f"worker SIGKILLed during build_image: kill -> verified {kill_to_verified:.1f}s (heartbeat timeout 60 s); "
        f"the retried build reused the pushed image: {built.get('reused')}"
    )
