"""The replay gate end to end, on a worker image not built from this repository.

tests/fixtures/replay_worker is an SDK-only worker (envconfig, no import from the pipeline) whose
ApprovalWorkflow prepares, sleeps 100 ms, then waits for `approve`. v1 is deployed and an
ApprovalWorkflow is left open on it. Each next version changes the workflow code and is deployed
with a `replay` gate: the pipeline replays the open workflow's history in a Job of the candidate
image (the replay runner is delivered through a ConfigMap) before anything is applied.

    non-deterministic (refused: exit 1, the Deployment untouched, the reason names the workflow id):
        an activity added before an existing one, the timer removed, the activity type changed,
        the steps reordered
    deterministic (deployed): the same added activity behind workflow.patched, and a change outside
        the workflow
    skipped: `--skip-gate replay --reason ...` deploys the non-deterministic build and records who skipped
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from pipeline import kube
from tests.e2e.support import E2eApp, Run, add_user_app
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "replay_worker"
TASK_QUEUE = "approvals"
V1_STEPS = """        await workflow.execute_activity(prepare, order, start_to_close_timeout=timedelta(seconds=10))
        await workflow.sleep(timedelta(milliseconds=100))
"""
CHANGES = {
    "activity-added": (
        "        await workflow.execute_activity(audit, order, start_to_close_timeout=timedelta(seconds=10))\n" + V1_STEPS
    ),
    "timer-removed": "        await workflow.execute_activity(prepare, order, start_to_close_timeout=timedelta(seconds=10))\n",
    "activity-type-changed": V1_STEPS.replace("execute_activity(prepare,", "execute_activity(audit,"),
    "steps-reordered": (
        "        await workflow.sleep(timedelta(milliseconds=100))\n"
        "        await workflow.execute_activity(prepare, order, start_to_close_timeout=timedelta(seconds=10))\n"
    ),
}
PATCHED = (
    '        if workflow.patched("audit-first"):\n'
    "            await workflow.execute_activity(audit, order, start_to_close_timeout=timedelta(seconds=10))\n" + V1_STEPS
)


@dataclass
class ReplayApp:
    e2e: E2eApp
    name: str
    source: Path
    config: Path
    open_workflow: WorkflowHandle[object, object] | None = None

    def write(self, steps: str, *, note: str = "") -> None:
        text = (FIXTURE / "worker.py").read_text()
        assert V1_STEPS in text
        text = text.replace(V1_STEPS, steps)
        if note:  # a change outside the workflow: a new image, the same workflow code
            text += f"\n# {note}\n"
        (self.source / "worker.py").write_text(text)

    async def deploy(self, *extra: str) -> Run:
        return await self.e2e.cli("deploy", "--app", self.name, *extra, config=self.config, timeout=300)

    def deployment_image(self) -> str:
        with self.e2e.kube_client() as kc:
            found = kube.get_deployment(kc, namespace=self.e2e.namespace, name=self.name)
        assert found is not None
        return str(found["spec"]["template"]["spec"]["containers"][0]["image"])

    def leftovers(self) -> list[str]:
        with self.e2e.kube_client() as kc:
            jobs = kube.list_objects(kc, api_version="batch/v1", kind="Job", namespace=self.e2e.namespace, selector={})
            maps = kube.list_objects(kc, api_version="v1", kind="ConfigMap", namespace=self.e2e.namespace, selector={})
        prefix = f"{self.name}-replay-"
        return [o["metadata"]["name"] for o in jobs + maps if o["metadata"]["name"].startswith(prefix)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replay_app(e2e_app: E2eApp) -> AsyncIterator[ReplayApp]:
    gate = f'\n[[apps.{e2e_app.name}-rp.gates]]\nname = "replay"\nkind = "replay"\ntimeout_seconds = 90\n'
    name, source, config = await add_user_app(
        e2e_app, FIXTURE, suffix="rp", task_queue=TASK_QUEUE, replicas=1, extra='replay_modules = ["worker"]\n' + gate
    )
    yield ReplayApp(e2e=e2e_app, name=name, source=source, config=config)


async def test_v1_deploys_and_leaves_an_open_workflow(replay_app: ReplayApp, stack_client: Client) -> None:
    run = await replay_app.deploy()
    assert run.code == 0, run.output
    assert "gate replay" not in run.output or "nothing to replay" in run.output
    handle = await stack_client.start_workflow(
        "ApprovalWorkflow", "order-1", id=f"approval-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE
    )

    async def waiting() -> None:
        history = await handle.fetch_history()
        assert any(e.HasField("timer_fired_event_attributes") for e in history.events), "the timer has not fired yet"

    from tests.helpers import eventually

    await eventually(waiting, timeout=60, what="the approval workflow waiting for its signal")
    replay_app.open_workflow = handle


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_non_deterministic_change_is_refused_before_anything_is_applied(replay_app: ReplayApp, change: str) -> None:
    assert replay_app.open_workflow is not None, "needs v1's open workflow"
    before = replay_app.deployment_image()
    replay_app.write(CHANGES[change])
    run = await replay_app.deploy()
    assert run.code == 1, run.output
    assert "gate replay refused" in run.output and replay_app.open_workflow.id in run.output, run.output
    assert "ondeterminism" in run.output or "nondeterministic" in run.output.lower(), run.output
    assert replay_app.deployment_image() == before  # nothing applied
    assert replay_app.leftovers() == []  # the Job and its ConfigMap are gone


async def test_the_same_change_behind_workflow_patched_passes(replay_app: ReplayApp) -> None:
    replay_app.write(PATCHED)
    run = await replay_app.deploy()
    assert run.code == 0, run.output
    assert replay_app.leftovers() == []


async def test_a_skipped_gate_is_recorded_with_who_and_why(replay_app: ReplayApp, stack_client: Client) -> None:
    refused = await replay_app.deploy("--skip-gate", "replay")
    assert refused.code == 2 and "--reason" in refused.output
    unknown = await replay_app.deploy("--skip-gate", "nope", "--reason", "x")
    assert unknown.code == 2 and "no such gate" in unknown.output
    replay_app.write(CHANGES["timer-removed"])
    run = await replay_app.deploy("--skip-gate", "replay", "--reason", "hotfix, workflows drained by hand")
    assert run.code == 0, run.output
    history = await stack_client.get_workflow_handle(
        replay_app.e2e.workflow_id.replace(replay_app.e2e.name, replay_app.name)
    ).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert b"hotfix, workflows drained by hand" in started.input.payloads[0].data
    assert replay_app.open_workflow is not None
    await replay_app.open_workflow.terminate("the test is over (its code changed under it, as the skip allowed)")
