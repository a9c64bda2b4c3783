#!/usr/bin/env python3
"""The replay gate's numbers: `python benchmarks/replay_bench.py [--open N]` prints one JSON object.

A script, not a test: it exits 0 whatever the numbers are (1 only when it could not measure).
Against the local stack (`bootstrap/stack up`), isolated by name as the e2e tests are: its own
namespace, pipeline task queue and `pipeline worker` subprocess, and the SDK-only worker of
tests/fixtures/replay_worker (not built from this repository) as an app with a `replay` gate.

(a) gate time: N (default 100) ApprovalWorkflows are left open on v1 (each waiting for its
    signal), then a build whose workflow code is unchanged is deployed; the gate's time is its
    run_replay_gate activity, scheduled to completed (a Job of the candidate image replays all N
    histories), and the whole `pipeline deploy` wall time. Target: the gate at most 10 s.
(b) detection: the four breaking changes of tests/e2e/test_replay_gate.py are deployed one by
    one (each must be refused) and the same change behind workflow.patched (must pass): counts of
    detected and of false positives. Target: all detected, no false positive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bootstrap.process import stop_child  # noqa: E402
from pipeline import kube  # noqa: E402
from tests.e2e.support import E2eApp, add_user_app, start_pipeline_worker  # noqa: E402
from tests.e2e.test_replay_gate import CHANGES, FIXTURE, PATCHED, TASK_QUEUE, V1_STEPS  # noqa: E402

TARGETS = {"replay_gate_s_for_open": 10.0, "detected": len(CHANGES), "false_positives": 0}


def log(message: str) -> None:
    print(f"[replay_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write(source: Path, steps: str, note: str = "") -> None:
    text = (FIXTURE / "worker.py").read_text().replace(V1_STEPS, steps)
    (source / "worker.py").write_text(text + (f"\n# {note}\n" if note else ""))


async def gate_seconds(client: Client, workflow_id: str) -> float | None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, Any] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if e.activity_task_scheduled_event_attributes.activity_type.name == "run_replay_gate":
                scheduled[e.event_id] = e.event_time.ToDatetime()
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            start = scheduled.get(e.activity_task_completed_event_attributes.scheduled_event_id)
            if start is not None:
                return round((e.event_time.ToDatetime() - start).total_seconds(), 3)
    return None


async def measure(open_count: int) -> dict[str, Any]:
    client = await Client.connect("127.0.0.1:7233", namespace="default")
    name = f"rb-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    e2e = E2eApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log")
    e2e.worker = await start_pipeline_worker(e2e, e2e.config(), client)
    try:
        gate = f'\n[[apps.{name}-rp.gates]]\nname = "replay"\nkind = "replay"\ntimeout_seconds = 120\n'
        app, source, config = await add_user_app(
            e2e, FIXTURE, suffix="rp", task_queue=TASK_QUEUE, replicas=1, extra='replay_modules = ["worker"]\n' + gate
        )
        workflow_id = f"deploy-local-{app}"
        run = await e2e.cli("deploy", "--app", app, config=config, timeout=300)
        assert run.code == 0, run.output
        log(f"starting {open_count} open workflows")
        tag = uuid.uuid4().hex[:6]
        for i in range(open_count):
            await client.start_workflow("ApprovalWorkflow", f"o-{i}", id=f"rb-{tag}-{i}", task_queue=TASK_QUEUE)
        await asyncio.sleep(5)  # each runs its first steps and waits for its signal
        write(source, V1_STEPS, note="a change outside the workflow")
        started = time.monotonic()
        run = await e2e.cli("deploy", "--app", app, config=config, timeout=400)
        wall = round(time.monotonic() - started, 3)
        result: dict[str, Any] = {
            "open_workflows": open_count,
            "unchanged_build_exit": run.code,
            "replay_gate_s_for_open": await gate_seconds(client, workflow_id),
            "deploy_wall_s": wall,
        }
        detected, false_positives, cases = 0, 0, {}
        for case, steps in [*CHANGES.items(), ("patched", PATCHED)]:
            write(source, steps)
            run = await e2e.cli("deploy", "--app", app, config=config, timeout=400)
            refused = run.code == 1 and "gate replay refused" in run.output
            cases[case] = {"exit": run.code, "refused": refused, "gate_s": await gate_seconds(client, workflow_id)}
            if case == "patched":
                false_positives += int(refused)
            else:
                detected += int(refused)
            if case != "patched" and not refused:
                log(f"{case} was not refused:\n{run.output[-1500:]}")
        result.update(detected=detected, false_positives=false_positives, cases=cases)
        return result
    finally:
        stop_child(e2e.worker, grace=30)
        with e2e.kube_client() as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=e2e.namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--open", type=int, default=100, help="open workflows to replay (default 100)")
    args = parser.parse_args()
    try:
        result = asyncio.run(measure(args.open))
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        return 1
    met = {
        "replay_gate_s_for_open": (result.get("replay_gate_s_for_open") or 1e9) <= TARGETS["replay_gate_s_for_open"],
        "detected": result.get("detected") == TARGETS["detected"],
        "false_positives": result.get("false_positives") == 0,
    }
    print(
        json.dumps({"replay": result, "targets": TARGETS, "targets_met": met, "date": time.strftime("%Y-%m-%d %H:%M")}, indent=2)
    )
    from benchmarks.report import write_report

    write_report("replay_bench", {"replay": result, "targets": TARGETS, "targets_met": met})
    return 0


if __name__ == "__main__":
    sys.exit(main())
