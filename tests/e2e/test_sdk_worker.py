"""A worker written only against the SDK, deployed unmodified: the pipeline asks nothing private of it.

The fixture (tests/fixtures/sdk_worker) is written the way Temporal's public
samples write a worker: envconfig for the connection, the SDK's default
identity `<pid>@<hostname>`, no build id, no health endpoint, `await
worker.run()`, and a four-line Dockerfile. Its app table comes from `pipeline
app add`, which guesses the task queue from the source.

    v1  verified: its pods are Ready through the readiness gate (no probe at all), Temporal lists `1@<pod>`
    v2  rolled out while greetings are started throughout: a live poller at every sample, none failed
    v3  crashes on start: rolled back to v2, exit 3, the crash named by its own last output line
    scale  `kubectl scale` adds a pod that becomes Ready only once Temporal lists it polling
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from pipeline.markers import POLLING_CONDITION
from pipeline.models import Poller
from pipeline.readiness import POLLING_REASON
from pipeline.verify import describe_pollers, identity_names_pod
from tests.e2e.support import (
    EXIT_ROLLED_BACK,
    KUBECONFIG,
    TEMPORAL_NAMESPACE,
    Deployed,
    E2eApp,
    add_user_app,
    deployed,
)
from tests.helpers import REPO_ROOT
from tests.helpers.zero_downtime import Pods, WorkflowStream, live_pollers, sample_pollers

pytestmark = pytest.mark.e2e

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "sdk_worker"
TASK_QUEUE = "sdk-greetings"  # what worker.py polls; `pipeline app add` guesses it


@dataclass
class SdkApp:
    """The fixture as a user's app: its own directory, its table in the e2e app's config, the deployments made."""

    e2e: E2eApp
    name: str
    source: Path
    config: Path
    versions: dict[str, Deployed]

    def write_version(self, greeting: str, *, crash: str = "") -> None:
        """The worker as its author edits it: another greeting (a new image), or a crash on start."""
        text = (FIXTURE / "worker.py").read_text()
        text = text.replace('GREETING = "Hello"', f'GREETING = "{greeting}"')
        if crash:
            text = text.replace("async def main() -> None:\n", f"async def main() -> None:\n    raise SystemExit({crash!r})\n")
        (self.source / "worker.py").write_text(text)

    async def deploy(self, *, timeout: float = 240) -> Any:
        return await self.e2e.cli("deploy", "--app", self.name, config=self.config, timeout=timeout)

    def pods(self) -> Pods:
        return self.e2e.raw_pods(self.name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sdk_app(e2e_app: E2eApp) -> AsyncIterator[SdkApp]:
    name, source, config = await add_user_app(e2e_app, FIXTURE, suffix="sdk", task_queue=TASK_QUEUE, replicas=2)
    yield SdkApp(e2e=e2e_app, name=name, source=source, config=config, versions={})


def pollers_naming(pollers: list[Poller], pods: list[str]) -> dict[str, list[str]]:
    return {pod: sorted(p.identity for p in pollers if identity_names_pod(p.identity, pod)) for pod in pods}


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == kind), {})


async def test_v1_is_verified_through_the_readiness_gate_with_the_sdk_default_identity(
    sdk_app: SdkApp, stack_client: Client
) -> None:
    run = await sdk_app.deploy()
    sdk_app.versions["v1"] = deployed(run, sdk_app.e2e)
    pods = [p for p in sdk_app.pods() if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 2
    for pod in pods:
        container = pod["spec"]["containers"][0]
        assert not {"readinessProbe", "livenessProbe", "ports"} & set(container), container
        assert pod["spec"]["readinessGates"] == [{"conditionType": POLLING_CONDITION}]
        gate = condition(pod, POLLING_CONDITION)
        assert gate.get("status") == "True" and gate.get("reason") == POLLING_REASON, gate
        assert f"1@{pod['metadata']['name']}" in gate["message"], gate
        assert condition(pod, "Ready").get("status") == "True"
    names = [p["metadata"]["name"] for p in pods]
    pollers = await describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=TASK_QUEUE)
    seen = pollers_naming(pollers, names)
    for pod in names:
        # The SDK's default identity: pid 1 in its container, and the pod's name as its hostname.
        assert f"1@{pod}" in seen[pod], seen
    result = await stack_client.execute_workflow(
        "GreetingWorkflow", "pipeline", id=f"greet-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE, result_type=str
    )
    assert result == "Hello, pipeline!"


async def test_v2_rolls_out_under_load_with_a_live_poller_at_every_sample(sdk_app: SdkApp, stack_client: Client) -> None:
    assert "v1" in sdk_app.versions, "needs v1"
    sdk_app.write_version("Bonjour")
    greetings = WorkflowStream(stack_client, lambda: start_greeting(stack_client))
    greetings.start()
    deploying = asyncio.create_task(sdk_app.deploy())

    async def done(pods: Pods, pollers: list[Poller]) -> bool:
        return deploying.done()

    try:
        sampling = await sample_pollers(
            stack_client, task_queue=TASK_QUEUE, list_pods=sdk_app.pods, done=done, timeout=240, what="v2 deployed"
        )
    finally:
        await greetings.stop()
    sdk_app.versions["v2"] = deployed(await deploying, sdk_app.e2e)
    sampling.assert_always_live()
    outcomes = await greetings.outcomes(timeout=90)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(outcomes) >= 10 and not failures, failures[:3]
    assert {o for o in outcomes if isinstance(o, str)} <= {"Hello, load!", "Bonjour, load!"}
    print(f"v2 under load: {len(sampling.samples)} samples, {len(outcomes)} greetings, none failed")


async def test_a_crashing_v3_is_rolled_back_with_its_crash_named(sdk_app: SdkApp, stack_client: Client) -> None:
    assert "v2" in sdk_app.versions, "needs v2"
    sdk_app.write_version("Hola", crash="v3 cannot start: DATABASE_URL is not set")
    run = await sdk_app.deploy()
    run.expect(EXIT_ROLLED_BACK, diagnose=sdk_app.e2e.diagnose)
    assert "v3 cannot start: DATABASE_URL is not set" in run.output, run.output
    pods = [p for p in sdk_app.pods() if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {sdk_app.versions["v2"].image}
    result = await start_greeting(stack_client)
    assert await result.result() == "Bonjour, load!"


async def test_kubectl_scale_adds_a_pod_that_is_ready_only_once_it_polls(sdk_app: SdkApp, stack_client: Client) -> None:
    assert "v2" in sdk_app.versions, "needs v2"
    before = {p["metadata"]["name"] for p in sdk_app.pods()}
    kubectl("scale", f"deployment/{sdk_app.name}", "--replicas=3", namespace=sdk_app.e2e.namespace)
    seen: dict[str, float] = {}  # the new pod: when its containers were ready, when Temporal listed it, when it was Ready
    new_pod = ""
    started = time.monotonic()
    while "ready" not in seen:
        assert time.monotonic() - started < 60, f"the scaled-up pod did not become Ready: {seen}"
        pods, pollers = await asyncio.gather(
            asyncio.to_thread(sdk_app.pods),
            describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=TASK_QUEUE),
        )
        now = time.monotonic() - started
        fresh = [p for p in pods if p["metadata"]["name"] not in before]
        if not fresh:
            await asyncio.sleep(0.05)
            continue
        pod = fresh[0]
        new_pod = pod["metadata"]["name"]
        if condition(pod, "ContainersReady").get("status") == "True":
            seen.setdefault("containers_ready", now)
        if new_pod in live_pollers(pods, pollers) and new_pod in live_pollers(pods, pollers, "activity"):
            seen.setdefault("listed", now)
        if condition(pod, "Ready").get("status") == "True":
            seen["ready"] = now
            assert "listed" in seen or condition(pod, POLLING_CONDITION).get("status") == "True"
        await asyncio.sleep(0.05)
    pod = next(p for p in sdk_app.pods() if p["metadata"]["name"] == new_pod)
    gate = condition(pod, POLLING_CONDITION)
    assert gate.get("status") == "True" and f"1@{new_pod}" in gate.get("message", ""), gate
    # Ready never comes before Temporal lists the pod (one sample of slack: the two are read together).
    assert "listed" in seen and seen["ready"] >= seen["listed"] - 0.2, seen
    print(f"kubectl scale: new pod {new_pod}: {seen}")
    kubectl("scale", f"deployment/{sdk_app.name}", "--replicas=2", namespace=sdk_app.e2e.namespace)


async def start_greeting(client: Client) -> WorkflowHandle[Any, str]:
    return await client.start_workflow(
        "GreetingWorkflow", "load", id=f"greet-{uuid.uuid4().hex[:10]}", task_queue=TASK_QUEUE, result_type=str
    )


def kubectl(*args: str, namespace: str) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
