"""A sample worker's life through the real pipeline: v1, v2 under load, a crashing v3, a v4 on the wrong queue.

    v1  verified; every new pod polls with v1's build id
    v2  verified while orders are started throughout the rollout; all complete; no v1 poller left
    v3  crashes on start: fails fast (CrashLoopBackOff), rolled back to v2, v2 verified, exit 3
    v4  runs but polls another task queue: never Ready (the polling gate), NotPolling, rolled back to v2, exit 3

then what these deployments left behind: pods with the rendered securityContext,
`pipeline status` / `pipeline history`, histories that replay and hold no
secret, and the Web UI page of a deployment with its step summaries.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client
from temporalio.worker import Replayer

from pipeline.workflows import DeploymentWorkflow
from sample_worker.client import start_orders
from sample_worker.settings import Settings
from tests.e2e.support import (
    CANARY_SECRET,
    EXIT_ROLLED_BACK,
    REPLICAS,
    TEMPORAL_ADDRESS,
    Deployed,
    E2eApp,
    Run,
    activity_spans,
    assert_polling,
    deployed,
    history_of,
    pollers_of,
    readable_text,
    seconds_between,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

CRASH_ON_START = ["python", "-c", "import sys; print('v3 refuses to start', file=sys.stderr); sys.exit(3)"]


# ----- the versions, deployed once per module and shared -----


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(e2e_app: E2eApp, timings: dict[str, float]) -> Deployed:
    version = deployed(await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v1")), e2e_app)
    timings["v1: `pipeline deploy --follow` (build + first rollout)"] = version.run.seconds
    return version


@dataclass(frozen=True)
class UnderLoad:
    version: Deployed
    orders: list[Any]  # handles of the OrderWorkflows started during the rollout


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v2(e2e_app: E2eApp, v1: Deployed, stack_client: Client, timings: dict[str, float]) -> UnderLoad:
    """Deploy v2 while starting orders on the app's task queue every half second until the deployment ends."""
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await e2e_app.start(*args, config=e2e_app.config("v2"))
    finished = asyncio.ensure_future(e2e_app.finish(process, args, started=started, timeout=180))
    settings = Settings(temporal_address=TEMPORAL_ADDRESS, task_queue=e2e_app.task_queue)
    orders: list[Any] = []
    while not finished.done():
        orders += await start_orders(stack_client, settings, count=3, delay_seconds=1.0)
        await asyncio.wait([finished], timeout=0.5)
    version = deployed(finished.result(), e2e_app)
    timings["v2: `pipeline deploy --follow` under load"] = version.run.seconds
    return UnderLoad(version, orders)


# ----- the cases -----


async def test_v1_is_verified_with_every_new_pod_polling_with_its_build_id(
    e2e_app: E2eApp, v1: Deployed, stack_client: Client, timings: dict[str, float]
) -> None:
    run = v1.run
    for step in ("build", "render", "apply", "rollout", "verify", "record"):
        assert f"-> {step}" in run.stdout, f"--follow did not show step {step!r}:\n{run.output}"
    pods = await assert_polling(stack_client, e2e_app, v1)
    polling_line = run.stdout[run.stdout.index("Deployed ") :].splitlines()[0]
    for pod in pods:
        assert f"{pod}@{v1.build_id}" in polling_line, f"the CLI does not list {pod} as polling: {polling_line}"
    spans = activity_spans(await history_of(stack_client, e2e_app, run))
    apply = next(s for s in spans if s.activity == "apply_manifests")
    verify = next(s for s in spans if s.activity == "verify_polling")
    timings["v1: apply -> verified"] = seconds_between(apply.scheduled, verify.closed)


async def test_v2_is_verified_under_load_and_leaves_no_v1_poller(
    e2e_app: E2eApp, v1: Deployed, v2: UnderLoad, stack_client: Client, timings: dict[str, float]
) -> None:
    assert v2.version.build_id != v1.build_id, "v1 and v2 differ by the VERSION build arg, so by digest"
    await assert_polling(stack_client, e2e_app, v2.version)
    spans = activity_spans(await history_of(stack_client, e2e_app, v2.version.run))
    apply = next(s for s in spans if s.activity == "apply_manifests")
    verify = next(s for s in spans if s.activity == "verify_polling")
    timings["v2: apply -> verified"] = seconds_between(apply.scheduled, verify.closed)

    assert len(v2.orders) >= 10, f"only {len(v2.orders)} orders were started during the rollout"
    started_at = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in v2.orders), return_exceptions=True), 90)
    failed = {h.id: r for h, r in zip(v2.orders, results, strict=True) if isinstance(r, BaseException)}
    assert not failed, f"{len(failed)} of {len(v2.orders)} orders started during the rollout failed: {failed}"
    timings[f"v2: the last of {len(v2.orders)} orders completed after verification"] = time.monotonic() - started_at
    # The load really spanned the rollout: v1 pods and v2 pods both ran its activities.
    builds: set[str] = set()
    for handle in v2.orders:
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                builds.add(event.activity_task_started_event_attributes.identity.split("@", 1)[-1])
    assert {v1.build_id, v2.version.build_id} <= builds, f"the orders' activities ran only on builds {builds}"


async def test_v3_crashing_on_start_fails_fast_and_rolls_back_to_v2(
    e2e_app: E2eApp, v2: UnderLoad, stack_client: Client, timings: dict[str, float]
) -> None:
    run = await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v2", command=CRASH_ON_START))
    run.expect(EXIT_ROLLED_BACK, diagnose=e2e_app.diagnose)
    assert re.search(r"CrashLoopBackOff|ContainerCrashing", run.output), f"no crash reason in the output:\n{run.output}"
    assert f"Rolled back to {v2.version.image}" in run.stderr, run.output
    await assert_polling(stack_client, e2e_app, v2.version)

    spans = activity_spans(await history_of(stack_client, e2e_app, run))
    rollouts = [s for s in spans if s.activity == "wait_for_rollout"]
    assert rollouts[0].outcome == "failed" and re.search(r"CrashLoopBackOff|ContainerCrashing", rollouts[0].failure), rollouts[0]
    rolled_back = [s for s in spans if s.activity == "verify_polling"][-1]
    assert rolled_back.outcome == "completed"
    timings["v3: rollout start -> crash recognised"] = seconds_between(rollouts[0].scheduled, rollouts[0].closed)
    assert rollouts[0].closed is not None
    timings["v3: crash recognised -> rolled back and v2 verified"] = seconds_between(rollouts[0].closed, rolled_back.closed)


async def test_v4_polling_the_wrong_queue_is_never_ready_and_rolls_back(
    e2e_app: E2eApp, v2: UnderLoad, stack_client: Client, timings: dict[str, float]
) -> None:
    wrong_queue = f"{e2e_app.name}-wrong"
    config = e2e_app.config(
        "v4",
        command=["sh", "-c", f"TEMPORAL_TASK_QUEUE={wrong_queue} exec python -m sample_worker.worker"],
        rollout={"verification_timeout_seconds": 10},
    )
    run = (await e2e_app.cli("deploy", "--follow", config=config)).expect(EXIT_ROLLED_BACK, diagnose=e2e_app.diagnose)
    # Its pods run but never pass the readiness gate: the rollout names the queue they should poll.
    assert "NotPolling" in run.output, run.output
    assert f"runs but Temporal does not list it as a poller of task queue '{e2e_app.task_queue}'" in run.output, run.output
    assert f"Rolled back to {v2.version.image}" in run.stderr, run.output
    # v4 was up and polling, just elsewhere.
    assert await pollers_of(stack_client, wrong_queue), f"v4's pods never polled {wrong_queue!r}"
    await assert_polling(stack_client, e2e_app, v2.version)

    spans = activity_spans(await history_of(stack_client, e2e_app, run))
    rollouts = [s for s in spans if s.activity == "wait_for_rollout"]
    assert rollouts[0].outcome == "failed" and "NotPolling" in rollouts[0].failure, rollouts[0]
    verifies = [s for s in spans if s.activity == "verify_polling"]
    assert [s.outcome for s in verifies] == ["completed"], verifies  # only the rollback's: v4 never got that far
    assert rollouts[0].closed is not None
    timings["v4: never polling recognised -> rolled back and v2 verified"] = seconds_between(
        rollouts[0].closed, verifies[0].closed
    )


async def test_pods_run_with_the_rendered_security_context(e2e_app: E2eApp, v2: UnderLoad) -> None:
    rendered = (await e2e_app.cli("render", "--image", v2.version.image, config=e2e_app.config("v2"))).expect(0)
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    template = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    want_pod, want_container = template["securityContext"], template["containers"][0]["securityContext"]
    assert want_pod["runAsNonRoot"] and want_container["readOnlyRootFilesystem"], "the render lost the hardening"
    pods = e2e_app.raw_pods()
    assert pods
    for pod in pods:
        assert pod["spec"]["securityContext"] == want_pod, pod["metadata"]["name"]
        assert pod["spec"]["containers"][0]["securityContext"] == want_container, pod["metadata"]["name"]
    # ... and the container runtime enforces it (the local cluster's pods are Docker containers).
    engine = docker.from_env()
    try:
        containers = engine.containers.list(filters={"label": f"io.kubernetes.pod.namespace={e2e_app.namespace}"})
        assert containers, f"no Docker container for namespace {e2e_app.namespace}"
        for container in containers:
            host = container.attrs["HostConfig"]
            who = container.labels.get("io.kubernetes.pod.name", container.name)
            assert container.attrs["Config"]["User"].split(":")[0] == str(want_pod["runAsUser"]), who
            assert host["ReadonlyRootfs"] is True and not host["Privileged"], who
            assert "ALL" in (host.get("CapDrop") or []), who
            assert "no-new-privileges" in " ".join(host.get("SecurityOpt") or []), who
    finally:
        engine.close()


async def test_status_and_history_show_the_deployments(e2e_app: E2eApp, v2: UnderLoad) -> None:
    config = e2e_app.config("v2")
    status = (await e2e_app.cli("status", e2e_app.name, config=config)).expect(0)
    assert e2e_app.workflow_id in status.stdout and "rolled_back" in status.stdout, status.output
    assert f"previous: {v2.version.image}" in status.stdout, status.output
    assert status.web_ui_url.startswith("http://127.0.0.1:8233/namespaces/default/workflows/")

    async def four_rows() -> Run:
        run = (await e2e_app.cli("history", e2e_app.name, config=config)).expect(0)
        rows = [line for line in run.stdout.splitlines() if f" {e2e_app.name} " in line]
        outcomes = [line.split()[3] for line in rows]
        assert outcomes == ["rolled_back", "rolled_back", "succeeded", "succeeded"], run.stdout
        return run

    history = await eventually(four_rows, timeout=20, interval=1, what="4 deployments in `pipeline history`")
    rows = [line for line in history.stdout.splitlines() if f" {e2e_app.name} " in line]
    assert all(re.search(r" \d+\.\ds ", row) for row in rows), f"a row has no duration:\n{history.stdout}"
    assert v2.version.image in rows[2], f"the v2 row does not show v2's image:\n{history.stdout}"
    assert all(e2e_app.repository + "@sha256:" in row for row in rows), history.stdout


async def test_recorded_histories_replay_and_hold_no_secret(e2e_app: E2eApp, stack_client: Client) -> None:
    deploys = [r for r in e2e_app.runs if r.args[0] == "deploy" and "Web UI: " in r.stdout]
    assert len(deploys) >= 4, [r.args for r in e2e_app.runs]
    histories = [await history_of(stack_client, e2e_app, run) for run in deploys]
    replayer = Replayer(workflows=[DeploymentWorkflow])
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any nondeterminism
    token_like = re.compile(
        r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # a JWT
        r"|Bearer\s+[A-Za-z0-9._~+/-]{8,}"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
        r'|"(?:api_?key|password|token|secret)"\s*:\s*"[^"]+"',
        re.IGNORECASE,
    )
    for run, history in zip(deploys, histories, strict=True):
        text = readable_text(history)
        assert CANARY_SECRET not in text, f"the history of run {run.run_id} holds the pipeline's environment secret"
        found = token_like.findall(text)
        assert not found, f"the history of run {run.run_id} holds something token-like: {found[:3]}"
        # Env vars that look like secrets may only ever be references.
        for match in re.finditer(r'\{"name": ?"([A-Z_]*(?:KEY|TOKEN|SECRET|PASSWORD)[A-Z_]*)", ?"value"', text):
            pytest.fail(f"run {run.run_id}: env {match.group(1)} is rendered with a literal value")


async def test_the_web_ui_page_of_a_deployment_shows_its_step_summaries(
    e2e_app: E2eApp, tmp_path: Path, timings: dict[str, float]
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    run = next(r for r in reversed(e2e_app.runs) if r.args[0] == "deploy" and r.code == EXIT_ROLLED_BACK)
    url = run.web_ui_url
    assert url.endswith(f"/{run.run_id}/history"), url
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--window-size=1600,2200",
    ]
    started = time.monotonic()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True).stdout
    timings["Web UI: headless Chromium renders the deployment page"] = time.monotonic() - started
    screenshot = tmp_path / "deployment.png"
    subprocess.run([chromium, *flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=90, check=True)
    print(f"screenshot of {url}: {screenshot}")
    text = re.sub(r"<[^>]+>", " ", dom)
    for expected in (
        f"Deploy {e2e_app.name} to local ({REPLICAS} replicas)",  # the workflow's static summary
        f"Wait for rollout of {e2e_app.name}",
        f"Verify {REPLICAS} pods poll '{e2e_app.task_queue}'",
        "Server-side apply to",
        "as the last verified revision",
    ):
        assert expected in text, f"the Web UI page {url} does not show {expected!r} (screenshot {screenshot})"
    assert screenshot.stat().st_size > 10_000, f"the screenshot {screenshot} is (nearly) empty"
