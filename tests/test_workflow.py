"""DeploymentWorkflow's decisions, on the real dev server, with activity doubles registered by name.

These tests pin the workflow's logic (order of steps, auto-rollback, the
rollback signal at each step, one deployment at a time, the status query,
search attributes) independently of Docker and the cluster, which the
end-to-end tests cover. Every history they produce is replayed with the
Replayer, and `tests/histories/` keeps recorded ones that must go on replaying
(RECORD_HISTORIES=<label> records this run's histories as `<label>-<case>.json` next to
the older ones, which stay: a deliberate, patched change adds histories, never replaces them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Replayer, Worker

from pipeline import contract, deployments, search_attributes
from pipeline.contract import RollbackAnswer
from pipeline.keeper import VersionKeeperWorkflow
from pipeline.models import (
    AppliedObject,
    ApplyInput,
    ApplyResult,
    AppSpec,
    BuildImageInput,
    BuildPlatformInput,
    BuildSpec,
    BuiltImage,
    ClusterRef,
    DeploymentResult,
    DeploymentStatus,
    DeployRequest,
    Manifests,
    PlatformImage,
    Poller,
    PushIndexInput,
    ReadRevisionInput,
    ReadRevisionResult,
    RecordRevisionInput,
    RenderInput,
    ResourceSpec,
    Revision,
    RolloutInput,
    RolloutResult,
    RolloutSpec,
    SourceRef,
    TemporalTarget,
    VerifyInput,
    VerifyResult,
)
from pipeline.workflows import DeploymentWorkflow, RollbackRequest
from tests.helpers.histories import failed_workflow_tasks

pytestmark = pytest.mark.unit

# The held doubles heartbeat every 0.1 s: unthrottled, a cancellation reaches them at once (throttled by
# default to 80% of the 20 s heartbeat timeout, a rollback signal during a held apply took 16 s).
HEARTBEAT_THROTTLE = timedelta(seconds=0.1)

HISTORIES = Path(__file__).parent / "histories"
PREVIOUS = Revision(
    image="127.0.0.1:5000/app@sha256:" + "1" * 64,
    build_id="sha256:" + "1" * 64,
    manifests=Manifests(objects=[{"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"v": 1}}]),
)
NEW_DIGEST = "sha256:" + "2" * 64


def request_for(app: str, *, auto_rollback: bool = True, image: str = "", restore: str = "") -> DeployRequest:
    return DeployRequest(
        app=AppSpec(
            name=app,
            namespace="ns",
            task_queue=f"{app}-tq",
            replicas=2,
            resources=ResourceSpec("100m", "500m", "128Mi", "256Mi"),
            rollout=RolloutSpec(
                progress_deadline_seconds=30,
                max_surge=1,
                max_unavailable=0,
                verification_timeout_seconds=10,
                auto_rollback=auto_rollback,
            ),
            health_port=8080,
            termination_grace_period_seconds=30,
            build=BuildSpec(dockerfile="Dockerfile", target="t", repository="127.0.0.1:5000/app", source=SourceRef("0" * 64)),
        ),
        environment="test",
        temporal=TemporalTarget(address="127.0.0.1:7233", namespace="default"),
        cluster=ClusterRef(kubeconfig="/nowhere"),
        image=image,
        restore=restore,
    )


@dataclass
class Cluster:
    """What the activity doubles did: a tiny model of the cluster and the registry."""

    previous: Revision | None = PREVIOUS
    older: list[Revision] = field(default_factory=list)  # verified before `previous`, newest first
    builds: int = 0
    applied: list[list[dict[str, object]]] = field(default_factory=list)
    recorded: list[Revision] = field(default_factory=list)
    fail_rollout_for: str = ""  # build id whose rollout fails with CrashLoopBackOff
    hold: str = ""  # step that waits until cancelled (for the rollback signal)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends a held step that is not cancelled
    current_build: str = ""
    calls: dict[str, int] = field(default_factory=dict)

    def activities(self) -> list[Callable[..., Any]]:
        cluster = self

        async def wait_if_held(step: str) -> None:
            """Only the forward deployment's call of the held step blocks; the rollback's runs through."""
            cluster.calls[step] = cluster.calls.get(step, 0) + 1
            if cluster.hold != step or cluster.calls[step] > 1:
                return
            cluster.held.set()
            while not cluster.release.is_set():  # heartbeat until the workflow cancels us (or the test lets go)
                activity.heartbeat(step)
                await asyncio.sleep(0.1)

        @activity.defn(name="read_revision")
        async def read_revision(r: ReadRevisionInput) -> ReadRevisionResult:
            await wait_if_held("read")
            history = ([cluster.previous] if cluster.previous else []) + cluster.older
            return ReadRevisionResult(revision=cluster.previous, history=history)

        @activity.defn(name="build_image")
        async def build_image(r: BuildImageInput) -> BuiltImage:
            await wait_if_held("build")
            cluster.builds += 1
            return BuiltImage(r.build.repository, "t1", NEW_DIGEST)

        @activity.defn(name="render_manifests")
        async def render_manifests(r: RenderInput) -> Manifests:
            return Manifests(objects=[{"kind": "Deployment", "metadata": {"name": r.app.name}, "spec": {"image": r.image}}])

        @activity.defn(name="apply_manifests")
        async def apply_manifests(r: ApplyInput) -> ApplyResult:
            await wait_if_held("apply")
            cluster.applied.append(r.manifests.objects)
            cluster.current_build = str(r.manifests.objects[0]["spec"])  # type: ignore[index]
            return ApplyResult(objects=[AppliedObject("Deployment", r.app, "ns", "7", generation=len(cluster.applied))])

        @activity.defn(name="wait_for_rollout")
        async def wait_for_rollout(r: RolloutInput) -> RolloutResult:
            await wait_if_held("rollout")
            if cluster.fail_rollout_for and cluster.fail_rollout_for in cluster.current_build:
                raise ApplicationError("pod app-x-abcde: CrashLoopBackOff", type="RolloutFailed", non_retryable=True)
            return RolloutResult("app-hash", "hash", ["app-hash-aaaaa", "app-hash-bbbbb"], 2, 2, 2, "2")

        @activity.defn(name="verify_polling")
        async def verify_polling(r: VerifyInput) -> VerifyResult:
            await wait_if_held("verify")
            pollers = [Poller(f"app-hash-aaaaa@{r.build_id}", "workflow", r.build_id, "2026-01-01T00:00:00Z")]
            return VerifyResult(pods=["app-hash-aaaaa"], pollers=pollers, verified_at="2026-01-01T00:00:01Z")

        @activity.defn(name="record_revision")
        async def record_revision(r: RecordRevisionInput) -> None:
            await wait_if_held("record")
            cluster.recorded.append(r.revision)

        return [read_revision, build_image, render_manifests, apply_manifests, wait_for_rollout, verify_polling, record_revision]


@contextlib.asynccontextmanager
async def pipeline_worker(client: Client, cluster: Cluster) -> AsyncIterator[str]:
    """A worker of DeploymentWorkflow with `cluster`'s activity doubles on a task queue of its own (yielded)."""
    task_queue = f"deploy-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[DeploymentWorkflow],
        activities=cluster.activities(),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    ):
        yield task_queue


async def run_deployment(
    client: Client, cluster: Cluster, request: DeployRequest, *, during: Callable[[Any], Any] | None = None
) -> tuple[DeploymentResult, WorkflowHistory]:
    async with pipeline_worker(client, cluster) as task_queue:
        handle = await deployments.start(client, request, task_queue=task_queue)
        if during is not None:
            await during(handle)
        result = await handle.result()
        history = await handle.fetch_history()
    await Replayer(workflows=[DeploymentWorkflow]).replay_workflow(history)
    _maybe_record(request, history, cluster)
    return result, history


def _maybe_record(request: DeployRequest, history: WorkflowHistory, cluster: Cluster) -> None:
    label = os.environ.get("RECORD_HISTORIES", "")
    if not label:
        return
    HISTORIES.mkdir(exist_ok=True)
    kind = cluster.hold or ("crash" if cluster.fail_rollout_for else "success")
    mode = "auto" if request.app.rollout.auto_rollback else "manual"
    name = f"{label}-{kind}-{mode}-{'prev' if cluster.previous else 'first'}.json"
    (HISTORIES / name).write_text(history.to_json())


def app_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def test_a_deployment_builds_applies_rolls_out_verifies_and_records(client: Client) -> None:
    cluster = Cluster()
    result, history = await run_deployment(client, cluster, request_for(app_name()))
    assert result.outcome == "succeeded", result
    assert result.image == f"127.0.0.1:5000/app@{NEW_DIGEST}"
    assert result.previous_image == PREVIOUS.image
    assert result.steps == ["read previous revision", "build", "render", "apply", "rollout", "verify", "record"]
    assert [p.build_id for p in result.pollers] == [NEW_DIGEST]
    assert cluster.builds == 1 and len(cluster.applied) == 1
    assert [r.build_id for r in cluster.recorded] == [NEW_DIGEST]
    assert len(history.events) <= 80, f"{len(history.events)} history events"


async def test_search_attributes_and_summaries_make_the_web_ui_read_like_a_log(client: Client) -> None:
    app = app_name()
    result, history = await run_deployment(client, Cluster(), request_for(app))
    assert result.outcome == "succeeded"
    rows = await deployments.history(client, app=app, environment="test")
    while not rows or rows[0].outcome != "succeeded":  # visibility is eventually consistent
        await asyncio.sleep(0.2)
        rows = await deployments.history(client, app=app, environment="test")
    assert rows[0].image == f"127.0.0.1:5000/app@{NEW_DIGEST}"
    summaries = [
        e.user_metadata.summary.data.decode()
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes") and e.HasField("user_metadata")
    ]
    assert any("Build and push 127.0.0.1:5000/app" in s for s in summaries), summaries
    assert any("Wait for rollout of" in s for s in summaries), summaries
    assert any("Verify 2 pods poll" in s for s in summaries), summaries


async def test_existing_image_is_deployed_without_building(client: Client) -> None:
    cluster = Cluster()
    image = "127.0.0.1:5000/app@sha256:" + "3" * 64
    result, _ = await run_deployment(client, cluster, request_for(app_name(), image=image))
    assert result.outcome == "succeeded" and result.image == image
    assert cluster.builds == 0
    assert "build" not in result.steps


async def test_a_crashing_rollout_rolls_back_to_the_previous_revision(client: Client) -> None:
    cluster = Cluster(fail_rollout_for=NEW_DIGEST.split(":")[1][:8])
    result, _ = await run_deployment(client, cluster, request_for(app_name()))
    assert result.outcome == "rolled_back", result
    assert "CrashLoopBackOff" in result.reason and result.reason.startswith("rollout failed")
    assert result.restored_image == PREVIOUS.image
    assert cluster.applied[-1] == PREVIOUS.manifests.objects
    assert result.steps[-4:] == ["rollback: apply", "rollback: rollout", "rollback: verify", "rollback: record"]


async def test_without_auto_rollback_a_failed_rollout_just_fails(client: Client) -> None:
    cluster = Cluster(fail_rollout_for=NEW_DIGEST.split(":")[1][:8])
    result, _ = await run_deployment(client, cluster, request_for(app_name(), auto_rollback=False))
    assert result.outcome == "failed"
    assert len(cluster.applied) == 1 and not cluster.recorded


async def test_a_first_deployment_that_fails_has_nothing_to_roll_back_to(client: Client) -> None:
    cluster = Cluster(previous=None, fail_rollout_for=NEW_DIGEST.split(":")[1][:8])
    result, _ = await run_deployment(client, cluster, request_for(app_name()))
    assert result.outcome == "failed"
    assert "no previous verified revision to roll back to; left in the cluster, unverified: Deployment app" in result.reason


@pytest.mark.parametrize("step", ["build", "apply", "rollout", "verify"])
async def test_the_rollback_signal_at_any_step_restores_the_previous_revision(client: Client, step: str) -> None:
    cluster = Cluster(hold=step)

    async def signal_when_held(handle: Any) -> None:
        await asyncio.wait_for(cluster.held.wait(), 20)
        status = await handle.query(DeploymentWorkflow.status)
        assert status.step == step
        await handle.signal(DeploymentWorkflow.rollback, RollbackRequest(reason=f"stop at {step}", requested_by="test"))

    result, _ = await run_deployment(client, cluster, request_for(app_name()), during=signal_when_held)
    assert result.outcome == "rolled_back", result
    assert result.reason == f"rollback requested: stop at {step}"
    assert result.restored_image == PREVIOUS.image
    assert cluster.applied[-1] == PREVIOUS.manifests.objects
    assert [r.build_id for r in cluster.recorded] == [PREVIOUS.build_id]


async def test_a_second_deployment_of_the_same_app_is_refused_while_one_runs(client: Client) -> None:
    cluster = Cluster(hold="rollout")
    request = request_for(app_name())

    async def deploy_again(handle: Any) -> None:
        await asyncio.wait_for(cluster.held.wait(), 20)
        with pytest.raises(deployments.DeploymentAlreadyRunning) as refused:
            await deployments.start(client, request, task_queue="elsewhere")
        assert "is already running" in str(refused.value) and handle.id in str(refused.value)
        await handle.signal(DeploymentWorkflow.rollback, RollbackRequest(reason="done"))

    result, _ = await run_deployment(client, cluster, request, during=deploy_again)
    assert result.outcome == "rolled_back"


async def test_recorded_histories_still_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "tests/histories/ holds recorded DeploymentWorkflow (and VersionKeeperWorkflow) histories"
    assert any(p.name.startswith("versioned-keeper") for p in files) and any(p.name.startswith("versioned-v2") for p in files)
    replayer = Replayer(workflows=[DeploymentWorkflow, VersionKeeperWorkflow])
    for path in files:
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        await replayer.replay_workflow(history)


def test_the_clients_contract_names_the_workflow_its_signal_and_its_query() -> None:
    """The CLI reaches the workflow by pipeline/contract.py's names only; a rename here would strand it."""
    definition = workflow._Definition.must_from_class(DeploymentWorkflow)
    assert definition.name == contract.WORKFLOW_TYPE
    assert contract.ROLLBACK_SIGNAL in definition.signals
    assert contract.STATUS_QUERY in definition.queries
    assert {contract.PROMOTE_UPDATE, contract.PAUSE_UPDATE, contract.RESUME_UPDATE, contract.ROLLBACK_UPDATE} <= set(
        definition.updates
    )
    assert RollbackRequest is contract.RollbackRequest


# ----- every way a person stops a deployment (issue 12) -----

OLDER = Revision(
    image="127.0.0.1:5000/app@sha256:" + "0" * 64,
    build_id="sha256:" + "0" * 64,
    manifests=Manifests(objects=[{"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"v": 0}}]),
    deployed_at="2026-11-30T10:00:00Z",
)
# What people send as the rollback signal's input: what `temporal workflow signal` and the
# Web UI send with the input box left empty, a reason, and input the workflow cannot read.
SIGNAL_INPUTS: dict[str, tuple[tuple[Any, ...], str]] = {
    "no-input": ((), "rollback requested"),
    "reason": (({"reason": "bad release", "requested_by": "ops"},), "rollback requested: bad release"),
    "bare-string": (("bad release",), "rollback requested: bad release"),
    "malformed": (([1, 2],), "rollback requested: (the rollback's input could not be read: expected"),
    "not-json": (
        (RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json")),),
        "rollback requested: (the rollback's input could not be read: ",
    ),
}


@pytest.mark.parametrize("step", ["build", "rollout", "verify"])
@pytest.mark.parametrize("sent", list(SIGNAL_INPUTS))
async def test_the_rollback_signal_takes_any_input_at_any_step(client: Client, step: str, sent: str) -> None:
    args, reason = SIGNAL_INPUTS[sent]
    cluster = Cluster(hold=step)

    async def signal_when_held(handle: Any) -> None:
        await asyncio.wait_for(cluster.held.wait(), 20)
        await handle.signal(contract.ROLLBACK_SIGNAL, *args)

    result, history = await run_deployment(client, cluster, request_for(app_name()), during=signal_when_held)
    assert not failed_workflow_tasks(history), failed_workflow_tasks(history)
    assert result.outcome == "rolled_back", result
    assert result.reason.startswith(reason), result.reason
    assert result.restored_image == PREVIOUS.image and cluster.applied[-1] == PREVIOUS.manifests.objects
    assert result.steps[-4:] == ["rollback: apply", "rollback: rollout", "rollback: verify", "rollback: record"]
    _maybe_record_as(f"signal-{sent}-{step}", history)


async def test_the_rollback_update_answers_with_what_it_restores(client: Client) -> None:
    cluster = Cluster(hold="rollout")
    answers: list[RollbackAnswer] = []

    async def update_when_held(handle: Any) -> None:
        await asyncio.wait_for(cluster.held.wait(), 20)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(contract.ROLLBACK_UPDATE, [1, 2])
        assert "input could not be read" in str(refused.value.cause), refused.value.cause
        answers.append(
            await handle.execute_update(
                contract.ROLLBACK_UPDATE, RollbackRequest(reason="by update", requested_by="ops"), result_type=RollbackAnswer
            )
        )
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.execute_update(contract.ROLLBACK_UPDATE)
        assert "already rolling back" in str(again.value.cause), again.value.cause

    result, history = await run_deployment(client, cluster, request_for(app_name()), during=update_when_held)
    assert answers == [RollbackAnswer(restoring=PREVIOUS.image, interrupted_step="rollout")]
    assert result.outcome == "rolled_back" and result.reason == "rollback requested: by update", result
    assert not failed_workflow_tasks(history)


async def test_the_rollback_update_is_refused_when_there_is_nothing_to_roll_back_to(client: Client) -> None:
    cluster = Cluster(previous=None, hold="rollout")

    async def update_when_held(handle: Any) -> None:
        await asyncio.wait_for(cluster.held.wait(), 20)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(contract.ROLLBACK_UPDATE, RollbackRequest(reason="x"))
        assert "nothing to roll back to" in str(refused.value.cause), refused.value.cause
        cluster.release.set()  # the rollout goes on and the first deployment succeeds

    result, _ = await run_deployment(client, cluster, request_for(app_name()), during=update_when_held)
    assert result.outcome == "succeeded", result


async def cancel_deployment(
    client: Client, cluster: Cluster, request: DeployRequest, *, step: str
) -> tuple[WorkflowExecutionDescription, DeploymentStatus, WorkflowHistory]:
    """Start, request cancellation while `step` is held, and wait for the end: it must be Canceled."""
    async with pipeline_worker(client, cluster) as task_queue:
        handle = await deployments.start(client, request, task_queue=task_queue)
        await asyncio.wait_for(cluster.held.wait(), 20)
        await handle.cancel()
        cluster.release.set()  # a step that is not interruptible (read, record) runs to its end
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        assert isinstance(ended.value.cause, CancelledError), ended.value.cause
        description = await handle.describe()
        status = await handle.query(DeploymentWorkflow.status)
        history = await handle.fetch_history()
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert not failed_workflow_tasks(history), failed_workflow_tasks(history)
    await Replayer(workflows=[DeploymentWorkflow]).replay_workflow(history)
    return description, status, history


@pytest.mark.parametrize("step", ["read", "build", "apply", "rollout", "verify", "record"])
async def test_a_cancellation_restores_and_verifies_the_previous_revision_before_it_ends(client: Client, step: str) -> None:
    cluster = Cluster(hold=step)
    description, status, history = await cancel_deployment(client, cluster, request_for(app_name()), step=step)
    assert cluster.applied[-1] == PREVIOUS.manifests.objects, "the previous revision was not re-applied"
    assert cluster.recorded[-1] == PREVIOUS, "the previous revision is not the recorded one"
    assert status.steps[-4:] == ["rollback: apply", "rollback: rollout", "rollback: verify", "rollback: record"]
    memo = (await description.memo())[contract.OUTCOME_MEMO]
    assert memo["outcome"] == "canceled" and memo["verified"] is True, memo
    assert memo["restored_image"] == PREVIOUS.image
    assert status.step == "canceled" and status.detail == f"canceled: restored {PREVIOUS.image}, verified polling"
    assert description.typed_search_attributes.get(search_attributes.DEPLOYMENT_OUTCOME) == "canceled"
    _maybe_record_as(f"cancel-{step}", history)


@pytest.mark.parametrize(("step", "left"), [("build", "nothing was applied"), ("rollout", "left in the cluster, unverified")])
async def test_a_canceled_first_deployment_says_exactly_what_it_left(client: Client, step: str, left: str) -> None:
    cluster = Cluster(previous=None, hold=step)
    description, status, _ = await cancel_deployment(client, cluster, request_for(app_name()), step=step)
    memo = (await description.memo())[contract.OUTCOME_MEMO]
    assert memo["verified"] is False and left in memo["detail"], memo
    assert status.step == "canceled" and left in status.detail
    if step == "rollout":
        assert "Deployment app" in memo["detail"] and NEW_DIGEST in memo["detail"], memo


@pytest.mark.parametrize(("wanted", "expected"), [("previous", OLDER), (OLDER.image, OLDER), (PREVIOUS.image, PREVIOUS)])
async def test_a_restore_applies_verifies_and_records_a_revision_from_the_history(
    client: Client, wanted: str, expected: Revision
) -> None:
    cluster = Cluster(older=[OLDER])
    result, history = await run_deployment(client, cluster, request_for(app_name(), restore=wanted))
    assert result.outcome == "rolled_back", result
    assert result.restored_image == result.image == expected.image
    assert result.steps == ["read previous revision", "apply", "rollout", "verify", "record"], result.steps
    assert cluster.builds == 0 and cluster.applied == [expected.manifests.objects]
    assert cluster.recorded == [
        replace(expected, deployed_at=cluster.recorded[0].deployed_at, workflow_id=cluster.recorded[0].workflow_id)
    ]
    assert result.reason.startswith("rollback to the verified revision of"), result.reason
    _maybe_record_as("restore-" + ("previous" if wanted == "previous" else "image"), history)


async def test_a_restore_of_an_unknown_revision_changes_nothing(client: Client) -> None:
    cluster = Cluster(older=[OLDER])
    result, _ = await run_deployment(client, cluster, request_for(app_name(), restore="127.0.0.1:5000/app@sha256:" + "9" * 64))
    assert result.outcome == "failed" and result.reason.startswith("nothing to roll back to"), result
    assert OLDER.image in result.reason and not cluster.applied and not cluster.recorded


async def test_a_restore_that_fails_verification_goes_back_to_the_current_revision(client: Client) -> None:
    cluster = Cluster(older=[OLDER], fail_rollout_for="'v': 0")
    result, _ = await run_deployment(client, cluster, request_for(app_name(), restore="previous"))
    assert result.outcome == "rolled_back" and result.restored_image == PREVIOUS.image, result
    assert result.reason.startswith(f"rollback to {OLDER.image} failed at rollout failed"), result.reason
    assert cluster.applied == [OLDER.manifests.objects, PREVIOUS.manifests.objects]


def _maybe_record_as(name: str, history: WorkflowHistory) -> None:
    label = os.environ.get("RECORD_HISTORIES", "")
    if label:
        (HISTORIES / f"{label}-{name}.json").write_text(history.to_json())


# ----- multi-platform builds (target aks): one ACR build per platform at once, then the image index -----

INDEX_DIGEST = "sha256:" + "9" * 64
PLATFORM_DIGESTS = {"linux/amd64": "sha256:" + "a" * 64, "linux/arm64": "sha256:" + "b" * 64}


@dataclass
class MultiPlatformCluster(Cluster):
    """Adds the per-platform build and the index push; both platform builds must be running at once to finish."""

    platform_builds: list[str] = field(default_factory=list)
    both_started: asyncio.Event = field(default_factory=asyncio.Event)
    overlapped: bool = False
    indexes: list[PushIndexInput] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        cluster = self

        @activity.defn(name="build_platform_image")
        async def build_platform_image(r: BuildPlatformInput) -> BuiltImage:
            cluster.platform_builds.append(r.platform)
            if len(cluster.platform_builds) == len(r.build.build.platforms):
                cluster.both_started.set()
            try:  # sequential builds would never see the other one start
                await asyncio.wait_for(cluster.both_started.wait(), timeout=5)
                cluster.overlapped = True
            except TimeoutError:
                pass
            digest = PLATFORM_DIGESTS[r.platform]
            tag = f"t1-{r.platform.replace('/', '-')}"
            return BuiltImage(r.build.build.repository, tag, digest, platforms=(PlatformImage(r.platform, digest, tag),))

        @activity.defn(name="push_image_index")
        async def push_image_index(r: PushIndexInput) -> BuiltImage:
            cluster.indexes.append(r)
            return BuiltImage(r.build.build.repository, "t1", INDEX_DIGEST, platforms=r.images)

        return [*super().activities(), build_platform_image, push_image_index]


def aks_request(platforms: tuple[str, ...]) -> DeployRequest:
    request = replace(request_for(app_name()), environment="aks")
    assert request.app.build is not None
    return replace(request, app=replace(request.app, build=replace(request.app.build, platforms=platforms)))


def scheduled(history: WorkflowHistory) -> list[tuple[int, str]]:
    """(event id, activity type) of every activity scheduled, in order."""
    return [
        (e.event_id, e.activity_task_scheduled_event_attributes.activity_type.name)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_two_platforms_on_aks_build_at_once_then_push_one_index(client: Client) -> None:
    cluster = MultiPlatformCluster()
    result, history = await run_deployment(client, cluster, aks_request(("linux/amd64", "linux/arm64")))
    assert result.outcome == "succeeded", result
    assert result.image == f"127.0.0.1:5000/app@{INDEX_DIGEST}"
    assert cluster.builds == 0 and sorted(cluster.platform_builds) == ["linux/amd64", "linux/arm64"]
    assert cluster.overlapped, "the two platform builds did not run at the same time"
    (index,) = cluster.indexes
    assert [(i.platform, i.digest) for i in index.images] == list(PLATFORM_DIGESTS.items())
    order = scheduled(history)
    kinds = [name for _, name in order]
    assert kinds[1:4] == ["build_platform_image", "build_platform_image", "push_image_index"], kinds
    completed = {
        e.activity_task_completed_event_attributes.scheduled_event_id: e.event_id
        for e in history.events
        if e.HasField("activity_task_completed_event_attributes")
    }
    (first, _), (second, _), (push, _) = order[1:4]
    assert second < completed[first], "the second platform build was scheduled only after the first ended"
    assert push > max(completed[first], completed[second])
    markers = [e.SerializeToString() for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert any(b"multi-platform-builds" in m for m in markers), "no multi-platform-builds patch marker"
    assert [p.platform for p in result.platforms] == ["linux/amd64", "linux/arm64"]
    assert [p.digest for p in cluster.recorded[0].platforms] == list(PLATFORM_DIGESTS.values())
    summaries = [
        e.user_metadata.summary.data.decode()
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes") and e.HasField("user_metadata")
    ]
    assert any("for linux/arm64" in s for s in summaries), summaries
    assert any("image index" in s and "linux/amd64 aaaaaaaaaaaa" in s for s in summaries), summaries


async def test_one_platform_on_aks_builds_in_the_single_activity_as_before(client: Client) -> None:
    cluster = MultiPlatformCluster()
    result, history = await run_deployment(client, cluster, aks_request(("linux/arm64",)))
    assert result.outcome == "succeeded", result
    assert cluster.builds == 1 and cluster.platform_builds == [] and cluster.indexes == []
    assert [name for _, name in scheduled(history)][:2] == ["read_revision", "build_image"]
    assert not any(
        e.HasField("marker_recorded_event_attributes") and b"multi-platform" in e.SerializeToString() for e in history.events
    )
    assert result.platforms == []
