"""The real `pipeline` CLI with `target = "aks"` against the ARM imitation, a `pipeline worker` subprocess doing the work.

Issue 5's "Done when", end to end through the console script (as tests/e2e do):

v1        `pipeline deploy --follow`: built by one ACR run, kubeconfig from
          listClusterUserCredential, the sample worker rolled out to the local
          cluster and verified polling
rollback  a never-ready version rolling out; `pipeline rollback` restores v1
killed    v2's ACR run held Running; the pipeline worker is SIGKILLed once the
          run id is heartbeated; a new worker resumes that run (one scheduled run)
secrets   no client secret, token or registry password in any history, log or CLI output

The CLI's environment holds the imitation's client environment (arm.env) and no
other Azure settings: for `aks` it uploads the build source itself (listBuildSourceUploadUrl
and the blob PUT, pipeline/source.py), as `az acr build` does with the user's credential.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from azure.identity import ClientSecretCredential
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models
from temporalio.client import Client

from bootstrap.azure_arm import Imitation
from bootstrap.process import stop_child
from pipeline import kube
from pipeline.config import to_toml
from tests.e2e.support import (
    EXIT_ROLLED_BACK,
    KUBECONFIG,
    NEVER_READY,
    PIPELINE,
    REGISTRY,
    TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE,
    Deployed,
    E2eApp,
    deployed,
    listening,
    pollers_of,
    readable_text,
    rolling_out,
)
from tests.helpers import REPO_ROOT, eventually
from tests.helpers.azure import AKS_SCOPE, ARM_SCOPE, Clients
from tests.helpers.histories import heartbeated_run_ids

AZURE_ENV_PREFIXES = ("AZURE_", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "ACR_", "AKS_")
ABAC = "AbacRepositoryPermissions"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@dataclass
class AksApp(E2eApp):
    """An E2eApp whose configs say `target = "aks"` against the imitation."""

    arm: Imitation | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return f"deploy-aks-{self.name}"

    def config(
        self,
        version: str = "v1",
        *,
        command: Sequence[str] = (),
        replicas: int = 1,
        rollout: Mapping[str, Any] | None = None,
        platforms: Sequence[str] = (),
    ) -> Path:
        assert self.arm is not None
        base = super().config(version, command=command, replicas=replicas, rollout=rollout)
        data = tomllib.loads(base.read_text())
        if platforms:  # built FROM the multi-platform base index in the registry
            app = data["apps"][self.name]
            app["platforms"] = list(platforms)
            app["build_args"] = {**app.get("build_args", {}), "BASE_IMAGE": f"{REGISTRY}/pipeline-base:bookworm"}
        data["target"] = "aks"
        data["azure"].update(
            subscription_id=self.arm.subscription_id, resource_group=self.arm.resource_group, endpoint=self.arm.endpoint
        )
        data["acr"].update(name=self.arm.registry_name, login_server=self.arm.login_server, image_pull_secret="acr-pull")
        data["aks"].update(cluster_name=self.arm.cluster_name)
        data["kubernetes"].update(kubeconfig="")  # the AKS API supplies it
        path = base.with_name(base.stem + ("-multi" if platforms else "") + "-aks.toml")
        path.write_text(to_toml(data))
        return path

    def env(self, config: Path) -> dict[str, str]:
        """The CLI's environment: the imitation's client environment (for the source upload), no other Azure settings."""
        assert self.arm is not None
        return {**{k: v for k, v in super().env(config).items() if not k.startswith(AZURE_ENV_PREFIXES)}, **self.arm.env}

    def start_worker(self) -> subprocess.Popen[bytes]:
        assert self.arm is not None
        log_path = self.directory / f"pipeline-worker-{len(self.workers)}.log"
        env = {**self.env(self.config()), **self.arm.env}
        with log_path.open("wb") as log:
            worker = subprocess.Popen([PIPELINE, "worker"], env=env, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(worker)
        self.worker_logs.append(log_path)
        return worker

    def worker_log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.worker_logs if p.exists())


async def wait_polling(client: Client, app: AksApp, worker: subprocess.Popen[bytes]) -> None:
    async def polling() -> None:
        assert worker.poll() is None, f"`pipeline worker` exited {worker.returncode}:\n{app.worker_log_text()}"
        log = app.worker_logs[app.workers.index(worker)].read_text(errors="replace")
        assert "polling task queue" in log, "this worker does not poll yet"  # (identities are <host>@<build>, not per process)
        assert await pollers_of(client, app.pipeline_queue, "activity"), "no activity poller"

    await eventually(polling, timeout=30, what=f"`pipeline worker` (pid {worker.pid}) polling {app.pipeline_queue!r}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> Client:
    """The stack's Temporal dev server (the CLI and the worker subprocess use it too)."""
    down = [a for a in (TEMPORAL_ADDRESS, REGISTRY, "127.0.0.1:6443") if not listening(a)]
    if down or not KUBECONFIG.is_file():
        pytest.skip(f"the local stack is not up ({', '.join(down) or KUBECONFIG}): run `bootstrap/stack up`")
    return await Client.connect(TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE)


@pytest.fixture(scope="module")
def arm_module(azure_arm: Imitation) -> Imitation:
    azure_arm.clear_faults()
    return azure_arm


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def aks_app(arm_module: Imitation, client: Client, arm_kubeconfig: Path | None) -> AsyncIterator[AksApp]:
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")
    name = f"aks-cli-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    app = AksApp(name=name, directory=directory, worker_log=directory / "pipeline-worker-0.log", arm=arm_module)
    try:
        await wait_polling(client, app, app.start_worker())
        yield app
    finally:
        arm_module.clear_faults()
        for worker in app.workers:
            stop_child(worker, grace=30)
        with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=app.namespace)
        print(f"{name}: worker logs {[str(p) for p in app.worker_logs]}; namespace {app.namespace} deleted")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(aks_app: AksApp, arm_module: Imitation) -> Deployed:
    before = arm_module.requests()["counts"]
    run = await aks_app.cli("deploy", "--follow", config=aks_app.config("v1"), timeout=240)
    after = arm_module.requests()["counts"]
    version = deployed(run, aks_app)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta.get("Registries_ScheduleRun") == 1, delta
    assert delta.get("Registries_GetBuildSourceUploadUrl") == 1, delta
    assert delta.get("Runs_Get", 0) > 0 and delta.get("Runs_GetLogSasUrl", 0) > 0, delta
    assert delta.get("ManagedClusters_ListClusterUserCredentials", 0) > 0, delta
    assert delta.get("Registries_ListCredentials", 0) > 0, delta  # the pull Secret was filled from ACR
    return version


async def test_deploy_builds_with_acr_gets_aks_credentials_and_verifies(aks_app: AksApp, v1: Deployed) -> None:
    assert ": verified" in v1.run.stdout
    assert v1.image.startswith(f"{aks_app.repository}@sha256:"), v1.image
    live = aks_app.deployment()["spec"]["template"]["spec"]
    assert live["containers"][0]["image"] == v1.image
    assert live["imagePullSecrets"] == [{"name": "acr-pull"}]


async def test_rollback_during_a_rollout_restores_v1(
    aks_app: AksApp, v1: Deployed, client: Client, arm_module: Imitation
) -> None:
    slow = aks_app.config("v1", command=NEVER_READY, rollout={"progress_deadline_seconds": 600})
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await aks_app.start(*args, config=slow)
    handle = client.get_workflow_handle(aks_app.workflow_id)
    reason = "aks: the new version never gets ready"
    try:
        slow_rolling_out = rolling_out(handle, aks_app, command=NEVER_READY, after_run=v1.run.run_id)
        await eventually(slow_rolling_out, timeout=90, interval=0.5, what="the slow version rolling out")
        rollback = await aks_app.cli("rollback", aks_app.name, "--reason", reason, config=aks_app.config("v1"), timeout=120)
        rollback.expect(0, diagnose=aks_app.diagnose)
        assert f"Rolled back to {v1.image}: rollback requested: {reason}" in rollback.stderr, rollback.output
    finally:
        deploy = await aks_app.finish(process, args, started=started, timeout=120)
    deploy.expect(EXIT_ROLLED_BACK, diagnose=aks_app.diagnose)
    assert f"rollback requested: {reason}" in deploy.output
    live = aks_app.deployment()["spec"]["template"]["spec"]["containers"][0]
    assert live["image"] == v1.image and not live.get("command"), live


def _kubeconfig_token(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["users"][0]["user"]["token"])


@pytest.mark.parametrize(
    ("version", "platforms"), [("v2", ()), ("v3", ("linux/amd64", "linux/arm64"))], ids=["one-platform", "two-platforms"]
)
async def test_killed_worker_resumes_the_same_acr_runs(
    aks_app: AksApp,
    v1: Deployed,
    client: Client,
    arm_module: Imitation,
    timings: dict[str, float],
    version: str,
    platforms: tuple[str, ...],
) -> None:
    """SIGKILL of the worker while its ACR run (one per platform) is going: the new worker resumes each run."""
    runs = max(1, len(platforms))
    scheduled = arm_module.count("Registries_ScheduleRun")
    arm_module.inject(kind="runDelay", seconds=8)
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await aks_app.start(*args, config=aks_app.config(version, platforms=platforms))
    handle = client.get_workflow_handle(aks_app.workflow_id)
    try:
        run_ids: list[str] = []

        async def run_ids_heartbeated() -> None:
            description = await handle.describe()
            assert description.run_id != v1.run.run_id
            ids = heartbeated_run_ids(description)
            assert len(ids) == runs, f"ACR run ids heartbeated so far: {ids}"
            run_ids[:] = ids

        await eventually(run_ids_heartbeated, timeout=60, interval=0.3, what="the build activities heartbeating their runs")
        old = aks_app.workers[-1]
        old.send_signal(signal.SIGKILL)
        old.wait(timeout=10)
        killed_at = time.monotonic()
        assert arm_module.count("Registries_ScheduleRun") == scheduled + runs
        await wait_polling(client, aks_app, aks_app.start_worker())
    finally:
        deploy = await aks_app.finish(process, args, started=started, timeout=300)
    timings[f"aks: worker SIGKILLed during {runs} ACR run(s) -> verified"] = time.monotonic() - killed_at
    new = deployed(deploy, aks_app)
    assert new.image != v1.image
    assert arm_module.count("Registries_ScheduleRun") == scheduled + runs, "a retried build scheduled another ACR run"
    for run_id in run_ids:
        assert f"resuming ACR run {run_id} of a previous attempt" in aks_app.worker_log_text()
    if platforms:  # one index of both, deployed by its digest
        assert "an index of linux/amd64, linux/arm64" in deploy.stdout, deploy.output
        runs_api = Clients(arm_module).acr.runs
        built_for = {
            str(runs_api.get(arm_module.resource_group, arm_module.registry_name, run_id).platform.architecture)
            for run_id in run_ids
        }
        assert built_for == {"amd64", "arm64"}, built_for  # the right platform in each run's request
    history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) >= 2, f"no activity was retried: {attempts}"


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


async def test_no_secret_token_or_password_in_histories_logs_or_cli_output(
    aks_app: AksApp,
    v1: Deployed,
    client: Client,
    arm_module: Imitation,
    arm_kubeconfig: Path,
    arm_credential: ClientSecretCredential,
) -> None:
    # ARM tokens are JWTs the pattern below sees; the AKS-scope token is the local cluster's opaque one, scanned literally.
    assert JWT.fullmatch(arm_credential.get_token(ARM_SCOPE).token), "the scan's pattern misses the imitation's ARM tokens"
    aks_token = arm_credential.get_token(AKS_SCOPE).token
    run_ids = {r.run_id for r in aks_app.runs if "Web UI: " in r.stdout}
    async for execution in client.list_workflows(f'WorkflowId = "{aks_app.workflow_id}"'):
        run_ids.add(execution.run_id)
    assert len(run_ids) >= 3, run_ids  # v1, the rolled-back one, v2 (when run together)
    texts = {
        f"history {run_id}": readable_text(await client.get_workflow_handle(aks_app.workflow_id, run_id=run_id).fetch_history())
        for run_id in sorted(run_ids)
    }
    texts["worker logs"] = aks_app.worker_log_text()
    texts["CLI output"] = "\n".join(r.output for r in aks_app.runs)
    cluster_token = _kubeconfig_token(arm_kubeconfig)
    secrets = {
        "client secret": arm_module.client_secret,
        "no-access client secret": arm_module.no_access_client[1],
        "cluster token (listClusterUserCredential)": cluster_token,
        "AKS-scope token": aks_token,
        **{f"registry password {i}": p for r in arm_module.seed["registries"] for i, p in enumerate(r["passwords"])},
    }
    assert all(len(s) >= 8 for s in secrets.values()), "a secret too short to scan for"
    found = [f"{what} in {where}" for where, text in texts.items() for what, secret in secrets.items() if secret in text]
    found += [f"JWT-like token {m[:16]}... in {where}" for where, text in texts.items() for m in JWT.findall(text)]
    assert not found, found
    assert "Run ID:" in texts["worker logs"] or "scheduled ACR run" in texts["worker logs"], "the scan saw no build log"


async def test_tasks_not_allowed_fails_the_deploy_in_one_line_and_applies_nothing(
    aks_app: AksApp, v1: Deployed, arm_module: Imitation
) -> None:
    """A subscription where ACR refuses Tasks (issue 22 item 6): the deploy says so in one line, the cluster is untouched."""
    generation = aks_app.deployment()["metadata"]["generation"]
    runs = len(arm_module.requests()["log"])
    arm_module.inject(kind="tasksNotAllowed")
    try:
        run = await aks_app.cli("deploy", config=aks_app.config("v9-tasks-refused"), timeout=240)
    finally:
        arm_module.clear_faults()
    assert run.code == 2, run.output  # the subscription refuses ACR Tasks: bad input, as the issue asks
    [line] = [line for line in run.output.splitlines() if "TasksOperationsNotAllowed" in line]
    assert line.startswith("Deployment failed: ") and "free-trial" in line and "--image" in line, run.output
    scheduled = [e for e in arm_module.requests()["log"][runs:] if e["operation"] == "Registries_ScheduleRun"]
    assert [e["status"] for e in scheduled] == [400], scheduled  # refused once, not retried
    assert aks_app.deployment()["metadata"]["generation"] == generation  # nothing applied


async def test_a_deploy_on_an_abac_registry_pushes_only_as_a_writer_and_the_cluster_pulls(
    aks_app: AksApp, v1: Deployed, arm_module: Imitation
) -> None:
    """Issue 22 item 0, end to end: a registry in ABAC repository-permission mode (`roleAssignmentMode:
    AbacRepositoryPermissions`), pulled by the node's identity (no image pull Secret, as on AKS with the kubelet
    identity granted Container Registry Repository Reader: tests/azure/test_abac_registry.py shows bootstrap
    grants it). The pipeline's principal is Owner, which carries no dataActions: the run (sent with
    `[caller]`, read from the registry's mode) is refused its push, the deploy fails naming the registry's
    answer and nothing is applied. Once the principal holds Container Registry Repository Writer on the
    registry (what `bootstrap --azure` grants the pipeline's identity), the same deploy builds, pushes,
    and the cluster pulls and verifies the image."""
    az = Clients(arm_module)
    name = f"abacdeploy{uuid.uuid4().hex[:6]}"
    body = acr_models.Registry(location=arm_module.location, sku=acr_models.Sku(name="Standard"), role_assignment_mode=ABAC)
    registry = az.acr.registries.begin_create(arm_module.resource_group, name, body).result()
    data = tomllib.loads(aks_app.config("v10-abac").read_text())
    data["acr"].update(name=name, image_pull_secret="")
    config = aks_app.directory / "config-v10-abac-registry-aks.toml"
    config.write_text(to_toml(data))
    generation = aks_app.deployment()["metadata"]["generation"]

    refused = await aks_app.cli("deploy", config=config, timeout=240)
    assert refused.code != 0, refused.output
    assert "denied: requested access to the resource is denied" in refused.output, refused.output
    assert aks_app.deployment()["metadata"]["generation"] == generation  # nothing applied

    az.grant(str(registry.id), "Container Registry Repository Writer", arm_module.object_id("pipeline"))
    run = await aks_app.cli("deploy", "--follow", config=config, timeout=240)
    version = deployed(run, aks_app)
    runs = [json.loads(p.read_text())["private"] for p in (arm_module.state_dir / "runs" / name).glob("*.json")]
    assert len(runs) == 2 and {r["sourceRegistryIdentity"] for r in runs} == {"[caller]"}, runs
    assert sorted(bool(r["pushDenied"]) for r in runs) == [False, True], runs
    live = aks_app.deployment()["spec"]["template"]["spec"]
    assert live["containers"][0]["image"] == version.image and not live.get("imagePullSecrets")
    running = [p for p in aks_app.raw_pods() if not p["metadata"].get("deletionTimestamp")]
    assert running and all(p["spec"]["containers"][0]["image"] == version.image for p in running), running
    assert all(s.get("ready") for p in running for s in p["status"]["containerStatuses"]), running  # pulled and serving


async def test_twenty_concurrent_deploys_through_a_throttling_arm(aks_app: AksApp, v1: Deployed, arm_module: Imitation) -> None:
    """Issue 22 item 7, end to end: 20 apps deployed at once on target `aks` (20 CLI processes, one pipeline
    worker) while the imitation enforces ARM's per-principal token buckets (Azure's figures divided by 10: 25
    reads refilled at 2.5 a second, 20 writes at 1 a second). The apps are SDK-only workers of their own
    (tests/fixtures/sdk_worker, each on its own queue), built FROM a host-only SDK base that
    `base_image.publish` copies into the registry, as `bootstrap --azure` does; the builder sends the
    registry's copy to ACR. Every deploy is verified (azure-core waits out each 429 by its Retry-After, the
    builder polls with back-off, the worker keeps the AKS kubeconfig: no 429 reaches a user), and each build
    costs at most 20 ARM reads of its run."""
    import docker

    from pipeline.azure import base_image
    from tests.helpers.images import sdk_base_image

    engine = docker.from_env()
    try:
        base = sdk_base_image(engine)
    finally:
        engine.close()
    base_image.publish([{"BASE_IMAGE": base}], REGISTRY, say=print)
    data = tomllib.loads(aks_app.config("v11-many").read_text())
    names = [f"{aks_app.name}-c{n:02d}" for n in range(20)]
    fixture = (REPO_ROOT / "tests/fixtures/sdk_worker/worker.py").read_text()
    data["apps"] = {}
    for name in names:
        context = aks_app.directory / name
        context.mkdir()
        (context / "Dockerfile").write_text((REPO_ROOT / "tests/fixtures/sdk_worker/Dockerfile").read_text())
        (context / "worker.py").write_text(fixture.replace('"sdk-greetings"', f'"{name}-q"'))
        data["apps"][name] = {
            "task_queue": f"{name}-q",
            "build_context": str(context),
            "replicas": 1,
            "build_args": {"BASE_IMAGE": base},
            "termination_grace_period_seconds": 5,
        }
    data["pipeline"]["default_app"] = names[0]
    config = aks_app.directory / "config-v11-twenty-aks.toml"
    config.write_text(to_toml(data))
    runs_dir = arm_module.state_dir / "runs" / arm_module.registry_name.lower()
    runs_before = set(runs_dir.glob("*.json"))
    log_before = len(arm_module.requests()["log"])
    arm_module.inject(kind="throttle", scale=10)
    started = time.monotonic()
    try:
        processes = [await aks_app.start("deploy", "--app", name, config=config) for name in names]
        done = [
            await aks_app.finish(p, ("deploy", "--app", n), started=started, timeout=600)
            for p, n in zip(processes, names, strict=True)
        ]
    finally:
        arm_module.clear_faults()
    elapsed = time.monotonic() - started
    failed = {n: r.output[-800:] for n, r in zip(names, done, strict=True) if r.code != 0 or ": verified" not in r.stdout}
    assert not failed, failed
    seen = [line for r in done for line in r.output.splitlines() if re.search(r"\b429\b|TooManyRequests|throttled\.", line)]
    assert not seen, seen  # no user saw ARM's 429 (waiting it out may be said: "ARM is throttling ...; trying again")
    log = arm_module.requests()["log"][log_before:]
    run_ids = [p.stem for p in set(runs_dir.glob("*.json")) - runs_before]
    assert len(run_ids) == 20, run_ids  # one ACR run per deploy
    reads = {
        r: sum(e["method"] == "GET" and re.search(f"/runs/{r}(/|$)", e["path"], re.IGNORECASE) is not None for e in log)
        for r in run_ids
    }
    throttled = Counter(e["operation"] for e in log if e["status"] == 429)
    print(f"20 deploys verified in {elapsed:.0f}s; ARM reads per build {sorted(reads.values())}; 429s answered {dict(throttled)}")
    assert throttled, "the buckets were never empty: nothing was throttled"
    assert max(reads.values()) <= 20, reads
