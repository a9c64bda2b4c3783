"""The sample worker with Temporal worker versioning (Worker Deployments), against the session's real dev server.

Two in-process workers of one Worker Deployment, builds b1 and b2, play a
rollout: b1 is made current, a pinned and an auto-upgrade workflow start, b2
is made current, both are signalled. The histories must then say that every
task of the pinned one ran on b1 and that the auto-upgrade one moved to b2.
The routing is the server's (after the raw SetWorkerDeploymentCurrentVersion
call); nothing here decides where a task goes.

Versioning off (the pipeline's rolling apps) must poll exactly as before.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, RoutingConfigUpdateState, VersioningBehavior, WorkerVersioningMode
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from sample_worker import client as sample_client
from sample_worker.settings import Settings, SettingsError, load_settings
from sample_worker.worker import build_worker
from sample_worker.workflows import FINISH_SIGNAL, AutoUpgradeWorkflow, PinnedWorkflow, RunReport
from tests.helpers import REPO_ROOT, eventually, unique_name
from tests.helpers.workers import pollers

pytestmark = pytest.mark.unit

# What the pipeline puts in a versioned pod (besides the TEMPORAL_* connection variables).
VERSIONING_VARS = ("TEMPORAL_DEPLOYMENT_NAME", "TEMPORAL_WORKER_BUILD_ID", "TEMPORAL_USE_WORKER_VERSIONING")
WORKER_VARS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CA_FILE",
    "TEMPORAL_TLS_CERT_FILE",
    "TEMPORAL_TLS_KEY_FILE",
    "TEMPORAL_API_KEY",
    "POD_NAME",
    "BUILD_ID",
    *VERSIONING_VARS,
)


def digest() -> str:
    """A build id of the pipeline's shape: the image digest."""
    return f"sha256:{os.urandom(32).hex()}"


def deployment_name() -> str:
    """The pipeline's shape, <namespace>/<app>, unique per test."""
    return unique_name("workers/sample-worker")


def versioned(task_queue: str, deployment: str, build_id: str, pod: str) -> Settings:
    return Settings(
        task_queue=task_queue,
        pod_name=pod,
        build_id=build_id,
        deployment_name=deployment,
        use_worker_versioning=True,
        shutdown_grace_seconds=5,
    )


# ---------------------------------------------------------------- the server's routing


async def describe(client: Client, deployment: str) -> Any:
    return await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
    )


async def set_current(client: Client, deployment: str, build_id: str) -> None:
    """Make `build_id` the deployment's current version once its workers registered it; wait until propagated."""

    async def registered() -> bytes:
        try:
            resp = await describe(client, deployment)
        except RPCError as err:  # NotFound until the first poll registers the deployment
            raise AssertionError(str(err)) from None
        builds = [v.deployment_version.build_id for v in resp.worker_deployment_info.version_summaries]
        assert build_id in builds, builds
        return resp.conflict_token

    token = await eventually(registered, what=f"version {build_id} registered in {deployment}")
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment,
            build_id=build_id,
            conflict_token=token,
            identity="pytest",
        )
    )

    async def propagated() -> None:
        info = (await describe(client, deployment)).worker_deployment_info
        assert info.routing_config.current_deployment_version.build_id == build_id, info.routing_config
        assert info.routing_config_update_state == RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED, info

    await eventually(propagated, what=f"{build_id} current in {deployment}")


# ---------------------------------------------------------------- histories


def completed_tasks(events: list[HistoryEvent]) -> list[tuple[str, str, int]]:
    """(identity, build id, versioning behaviour) of every completed workflow task, in order."""
    return [
        (
            e.workflow_task_completed_event_attributes.identity,
            e.workflow_task_completed_event_attributes.deployment_version.build_id,
            e.workflow_task_completed_event_attributes.versioning_behavior,
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


def activity_identities(events: list[HistoryEvent]) -> list[str]:
    return [
        e.activity_task_started_event_attributes.identity
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return list((await handle.fetch_history()).events)


async def expect_first_task_done(handle: WorkflowHandle[Any, Any]) -> None:
    assert completed_tasks(await history(handle)), f"{handle.id}: no workflow task completed yet"


@asynccontextmanager
async def running(client: Client, *settings: Settings) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for one in settings:
            await stack.enter_async_context(build_worker(client, one))
        yield


# ---------------------------------------------------------------- the rollout


async def test_pinned_stays_on_its_build_and_auto_upgrade_moves_to_the_new_current(client: Client, task_queue: str) -> None:
    deployment, b1, b2 = deployment_name(), digest(), digest()
    old = versioned(task_queue, deployment, b1, "pod-old")
    new = versioned(task_queue, deployment, b2, "pod-new")
    async with running(client, old, new):
        await set_current(client, deployment, b1)
        pinned = await client.start_workflow(PinnedWorkflow.run, id=unique_name("pinned"), task_queue=task_queue)
        auto = await client.start_workflow(AutoUpgradeWorkflow.run, id=unique_name("auto"), task_queue=task_queue)
        for handle in (pinned, auto):
            await eventually(lambda h=handle: expect_first_task_done(h), what=f"{handle.id} started")

        await set_current(client, deployment, b2)  # the rollout: b2 takes new and auto-upgrade work
        for handle in (pinned, auto):
            await handle.signal(FINISH_SIGNAL)
        pinned_report = await asyncio.wait_for(pinned.result(), 20)
        auto_report = await asyncio.wait_for(auto.result(), 20)
        later = await client.start_workflow(AutoUpgradeWorkflow.run, id=unique_name("auto"), task_queue=task_queue)
        await later.signal(FINISH_SIGNAL)
        later_report = await asyncio.wait_for(later.result(), 20)

    assert pinned_report == RunReport(workflow_id=pinned.id, started_on=b1, finished_on=b1, approval_id=f"appr-{pinned.id}")
    assert auto_report == RunReport(workflow_id=auto.id, started_on=b1, finished_on=b2)
    assert later_report == RunReport(workflow_id=later.id, started_on=b2, finished_on=b2)

    pinned_events = await history(pinned)
    tasks = completed_tasks(pinned_events)
    assert len(tasks) >= 2, tasks  # the one before the rollout and at least one after the signal
    assert set(tasks) == {(old.identity, b1, VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)}, tasks
    assert activity_identities(pinned_events) == [old.identity]  # a pinned workflow's activities stay on its build

    tasks = completed_tasks(await history(auto))
    assert tasks[0] == (old.identity, b1, VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE), tasks
    assert tasks[-1] == (new.identity, b2, VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE), tasks


async def test_versioned_worker_polls_as_its_deployment_version(client: Client, task_queue: str) -> None:
    deployment, build = deployment_name(), digest()
    settings = versioned(task_queue, deployment, build, "pod-v")
    async with build_worker(client, settings):

        async def polling() -> None:
            found = await pollers(client, task_queue)
            for kind in ("workflow", "activity"):
                mine = [p for p in found[kind] if p.identity == settings.identity]
                assert mine, f"no {kind} poller {settings.identity}: {found[kind]}"
                options = mine[0].deployment_options
                assert (options.deployment_name, options.build_id) == (deployment, build), options
                assert options.worker_versioning_mode == WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED

        await eventually(polling, what="versioned pollers")


async def test_versioning_off_polls_unversioned_as_before(client: Client, task_queue: str) -> None:
    """A rolling app's pod has the deployment name and build id but not the switch: nothing changes."""
    build = digest()
    settings = load_settings(
        {
            "TEMPORAL_TASK_QUEUE": task_queue,
            "POD_NAME": "pod-rolling",
            "TEMPORAL_DEPLOYMENT_NAME": deployment_name(),
            "TEMPORAL_WORKER_BUILD_ID": build,
        }
    )
    assert settings.use_worker_versioning is False
    async with build_worker(client, settings):

        async def polling() -> None:
            found = await pollers(client, task_queue)
            for kind in ("workflow", "activity"):
                mine = [p for p in found[kind] if p.identity == f"pod-rolling@{build}"]
                assert mine, f"no {kind} poller: {found[kind]}"
                assert mine[0].worker_version_capabilities.build_id == build
                assert not mine[0].worker_version_capabilities.use_versioning
                assert mine[0].deployment_options.worker_versioning_mode != WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED
                assert mine[0].deployment_options.deployment_name == "", mine[0].deployment_options

        await eventually(polling, what="unversioned pollers")

        # The behaviours the workflows declare change nothing on an unversioned worker.
        handles = [
            await client.start_workflow(PinnedWorkflow.run, id=unique_name("pinned"), task_queue=task_queue),
            await client.start_workflow(AutoUpgradeWorkflow.run, id=unique_name("auto"), task_queue=task_queue),
        ]
        for handle in handles:
            await handle.signal(FINISH_SIGNAL)
        reports = [await asyncio.wait_for(h.result(), 20) for h in handles]
    assert [(r.started_on, r.finished_on) for r in reports] == [(build, build), (build, build)]
    assert reports[0].approval_id == f"appr-{handles[0].id}"
    for handle in handles:
        for identity, build_id, behavior in completed_tasks(await history(handle)):
            assert (identity, build_id, behavior) == (
                settings.identity,
                "",
                VersioningBehavior.VERSIONING_BEHAVIOR_UNSPECIFIED,
            )


# ---------------------------------------------------------------- settings


def test_versioning_settings() -> None:
    build = digest()
    on = load_settings(
        {
            "TEMPORAL_USE_WORKER_VERSIONING": "TRUE",
            "TEMPORAL_DEPLOYMENT_NAME": "workers/sample-worker",
            "TEMPORAL_WORKER_BUILD_ID": build,
            "BUILD_ID": "ignored-tag",
            "POD_NAME": "web-1",
        }
    )
    assert (on.use_worker_versioning, on.deployment_name, on.build_id) == (True, "workers/sample-worker", build)
    assert on.identity == f"web-1@{build}"
    # BUILD_ID alone still names the build, with versioning on too.
    fallback = load_settings({"TEMPORAL_USE_WORKER_VERSIONING": "1", "TEMPORAL_DEPLOYMENT_NAME": "d", "BUILD_ID": "v7"})
    assert (fallback.use_worker_versioning, fallback.build_id) == (True, "v7")
    for raw, expected in (("yes", True), ("No", False), ("0", False), ("false", False), ("", False)):
        env = {"TEMPORAL_USE_WORKER_VERSIONING": raw, "TEMPORAL_DEPLOYMENT_NAME": "d", "BUILD_ID": "b"}
        assert load_settings(env).use_worker_versioning is expected, raw
    assert load_settings({}).deployment_name is None


BAD_VERSIONING: list[tuple[dict[str, str], str]] = [
    ({"TEMPORAL_USE_WORKER_VERSIONING": "maybe"}, "TEMPORAL_USE_WORKER_VERSIONING must be true or false, got 'maybe'"),
    (
        {"TEMPORAL_USE_WORKER_VERSIONING": "true", "TEMPORAL_WORKER_BUILD_ID": "b1"},
        "TEMPORAL_USE_WORKER_VERSIONING=true needs TEMPORAL_DEPLOYMENT_NAME, which is not set",
    ),
    (
        {"TEMPORAL_USE_WORKER_VERSIONING": "true", "TEMPORAL_DEPLOYMENT_NAME": "workers/sample-worker"},
        "TEMPORAL_USE_WORKER_VERSIONING=true needs TEMPORAL_WORKER_BUILD_ID (or BUILD_ID), neither is set",
    ),
    (
        {"TEMPORAL_USE_WORKER_VERSIONING": "true", "TEMPORAL_DEPLOYMENT_NAME": "sample.worker", "BUILD_ID": "b1"},
        "TEMPORAL_DEPLOYMENT_NAME must be at most 255 characters without spaces, '.' or ':' and must not start with '__',"
        " got 'sample.worker'",
    ),
    (
        {"TEMPORAL_USE_WORKER_VERSIONING": "true", "TEMPORAL_DEPLOYMENT_NAME": "workers:sample", "BUILD_ID": "b1"},
        "TEMPORAL_DEPLOYMENT_NAME must be at most 255 characters without spaces, '.' or ':' and must not start with '__',"
        " got 'workers:sample'",
    ),
    (
        {"TEMPORAL_USE_WORKER_VERSIONING": "true", "TEMPORAL_DEPLOYMENT_NAME": "d", "TEMPORAL_WORKER_BUILD_ID": "__b1"},
        "TEMPORAL_WORKER_BUILD_ID must not start with '__' when worker versioning is on, got '__b1'",
    ),
    (
        {"TEMPORAL_WORKER_BUILD_ID": "sha256:ab cd"},
        "TEMPORAL_WORKER_BUILD_ID must be at most 255 characters without spaces, got 'sha256:ab cd'",
    ),
]


@pytest.mark.parametrize(("env", "message"), BAD_VERSIONING, ids=[str(i) for i in range(len(BAD_VERSIONING))])
def test_bad_versioning_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value) == message


def test_versioning_without_a_deployment_name_exits_2_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in WORKER_VARS}
    env.update(TEMPORAL_USE_WORKER_VERSIONING="true", TEMPORAL_WORKER_BUILD_ID="b1")
    proc = subprocess.run(
        [sys.executable, "-m", "sample_worker.worker"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "sample-worker: configuration error: TEMPORAL_USE_WORKER_VERSIONING=true needs TEMPORAL_DEPLOYMENT_NAME,"
        " which is not set\n"
    )


# ---------------------------------------------------------------- the client's subcommands


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, temporal_address: str, task_queue: str) -> str:
    """The starter's environment: the session's dev server and this test's task queue."""
    for name in WORKER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_address)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", task_queue)
    return task_queue


async def run_client(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = await sample_client.main(list(argv))
    return code, capsys.readouterr().out.splitlines()


async def test_client_starts_and_finishes_the_long_running_workflows(
    client: Client, client_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment, build = deployment_name(), digest()
    pinned_id = unique_name("my-pinned")
    async with build_worker(client, versioned(client_env, deployment, build, "pod-cli")):
        await set_current(client, deployment, build)

        assert await run_client(capsys, "start-pinned", "--id", pinned_id) == (0, [f"{pinned_id} started"])
        code, out = await run_client(capsys, "start-auto")
        assert code == 0 and len(out) == 1 and out[0].startswith("auto-") and out[0].endswith(" started"), out
        auto_id = out[0].removesuffix(" started")
        described = await client.get_workflow_handle(auto_id).describe()
        assert described.workflow_type == "AutoUpgradeWorkflow"

        # The same id again: refused while the first one runs.
        assert await run_client(capsys, "start-pinned", "--id", pinned_id) == (
            1,
            [f"{pinned_id} could not be started: a workflow with this id is already running"],
        )

        code, out = await run_client(capsys, "finish", "--wait", pinned_id, auto_id)
        assert (code, out) == (
            0,
            [
                f"{pinned_id} finished",
                f"{pinned_id} completed: started on {build}, finished on {build}",
                f"{auto_id} finished",
                f"{auto_id} completed: started on {build}, finished on {build}",
            ],
        )

        # Finished already, and never started: one line each, exit 1.
        missing = unique_name("missing")
        code, out = await run_client(capsys, "finish", pinned_id, missing)
        assert code == 1
        assert [line.split(":")[0] for line in out] == [f"{pinned_id} could not be finished", f"{missing} could not be finished"]
        assert all(len(line) < 300 for line in out), out

        # The original invocation is unchanged: orders, waited for.
        code, out = await run_client(capsys, "--count", "2", "--wait")
        assert code == 0 and len(out) == 2 and all(" completed: trk-" in line for line in out), out


async def test_client_subcommand_as_a_process(client: Client, temporal_address: str, task_queue: str) -> None:
    """`python -m sample_worker.client start-auto --id X` prints its id; a missing argument is argparse's exit 2."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_VARS}
    env.update(TEMPORAL_ADDRESS=temporal_address, TEMPORAL_TASK_QUEUE=task_queue)
    workflow_id = unique_name("proc-auto")

    def starter(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sample_worker.client", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
        )

    proc = await asyncio.to_thread(starter, "start-auto", "--id", workflow_id)
    try:
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{workflow_id} started\n", "")
        assert (await client.get_workflow_handle(workflow_id).describe()).workflow_type == "AutoUpgradeWorkflow"
    finally:
        if proc.returncode == 0:
            await client.get_workflow_handle(workflow_id).terminate("test over")
    proc = await asyncio.to_thread(starter, "finish")
    assert proc.returncode == 2 and "the following arguments are required: ID" in proc.stderr, proc.stderr
