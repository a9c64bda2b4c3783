#!/usr/bin/env python3
"""The versioned strategy's numbers: `python benchmarks/versioned_bench.py [--quick]` prints one JSON object.

A script, not a test (as pipeline_bench.py, which adds these numbers under "versioned"): it exits 0
whatever they are (1 only when it could not measure) and `targets_met` compares them.

Against the local stack, isolated by name: its own namespace, pipeline task queue and `pipeline
worker` subprocess, and one app `<bench>` (replicas 2, `strategy = "versioned"`, scale-down delay an
hour so older versions keep their pods). Builds A, B, C, D of the sample worker (the VERSION build
argument differs, so each is its own digest and version).

(a) polling to current, `steps = []`: for the deployments of A (over unversioned workers), B and C,
    from the verify_polling activity's completion (every new pod polls) to the completion of the
    routing change (the activity returns once routing_config_update_state is COMPLETED), from the
    history's own clock. Median.
(b) rollback to a version whose pods still run: RUNS times `pipeline rollback <bench> --to <B or C>`
    alternately; from the CLI process's start, and from the workflow's start, to the routing
    change's completion event. Median of each. Pod restarts: every container's restartCount, and
    whether any pod of B or C was replaced, before and after.
(c) ramp share under load: D is deployed with `steps = [20, 50]` and a 20 s pause per step while
    LOAD_PER_S OrderWorkflows a second are started; per step, the share of the workflows started
    while that step's routing was in force (from its completion to the next change) whose tasks
    ran on D, from visibility (TemporalWorkerDeploymentVersion). Target: within 10 points.
(d) pinned workflows moved: PINNED workflows started on the current version (the last rollback's
    target) before D's ramp are finished after D is current; moved = those whose last task did not
    run on the build their first task ran on. Target 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.workflowservice.v1 import CountWorkflowExecutionsRequest  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402

from benchmarks.pipeline_bench import (  # noqa: E402
    _DEPLOYED,
    TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE,
    Bench,
    log,
    median,
)
from bootstrap.process import stop_child  # noqa: E402
from pipeline import kube  # noqa: E402

TARGETS = {"rollback_to_serving_version_s_median": 1.0, "ramp_share_error_points_max": 10.0, "pinned_moved": 0}
LOAD_PER_S = 4
ROLLOUT = {
    "strategy": "versioned",
    "steps": [],
    "step_pause_seconds": 0,
    "scaledown_delay_seconds": 3600,
    "delete_delay_seconds": 7200,
    "verification_timeout_seconds": 90,
}


class VersionedBench(Bench):
    def versioned_config(self, version: str, **rollout: Any) -> Path:
        import tomllib

        from pipeline.config import to_toml

        path = self.config(f"{version}-base", version=version)
        data = tomllib.loads(path.read_text())
        app = data["apps"][self.name]
        app["rollout"] = {**ROLLOUT, **rollout}
        data["apps"] = {self.name: app}
        out = self.directory / f"config-{version}-{uuid.uuid4().hex[:6]}.toml"
        out.write_text(to_toml(data))
        return out

    @property
    def deployment(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def workflow_id(self) -> str:
        return f"deploy-local-{self.name}"


def events_named(history: WorkflowHistory, prefix: str) -> list[tuple[str, datetime]]:
    """(summary, completion time) of the activities whose summary starts with `prefix`."""
    scheduled: dict[int, str] = {}
    done: list[tuple[str, datetime]] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and e.HasField("user_metadata"):
            scheduled[e.event_id] = json.loads(e.user_metadata.summary.data)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            summary = scheduled.get(e.activity_task_completed_event_attributes.scheduled_event_id, "")
            if summary.startswith(prefix):
                done.append((summary, e.event_time.ToDatetime().replace(tzinfo=UTC)))
    return done


async def last_run(client: Client, bench: VersionedBench) -> WorkflowHistory:
    return await client.get_workflow_handle(bench.workflow_id).fetch_history()


async def deploy(bench: VersionedBench, version: str, **rollout: Any) -> str:
    code, out, _ = await bench.cli("deploy", config=bench.versioned_config(version, **rollout), timeout=400)
    if code != 0:
        raise RuntimeError(f"deploy of {version} exited {code}:\n{out}")
    found = _DEPLOYED.search(out)
    assert found, out
    return "sha256:" + found[1].split("@sha256:", 1)[1]


async def polling_to_current(client: Client, bench: VersionedBench) -> float:
    history = await last_run(client, bench)
    verified = events_named(history, "Verify ")[-1][1]
    current = events_named(history, "Make version")[-1][1]
    return (current - verified).total_seconds()


def pods_of(bench: VersionedBench) -> dict[str, int]:
    with kube.connect(kubeconfig=str(bench_kubeconfig())) as kc:
        pods = kube.list_pods(kc, namespace=bench.namespace, selector={"app.kubernetes.io/name": bench.name})
    return {p.name: sum(c.restart_count for c in p.containers) for p in pods}


def bench_kubeconfig() -> Path:
    return REPO_ROOT / ".stack" / "cluster" / "kubeconfig"


async def count(client: Client, query: str) -> int:
    resp = await client.workflow_service.count_workflow_executions(
        CountWorkflowExecutionsRequest(namespace=TEMPORAL_NAMESPACE, query=query)
    )
    return int(resp.count)


async def measure(bench: VersionedBench, client: Client, runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    builds = {}
    to_current = []
    for version in ("vb-a", "vb-b", "vb-c"):
        log(f"deploying {version} (steps = [])")
        builds[version] = await deploy(bench, version)
        to_current.append(await polling_to_current(client, bench))
    result["polling_to_current_s"] = [round(s, 3) for s in to_current]
    result["polling_to_current_s_median"] = median(to_current)

    before = pods_of(bench)
    from_command, from_start = [], []
    for i in range(runs):
        target = builds["vb-b"] if i % 2 == 0 else builds["vb-c"]
        started_wall = datetime.now(UTC)
        code, out, _ = await bench.cli("rollback", bench.name, "--to", target, config=bench.versioned_config("vb-c"))
        if code != 0:
            raise RuntimeError(f"rollback --to {target} exited {code}:\n{out}")
        history = await last_run(client, bench)
        routed = events_named(history, "Make version")[-1][1]
        workflow_start = history.events[0].event_time.ToDatetime().replace(tzinfo=UTC)
        from_command.append((routed - started_wall).total_seconds())
        from_start.append((routed - workflow_start).total_seconds())
    after = pods_of(bench)
    result["rollback_to_serving_version_s"] = [round(s, 3) for s in from_command]
    result["rollback_to_serving_version_s_median"] = median(from_command)
    result["rollback_from_workflow_start_s_median"] = median(from_start)
    result["rollback_pod_restarts"] = sum(after.get(p, 0) - r for p, r in before.items() if p in after)
    result["rollback_pods_replaced"] = len(set(before) - set(after))

    # (c) and (d): D ramps under load, pinned workflows on C stay
    tag = uuid.uuid4().hex[:6]
    queue = bench.queue(bench.name)
    pinned = [await client.start_workflow("PinnedWorkflow", id=f"vb-pinned-{tag}-{i}", task_queue=queue) for i in range(3)]
    stop = asyncio.Event()

    async def load() -> None:
        n = 0
        while not stop.is_set():
            await client.start_workflow("OrderWorkflow", {"order_id": f"{tag}-{n}"}, id=f"vb-order-{tag}-{n}", task_queue=queue)
            n += 1
            await asyncio.sleep(1 / LOAD_PER_S)

    loader = asyncio.create_task(load())
    try:
        log("deploying vb-d with steps [20, 50] under load")
        build_d = await deploy(bench, "vb-d", steps=[20, 50], step_pause_seconds=20)
    finally:
        stop.set()
        await loader
    history = await last_run(client, bench)
    changes = events_named(history, "Ramp version") + events_named(history, "Make version")
    await asyncio.sleep(3)  # visibility
    shares = []
    version_d = f"{bench.deployment}:{build_d}"
    for (summary, begin), (_, end) in zip(changes, changes[1:], strict=False):
        percent = float(summary.split(" to ", 1)[1].split("%", 1)[0])
        window = (
            f"WorkflowType = 'OrderWorkflow' AND TaskQueue = '{queue}' AND WorkflowId STARTS_WITH 'vb-order-{tag}' "
            f"AND StartTime > '{begin.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}' AND StartTime < '{end.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
        )
        total = await count(client, window)
        on_d = await count(client, window + f" AND TemporalWorkerDeploymentVersion = '{version_d}'")
        share = 100.0 * on_d / total if total else None
        shares.append(
            {"ramp_percent": percent, "workflows": total, "on_new_version": on_d, "share_percent": share and round(share, 1)}
        )
    result["ramp_share"] = shares
    errors = [abs(s["share_percent"] - s["ramp_percent"]) for s in shares if s["share_percent"] is not None]
    result["ramp_share_error_points_max"] = round(max(errors), 1) if errors else None
    for handle in pinned:
        await handle.signal("finish")
    reports = [await handle.result() for handle in pinned]
    result["pinned_moved"] = sum(1 for r in reports if r["finished_on"] != r["started_on"] or r["started_on"] == build_d)
    result["pinned_total"] = len(reports)
    return result


async def main_async(bench: VersionedBench, runs: int) -> dict[str, Any]:
    from tests.e2e.support import start_pipeline_worker  # the e2e way of running one

    client = await Client.connect(TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE)

    class _App:  # what start_pipeline_worker needs of an app
        def __init__(self) -> None:
            self.worker_log = bench.directory / "pipeline-worker.log"
            self.pipeline_queue = bench.pipeline_queue
            self.directory = bench.directory

        def env(self, config: Path) -> dict[str, str]:
            return bench.env(config)

    bench.worker = await start_pipeline_worker(_App(), bench.versioned_config("vb-a"), client)  # type: ignore[arg-type]
    try:
        return await measure(bench, client, runs)
    finally:
        stop_child(bench.worker, grace=30)
        with kube.connect(kubeconfig=str(bench_kubeconfig())) as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=bench.namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="3 rollbacks instead of 5")
    args = parser.parse_args()
    bench = VersionedBench(runs=3 if args.quick else 5, concurrent=0)
    try:
        result = asyncio.run(main_async(bench, bench.runs))
    except Exception as exc:  # could not measure
        log(f"failed: {type(exc).__name__}: {exc}")
        return 1
    met = {
        "rollback_to_serving_version_s_median": (result.get("rollback_to_serving_version_s_median") or 1e9)
        <= TARGETS["rollback_to_serving_version_s_median"]
        and result.get("rollback_pod_restarts") == 0,
        "ramp_share_error_points_max": (result.get("ramp_share_error_points_max") or 1e9)
        <= TARGETS["ramp_share_error_points_max"],
        "pinned_moved": result.get("pinned_moved") == 0,
    }
    print(
        json.dumps(
            {"versioned": result, "targets": TARGETS, "targets_met": met, "date": time.strftime("%Y-%m-%d %H:%M")}, indent=2
        )
    )
    from benchmarks.report import write_report

    write_report("versioned_bench", {"versioned": result, "targets": TARGETS, "targets_met": met})
    return 0


if __name__ == "__main__":
    sys.exit(main())
