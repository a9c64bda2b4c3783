"""Versioned rollouts end to end: one Deployment per build, traffic moved by Temporal's Worker Deployment routing.

The sample worker opts into Worker Versioning when its pods say so (TEMPORAL_USE_WORKER_VERSIONING),
so this module deploys it with `[apps.X.rollout].strategy = "versioned"`:

    v1  first version: its Deployment `<app>-<short build>`, made current over unversioned workers
    v2  ramped 25 % then 60 % (each step seen through DescribeWorkerDeployment) then current; a PINNED
        workflow started on v1 finishes on v1, an AUTO_UPGRADE one moves to v2, new workflows run on v2;
        v1 drains and the keeper scales it to drained_replicas
    v3  rolled back mid-ramp: the ramp goes to 0, v2 stays current, v3 is scaled to 0 by the keeper later
    v4  paused at its first step (held past its pause), resumed, promoted with --full
    then `pipeline rollback` with none running (instant: v2's pods still run) and `--to` v4 again
    v5  the pipeline worker is SIGKILLed mid-ramp: a new one resumes at the same step, no step twice
    v6  another identity takes the Worker Deployment's manager role mid-ramp: reported, nothing overwritten
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentManagerRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.e2e.support import EXIT_ROLLED_BACK, TEMPORAL_NAMESPACE, E2eApp, Run, start_pipeline_worker
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

MANAGER = "temporal-deploy-pipeline"
ROLLOUT: dict[str, Any] = {
    "strategy": "versioned",
    "steps": [],
    "step_pause_seconds": 2,
    "scaledown_delay_seconds": 20,
    "delete_delay_seconds": 3600,
    "drained_replicas": 0,
    "verification_timeout_seconds": 60,
    "retained_versions": 12,  # the module makes 9 versions; deleting beyond the cap is unit-tested (test_versioned_unit.py)
}


@dataclass
class Routing:
    current: str
    ramping: str
    percentage: float
    completed: bool
    manager: str
    statuses: dict[str, int]


@dataclass
class Versioned:
    app: E2eApp
    client: Client
    builds: dict[str, str] = field(default_factory=dict)  # version -> build id

    @property
    def deployment(self) -> str:
        return f"{self.app.namespace}/{self.app.name}"

    def config(self, version: str, *, command: tuple[str, ...] = (), **rollout: Any) -> Path:
        return self.app.config(version, replicas=1, rollout={**ROLLOUT, **rollout}, command=command)

    async def routing(self) -> Routing:
        request = DescribeWorkerDeploymentRequest(namespace=TEMPORAL_NAMESPACE, deployment_name=self.deployment)
        for _ in range(20):  # the server refuses bursts to one Worker Deployment (RESOURCE_EXHAUSTED): back off
            try:
                resp = await self.client.workflow_service.describe_worker_deployment(request)
                break
            except RPCError as err:
                if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                    raise
                await asyncio.sleep(0.5)
        info = resp.worker_deployment_info
        rc = info.routing_config
        return Routing(
            current=rc.current_deployment_version.build_id,
            ramping=rc.ramping_deployment_version.build_id,
            percentage=rc.ramping_version_percentage,
            completed=info.routing_config_update_state == 2,
            manager=info.manager_identity,
            statuses={s.deployment_version.build_id: int(s.status) for s in info.version_summaries},
        )

    async def deploy(self, version: str, **rollout: Any) -> asyncio.subprocess.Process:
        return await self.app.start("deploy", config=self.config(version, **rollout))

    async def finish(self, process: asyncio.subprocess.Process, *, timeout: float = 300) -> Run:
        return await self.app.finish(process, ("deploy",), started=time.monotonic(), timeout=timeout)

    def version_deployment(self, build: str) -> dict[str, Any] | None:
        short = build.split(":", 1)[1][:10]
        with self.app.kube_client() as kc:
            from pipeline import kube

            return kube.get_deployment(kc, namespace=self.app.namespace, name=f"{self.app.name}-{short}")

    async def watch_ramp(self, process: asyncio.subprocess.Process) -> list[tuple[str, float]]:
        """The (ramping build, percentage) pairs seen while `process` runs."""
        seen: list[tuple[str, float]] = []
        while process.returncode is None:
            with_ramp = await self.routing()
            if with_ramp.ramping and (not seen or seen[-1] != (with_ramp.ramping, with_ramp.percentage)):
                seen.append((with_ramp.ramping, with_ramp.percentage))
            await asyncio.sleep(0.5)
        return seen

    async def ramping(self, percentage: float) -> str:
        async def check() -> str:
            r = await self.routing()
            assert r.ramping and r.percentage == percentage and r.completed, r
            return r.ramping

        return await eventually(check, timeout=240, interval=0.5, what=f"a version ramping at {percentage}%")


def build_of(run: Run) -> str:
    """The build id the CLI printed (the image's digest)."""
    for word in run.stdout.split():
        if "@sha256:" in word:
            return "sha256:" + word.split("@sha256:", 1)[1][:64]
    raise AssertionError(f"no image digest in:\n{run.output}")


async def completed_by(client: Client, workflow_id: str) -> list[str]:
    """The identities of the workers that completed each workflow task."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.workflow_task_completed_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


def pods_of(app: E2eApp, build: str) -> set[str]:
    short = build.split(":", 1)[1][:10]
    return {p["metadata"]["name"] for p in app.raw_pods() if p["metadata"]["name"].startswith(f"{app.name}-{short}-")}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v(e2e_app: E2eApp, stack_client: Client) -> AsyncIterator[Versioned]:
    yield Versioned(app=e2e_app, client=stack_client)


async def test_v1_becomes_current_over_unversioned_workers(v: Versioned) -> None:
    run = await v.finish(await v.deploy("v1"))
    run.expect(0, diagnose=v.app.diagnose)
    build = v.builds["v1"] = build_of(run)
    routing = await v.routing()
    assert (routing.current, routing.ramping, routing.manager) == (build, "", MANAGER)
    assert v.version_deployment(build) is not None
    with v.app.kube_client() as kc:
        from pipeline import kube

        assert kube.get_deployment(kc, namespace=v.app.namespace, name=v.app.name) is None  # no unversioned Deployment
    version = await v.client.workflow_service.describe_worker_deployment_version(
        DescribeWorkerDeploymentVersionRequest(
            namespace=TEMPORAL_NAMESPACE, deployment_version=WorkerDeploymentVersion(deployment_name=v.deployment, build_id=build)
        )
    )
    queues = {(q.name, q.type) for q in version.worker_deployment_version_info.task_queue_infos}
    assert {(v.app.task_queue, 1), (v.app.task_queue, 2)} <= queues


async def test_v2_ramps_step_by_step_pinned_stays_and_auto_upgrade_moves(v: Versioned) -> None:
    tag = uuid.uuid4().hex[:6]
    pinned = await v.client.start_workflow("PinnedWorkflow", id=f"pinned-{tag}", task_queue=v.app.task_queue)
    auto = await v.client.start_workflow("AutoUpgradeWorkflow", id=f"auto-{tag}", task_queue=v.app.task_queue)
    v1_pods = pods_of(v.app, v.builds["v1"])

    async def started() -> None:
        assert await completed_by(v.client, pinned.id) and await completed_by(v.client, auto.id)

    await eventually(started, timeout=30, what="both long-running workflows started on v1")
    process = await v.deploy("v2", steps=[25, 60], step_pause_seconds=3)
    seen = await v.watch_ramp(process)
    run = await v.finish(process)
    run.expect(0, diagnose=v.app.diagnose)
    build = v.builds["v2"] = build_of(run)
    assert [p for b, p in seen if b == build] == [25.0, 60.0], seen
    routing = await v.routing()
    assert (routing.current, routing.ramping) == (build, "")
    assert "Worker Deployment: http://" in run.stdout

    await pinned.signal("finish")
    await auto.signal("finish")
    pinned_report = await pinned.result()
    auto_report = await auto.result()
    assert (pinned_report["started_on"], pinned_report["finished_on"]) == (v.builds["v1"], v.builds["v1"])
    assert auto_report["finished_on"] == build
    pinned_ids = await completed_by(v.client, pinned.id)
    assert all(any(i.startswith(p) or p in i for p in v1_pods) for i in pinned_ids), (pinned_ids, v1_pods)
    order = await v.client.start_workflow(
        "OrderWorkflow", {"order_id": f"o-{tag}"}, id=f"order-{tag}", task_queue=v.app.task_queue
    )
    await asyncio.wait_for(order.result(), 60)
    v2_pods = pods_of(v.app, build)
    assert all(any(p in i for p in v2_pods) for i in await completed_by(v.client, order.id))


async def test_v1_drains_and_the_keeper_scales_it_down(v: Versioned) -> None:
    async def scaled() -> None:
        deployment = v.version_deployment(v.builds["v1"])
        assert deployment is not None and deployment["spec"]["replicas"] == 0, deployment and deployment["spec"]["replicas"]

    await eventually(scaled, timeout=90, interval=1, what="v1 drained and scaled to 0 by the keeper")
    routing = await v.routing()
    assert routing.statuses[v.builds["v1"]] == 5  # DRAINED
    keeper = v.client.get_workflow_handle(f"versions-local-{v.app.name}")
    history = await keeper.fetch_history()
    summaries = " ".join(e.user_metadata.summary.data.decode() for e in history.events if e.HasField("user_metadata"))
    assert "Scale version " + v.builds["v1"].split(":")[1][:12] + " to 0" in summaries, summaries


async def test_v3_rolled_back_mid_ramp_keeps_v2_current(v: Versioned) -> None:
    process = await v.deploy("v3", steps=[50], step_pause_seconds=120)
    build = await v.ramping(50)
    rollback = await v.app.cli("rollback", v.app.name, "--reason", "canary looks wrong", config=v.config("v3"))
    rollback.expect(0)
    run = await v.finish(process)
    run.expect(EXIT_ROLLED_BACK)
    routing = await v.routing()
    assert (routing.current, routing.ramping, routing.percentage) == (v.builds["v2"], "", 0)
    assert build != v.builds["v2"]
    v.builds["v3"] = build


async def test_v4_pause_resume_promote(v: Versioned) -> None:
    process = await v.deploy("v4", steps=[20, 40], step_pause_seconds=2)
    build = await v.ramping(20)
    (await v.app.cli("pause", v.app.name, config=v.config("v4"))).expect(0)
    refused = await v.app.cli("pause", v.app.name, config=v.config("v4"))
    assert refused.code != 0 and "already paused" in refused.output
    await asyncio.sleep(4)  # twice the step's pause: a paused ramp stays where it is
    routing = await v.routing()
    assert (routing.ramping, routing.percentage) == (build, 20)
    (await v.app.cli("resume", v.app.name, config=v.config("v4"))).expect(0)
    await v.ramping(40)
    (await v.app.cli("promote", v.app.name, "--full", config=v.config("v4"))).expect(0)
    run = await v.finish(process)
    run.expect(0)
    assert (await v.routing()).current == build
    v.builds["v4"] = build
    versions = await v.app.cli("versions", v.app.name, config=v.config("v4"))
    versions.expect(0)
    assert build.split(":")[1][:12] in versions.stdout and "current" in versions.stdout


async def test_rollback_after_completion_and_to_any_retained_version(v: Versioned) -> None:
    started = time.monotonic()
    back = await v.app.cli("rollback", v.app.name, "--reason", "instant", config=v.config("v4"))
    back.expect(0)
    assert (await v.routing()).current == v.builds["v2"]
    print(f"rollback to v2 (pods running): {time.monotonic() - started:.2f}s from the command to its exit")
    forward = await v.app.cli("rollback", v.app.name, "--to", v.builds["v4"], config=v.config("v4"))
    forward.expect(0)
    assert (await v.routing()).current == v.builds["v4"]


async def test_v5_pipeline_worker_killed_mid_ramp_resumes_at_the_same_step(v: Versioned) -> None:
    process = await v.deploy("v5", steps=[30, 70], step_pause_seconds=6)
    await v.ramping(30)
    assert v.app.worker is not None
    os.kill(v.app.worker.pid, signal.SIGKILL)
    v.app.worker.wait()
    v.app.worker = await start_pipeline_worker(v.app, v.app.config(), v.client)
    run = await v.finish(process)
    run.expect(0)
    handle = v.client.get_workflow_handle(v.app.workflow_id)
    history = await handle.fetch_history()
    summaries = [
        json.loads(e.user_metadata.summary.data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and e.HasField("user_metadata")
    ]
    ramps = [s for s in summaries if s.startswith(("Ramp version", "Make version"))]
    assert len(ramps) == 3 and "30%" in ramps[0] and "70%" in ramps[1], ramps
    v.builds["v5"] = build_of(run)


async def test_v6_routing_change_by_another_identity_is_reported_not_overwritten(v: Versioned) -> None:
    process = await v.deploy("v6", steps=[30], step_pause_seconds=300)
    build = await v.ramping(30)
    other = await Client.connect(
        v.client.service_client.config.target_host, namespace=TEMPORAL_NAMESPACE, identity="someone-else"
    )
    described = await other.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=TEMPORAL_NAMESPACE, deployment_name=v.deployment)
    )
    claimed = await other.workflow_service.set_worker_deployment_manager(
        SetWorkerDeploymentManagerRequest(
            namespace=TEMPORAL_NAMESPACE,
            deployment_name=v.deployment,
            self=True,
            identity="someone-else",
            conflict_token=described.conflict_token,
        )
    )
    await other.workflow_service.set_worker_deployment_ramping_version(
        SetWorkerDeploymentRampingVersionRequest(
            namespace=TEMPORAL_NAMESPACE,
            deployment_name=v.deployment,
            build_id=build,
            percentage=80,
            identity="someone-else",
            conflict_token=claimed.conflict_token,
        )
    )
    (await v.app.cli("promote", v.app.name, config=v.config("v6"))).expect(0)
    run = await v.finish(process)
    assert run.code == 1, run.output
    assert "someone-else" in run.output and "RoutingChangedElsewhere" in run.output, run.output
    routing = await v.routing()
    assert (routing.ramping, routing.percentage, routing.manager) == (build, 80, "someone-else")  # untouched
    # give the deployment back, as the message says
    described = await other.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=TEMPORAL_NAMESPACE, deployment_name=v.deployment)
    )
    await other.workflow_service.set_worker_deployment_manager(
        SetWorkerDeploymentManagerRequest(
            namespace=TEMPORAL_NAMESPACE,
            deployment_name=v.deployment,
            manager_identity=MANAGER,
            identity="someone-else",
            conflict_token=described.conflict_token,
        )
    )


async def test_v7_a_gate_workflow_failing_at_the_second_step_rolls_back(v: Versioned) -> None:
    config = v.config("v7", steps=[20, 50], step_pause_seconds=1)
    gate = (
        f'\n[[apps.{v.app.name}.gates]]\nname = "canary"\nkind = "workflow"\nworkflow_type = "GateWorkflow"\n'
        "input = '{\"fail_from_percent\": 50}'\neach_step = true\ntimeout_seconds = 60\n"
    )
    if gate not in config.read_text():
        with config.open("a") as out:
            out.write(gate)
    current = (await v.routing()).current
    run = await v.app.cli("deploy", config=config, timeout=300)
    assert run.code == EXIT_ROLLED_BACK, run.output
    assert "gate canary refused" in run.output and "canary check failed at 50%" in run.output, run.output
    routing = await v.routing()
    assert (routing.current, routing.ramping) == (current, "")
    history = await v.client.get_workflow_handle(v.app.workflow_id).fetch_history()
    summaries = [
        json.loads(e.user_metadata.summary.data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and e.HasField("user_metadata")
    ]
    gates = [s for s in summaries if s.startswith("Gate canary")]
    assert len(gates) == 3 and gates[1].endswith("at 20%") and gates[2].endswith("at 50%"), gates


ANALYSIS_GATE = '\n[[apps.{app}.gates]]\nname = "failures"\nkind = "analysis"\nmin_samples = 4\nmax_failed = 0\n'


async def deploy_under_load(v: Versioned, config: Path) -> Run:
    """`pipeline deploy` while OrderWorkflows are started steadily (4 a second) until it ends."""
    tag = uuid.uuid4().hex[:6]
    process = await v.app.start("deploy", config=config)
    started = time.monotonic()
    n = 0
    while process.returncode is None:
        await v.client.start_workflow(
            "OrderWorkflow", {"order_id": f"{tag}-{n}"}, id=f"load-{tag}-{n}", task_queue=v.app.task_queue
        )
        n += 1
        await asyncio.sleep(0.25)
    return await v.app.finish(process, ("deploy",), started=started, timeout=300)


def with_gate(config: Path, gate: str) -> Path:
    if gate not in config.read_text():
        with config.open("a") as out:
            out.write(gate)
    return config


async def test_v8_an_analysis_gate_refuses_a_build_whose_activities_raise(v: Versioned) -> None:
    broken = ("sh", "-c", "SAMPLE_BROKEN_PAYMENTS=true exec python -m sample_worker")
    config = with_gate(v.config("v8", command=broken, steps=[50], step_pause_seconds=10), ANALYSIS_GATE.format(app=v.app.name))
    current = (await v.routing()).current
    run = await deploy_under_load(v, config)
    assert run.code == EXIT_ROLLED_BACK, run.output
    assert "gate failures refused" in run.output and "closed workflows failed" in run.output, run.output
    assert (await v.routing()).current == current


async def test_v9_the_same_analysis_gate_passes_a_healthy_build(v: Versioned) -> None:
    config = with_gate(v.config("v9", steps=[50], step_pause_seconds=10), ANALYSIS_GATE.format(app=v.app.name))
    run = await deploy_under_load(v, config)
    assert run.code == 0, run.output
    history = await v.client.get_workflow_handle(v.app.workflow_id).fetch_history()
    completed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    assert any(b"new version: 0 of" in e.activity_task_completed_event_attributes.result.payloads[0].data for e in completed)
