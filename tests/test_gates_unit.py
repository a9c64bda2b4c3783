"""Gates, the parts that need no stack: their config, the replay Job's objects, the verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from pipeline.config import ConfigError, load_config
from pipeline.gates import RUNNER, collect_replay_targets, judge_analysis, parse_verdict, replay_job_name, replay_objects
from pipeline.inputs import app_spec
from pipeline.models import GateSpec, ReplayTarget, ReplayTargetsInput, TemporalTarget
from tests.helpers import eventually
from tests.helpers.config import SHIPPED_TEXT
from tests.helpers.render import replay_job_input

pytestmark = pytest.mark.unit


def load(tmp_path: Path, extra: str) -> object:
    text = SHIPPED_TEXT.replace("[apps.pipeline-worker]", extra + "\n[apps.pipeline-worker]", 1)
    (tmp_path / "config.toml").write_text(text)
    (tmp_path / "Dockerfile").write_text("FROM scratch AS sample-worker\nFROM scratch AS pipeline-worker\n")
    return load_config(tmp_path / "config.toml", env={})


GATES = """
[[apps.sample-worker.gates]]
name = "replay"
kind = "replay"
closed_histories = 20

[[apps.sample-worker.gates]]
name = "canary"
kind = "workflow"
workflow_type = "GateWorkflow"
input = '{"fail_from_percent": 50}'
each_step = true

[[apps.sample-worker.gates]]
name = "failures"
kind = "analysis"
max_failure_rate_delta = 0.05
min_samples = 20
"""


def test_gates_load_with_their_kinds_keys(tmp_path: Path) -> None:
    config = load(tmp_path, 'replay_modules = ["sample_worker.workflows"]\n' + GATES)
    app = config.app("sample-worker")  # type: ignore[attr-defined]
    assert [(g.name, g.kind) for g in app.gates] == [("replay", "replay"), ("canary", "workflow"), ("failures", "analysis")]
    assert app.gates[0].closed_histories == 20 and app.replay_modules == ("sample_worker.workflows",)
    assert (app.gates[1].workflow_type, json.loads(app.gates[1].input), app.gates[1].each_step) == (
        "GateWorkflow",
        {"fail_from_percent": 50},
        True,
    )
    assert (app.gates[2].max_failure_rate_delta, app.gates[2].min_samples, app.gates[2].max_failed) == (0.05, 20, 0)
    spec = app_spec(config, app)  # type: ignore[arg-type]
    assert spec.gates[1] == GateSpec("canary", "workflow", 120, 0, "GateWorkflow", '{"fail_from_percent": 50}', True)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (GATES, "[apps.sample-worker].replay_modules: is required by a replay gate"),
        ('[[apps.sample-worker.gates]]\nname = "x"\nkind = "smoke"\n', '.kind: must be one of "replay", "workflow", "analysis"'),
        ('[[apps.sample-worker.gates]]\nname = "x"\nkind = "workflow"\n', ".workflow_type: missing; this key is required"),
        (
            '[[apps.sample-worker.gates]]\nname = "x"\nkind = "workflow"\nworkflow_type = "W"\ninput = "{nope"\n',
            ".input: must be JSON text",
        ),
        (
            '[[apps.sample-worker.gates]]\nname = "x"\nkind = "analysis"\nmax_failure_rate_delta = 2\n',
            "must be a number from 0 to 1",
        ),
        ('[[apps.sample-worker.gates]]\nname = "x"\nkind = "analysis"\neach_step = true\n', "each_step: unknown key"),
        (
            '[[apps.sample-worker.gates]]\nname = "x"\nkind = "analysis"\n[[apps.sample-worker.gates]]\nname = "x"\nkind = "analysis"\n',
            'must be unique among the app\'s gates, "x" is used twice',
        ),
        ('replay_modules = ["not a module"]\n', "replay_modules].0: must be a Python module name"),
    ],
)
def test_bad_gates_are_one_line_each(tmp_path: Path, extra: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, extra)
    assert any(said.replace("[apps.sample-worker].", "") in line for line in raised.value.problems), raised.value.problems


def test_the_replay_job_runs_the_delivered_runner_in_the_candidate_image_with_nothing_secret() -> None:
    request = replay_job_input()
    config_map, job = replay_objects(request)
    name = replay_job_name(request.app.name, request.build_id)
    assert config_map["metadata"]["name"] == job["metadata"]["name"] == name
    assert config_map["data"]["replay_runner.py"] == RUNNER.read_text()
    assert json.loads(config_map["data"]["workflows.json"]) == {"workflows": [{"workflow_id": "wf-1", "run_id": "run-1"}]}
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 90)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == request.image and container["command"] == ["python", "/pipeline-replay/replay_runner.py"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REPLAY_MODULES"]["value"] == "worker,app.flows"
    assert env["TEMPORAL_API_KEY"] == {
        "name": "TEMPORAL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "temporal", "key": "api-key"}},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_verdict_is_the_last_marked_line() -> None:
    assert parse_verdict('noise\nPIPELINE-REPLAY-VERDICT {"ok": true, "results": []}\n') == {"ok": True, "results": []}
    assert parse_verdict("PIPELINE-REPLAY-VERDICT {broken") is None
    assert parse_verdict("no verdict at all") is None


@pytest.mark.parametrize(
    ("new", "baseline", "ok", "said"),
    [
        ((5, 3), (100, 0), True, "inconclusive"),
        ((40, 2), (100, 0), False, "more than max_failed = 1"),
        ((40, 1), (100, 0), True, "1 of 40"),
        ((40, 1), (100, 0), True, ""),
    ],
)
def test_analysis_verdicts(new: tuple[int, int], baseline: tuple[int, int], ok: bool, said: str) -> None:
    gate = GateSpec("failures", "analysis", max_failed=1, max_failure_rate_delta=0.1, min_samples=20)
    verdict, summary = judge_analysis(gate, new, baseline)
    assert verdict is ok and said in summary, summary


def test_analysis_refuses_a_rate_above_the_baseline_by_more_than_the_delta() -> None:
    gate = GateSpec("failures", "analysis", max_failed=100, max_failure_rate_delta=0.1, min_samples=20)
    assert judge_analysis(gate, (40, 10), (100, 10))[0] is False  # 25 % vs 10 %
    assert judge_analysis(gate, (40, 6), (100, 10))[0] is True  # 15 % vs 10 %


@workflow.defn(name="GateProbeWorkflow")
class _Probe:
    def __init__(self) -> None:
        self.done = False

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)


async def test_replay_targets_are_every_open_workflow_and_the_last_closed_ones(client: Client, task_queue: str) -> None:
    async with Worker(client, task_queue=task_queue, workflows=[_Probe], workflow_runner=UnsandboxedWorkflowRunner()):
        handles = [await client.start_workflow(_Probe.run, id=f"{task_queue}-{i}", task_queue=task_queue) for i in range(5)]
        for handle in handles[:3]:
            await handle.signal(_Probe.finish)
            await handle.result()
    target = TemporalTarget(address=client.service_client.config.target_host, namespace=client.namespace)

    async def listed() -> list[ReplayTarget]:
        found = await collect_replay_targets(ReplayTargetsInput(target, task_queue, closed_histories=2, exclude_pinned=True))
        assert len(found) == 4, found
        return found

    found = await eventually(listed, timeout=20, what="visibility to list the workflows")
    assert {t.workflow_id for t in found[:2]} == {handles[3].id, handles[4].id}  # the open ones
    assert {t.workflow_id for t in found[2:]} <= {h.id for h in handles[:3]} and all(
        t.workflow_type == "GateProbeWorkflow" for t in found
    )
