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
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from pipeline import contract, deployments
from pipeline.models import (
    AppliedObject,
    ApplyInput,
    ApplyResult,
    AppSpec,
    BuildImageInput,
    BuildSpec,
    BuiltImage,
    ClusterRef,
    DeploymentResult,
    DeployRequest,
    Manifests,
    Poller,
    ReadRevisionInput,
    ReadRevisionResult,
    RecordRevisionInput,
    RenderInput,
    ResourceSpec,
    Revision,
    RolloutInput,
    RolloutResult,
    RolloutSpec,
    TemporalTarget,
    VerifyInput,
    VerifyResult,
)
from pipeline.workflows import DeploymentWorkflow, RollbackRequest

HISTORIES = Path(__file__).parent / "histories"
PREVIOUS = Revision(
    image="127.0.0.1:5000/app@sha256:" + "1" * 64,
    build_id="sha256:" + "1" * 64,
    manifests=Manifests(objects=[{"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"v": 1}}]),
)
NEW_DIGEST = "sha256:" + "2" * 64


def request_for(app: str, *, auto_rollback: bool = True, image: str = "") -> DeployRequest:
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
            build=BuildSpec(context="/src", dockerfile="Dockerfile", target="t", repository="127.0.0.1:5000/app"),
        ),
        environment="test",
        temporal=TemporalTarget(address="127.0.0.1:7233", namespace="default"),
        cluster=ClusterRef(kubeconfig="/nowhere"),
        image=image,
    )


@dataclass
class Cluster:
    """What the activity doubles did: a tiny model of the cluster and the registry."""

    previous: Revision | None = PREVIOUS
    builds: int = 0
    applied: list[list[dict[str, object]]] = field(default_factory=list)
    recorded: list[Revision] = field(default_factory=list)
    fail_rollout_for: str = ""  # build id whose rollout fails with CrashLoopBackOff
    hold: str = ""  # step that waits until cancelled (for the rollback signal)
    held: asyncio.Event = field(default_factory=asyncio.Event)
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
            while True:  # heartbeat until the workflow cancels us
                activity.heartbeat(step)
                await asyncio.sleep(0.1)

        @activity.defn(name="read_revision")
        async def read_revision(r: ReadRevisionInput) -> ReadRevisionResult:
            return ReadRevisionResult(revision=cluster.previous)

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
            cluster.recorded.append(r.revision)

        return [read_revision, build_image, render_manifests, apply_manifests, wait_for_rollout, verify_polling, record_revision]


async def run_deployment(
    client: Client, cluster: Cluster, request: DeployRequest, *, during: Callable[[Any], Any] | None = None
) -> tuple[DeploymentResult, WorkflowHistory]:
    task_queue = f"deploy-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[DeploymentWorkflow], activities=cluster.activities()):
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
    assert result.reason.endswith("no previous verified revision to roll back to")


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
    assert files, "tests/histories/ holds recorded DeploymentWorkflow histories"
    replayer = Replayer(workflows=[DeploymentWorkflow])
    for path in files:
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        await replayer.replay_workflow(history)


def test_the_clients_contract_names_the_workflow_its_signal_and_its_query() -> None:
    """The CLI reaches the workflow by pipeline/contract.py's names only; a rename here would strand it."""
    definition = workflow._Definition.must_from_class(DeploymentWorkflow)
    assert definition.name == contract.WORKFLOW_TYPE
    assert contract.ROLLBACK_SIGNAL in definition.signals
    assert contract.STATUS_QUERY in definition.queries
    assert RollbackRequest is contract.RollbackRequest
