"""Self-deployment end to end: `pipeline bootstrap`, then the pipeline upgrades (and rolls back) itself.

Isolated from the stack's own pipeline: a cluster process of this module's own
(`python -m bootstrap.cluster serve` from this checkout, so its kubelet has the
hostPath and service-account volumes the pipeline worker needs, on a free
port), its own Kubernetes namespace, pipeline task queue and app names; the
stack's Temporal dev server, registry and Docker engine are shared. The tests
are one script and run in file order:

1. `pipeline bootstrap` deploys the pipeline worker with a temporary local
   worker and exits: the pods poll the queue, no local process does;
2. a second `pipeline bootstrap` is a no-op;
3. `pipeline deploy --app <pipeline>` of v2 completes while its own pods are
   replaced: the history shows activities started by pods of v1 and of v2;
4. a broken v3 (its command exits) rolls back; v2 is verified polling again,
   and the rollback's activities ran on the surviving v2 pod;
5. `pipeline deploy` of the sample worker is run by the in-cluster pipeline worker.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from pipeline import kube
from tests.e2e.support import (
    EXIT_ROLLED_BACK,
    PIPELINE,
    REGISTRY,
    TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE,
    UI_URL,
    pollers_of,
    self_deploy_apps_toml,
)
from tests.helpers import eventually
from tests.helpers.cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

_RUN_ID = re.compile(r"/workflows/([^/]+)/([0-9a-f-]{36})/history")
BROKEN_COMMAND = ["python", "-c", "import sys; print('broken on purpose'); sys.exit(3)"]


@dataclass
class SelfDeploy:
    """This module's names, cluster and config files."""

    cluster: LocalCluster
    workdir: Path
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def pipeline_app(self) -> str:
        return f"pw-{self.uid}"

    @property
    def sample_app(self) -> str:
        return f"sw-{self.uid}"

    @property
    def namespace(self) -> str:
        return f"self-{self.uid}"

    @property
    def queue(self) -> str:
        return f"pipeline-{self.uid}"

    def config(self, version: str, *, command: list[str] | None = None) -> Path:
        """The shipped config's apps, renamed and isolated; `version` goes into the pipeline image's build args."""
        text = f"""
target = "local"
[temporal]
address = "{TEMPORAL_ADDRESS}"
namespace = "{TEMPORAL_NAMESPACE}"
ui_url = "{UI_URL}"
[pipeline]
task_queue = "{self.queue}"
default_app = "{self.sample_app}"
[kubernetes]
namespace = "{self.namespace}"
kubeconfig = "{self.cluster.kubeconfig}"
[registry]
address = "{REGISTRY}"
"""
        text += self_deploy_apps_toml(
            sample_app=self.sample_app,
            sample_queue=f"sw-{self.uid}",
            pipeline_app=self.pipeline_app,
            version=version,
            command=command or [],
        )
        path = self.workdir / f"config-{version}.toml"
        path.write_text(text)
        return path

    def cli(self, config: Path, *args: str, timeout: float = 600) -> CliRun:
        prefixes = ("PIPELINE", "TEMPORAL_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env["PIPELINE_CONFIG"] = str(config)
        done = subprocess.run([PIPELINE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=self.workdir)
        return CliRun(args, done.returncode, done.stdout, done.stderr, self)

    def deployment(self) -> dict[str, Any]:
        with kube.connect(kubeconfig=str(self.cluster.kubeconfig)) as kc:
            found = kube.get_deployment(kc, namespace=self.namespace, name=self.pipeline_app)
        assert found is not None, f"no Deployment {self.namespace}/{self.pipeline_app}"
        return found

    def build_id(self) -> str:
        return str(self.deployment()["spec"]["template"]["metadata"]["annotations"]["pipeline.temporal.io/build-id"])

    def pod_logs(self) -> str:
        out = []
        with kube.connect(kubeconfig=str(self.cluster.kubeconfig)) as kc:
            for pod in kube.list_pods(kc, namespace=self.namespace, selector={"app.kubernetes.io/name": self.pipeline_app}):
                try:
                    out.append(f"--- {pod.name}\n{kube.pod_logs(kc, namespace=self.namespace, name=pod.name)[-3000:]}")
                except kube.KubeError as err:
                    out.append(f"--- {pod.name}: {err}")
        return "\n".join(out)


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...] | list[str]
    code: int
    stdout: str
    stderr: str
    ctx: SelfDeploy

    def expect(self, code: int) -> CliRun:
        if self.code != code:
            raise AssertionError(
                f"pipeline {' '.join(self.args)} exited {self.code}, expected {code}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}\npods:\n{self.ctx.pod_logs()}"
            )
        return self

    @property
    def run_id(self) -> tuple[str, str]:
        found: list[tuple[str, str]] = _RUN_ID.findall(self.stdout)
        assert found, self.stdout
        return found[-1]


@pytest.fixture(scope="module")
def ctx(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelfDeploy]:
    cluster = LocalCluster(tmp_path_factory.mktemp("self-deploy") / "state")
    cluster.start()
    context = SelfDeploy(cluster, tmp_path_factory.mktemp("self-deploy-config"))
    cluster.namespaces.append(context.namespace)
    try:
        yield context
    finally:
        try:
            with kube.connect(kubeconfig=str(cluster.kubeconfig)) as kc:
                kube.delete_object(kc, api_version="v1", kind="Namespace", name=context.namespace)
        except kube.KubeError:
            pass
        cluster.stop()
        cluster.remove_containers()


async def activity_identities(client: Client, workflow_id: str, run_id: str) -> list[tuple[str, str]]:
    """(activity type, identity of the worker that started it) for every ActivityTaskStarted, in order."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    types: dict[int, str] = {}
    started: list[tuple[str, str]] = []
    for event in history.events:
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            types[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif kind == "activity_task_started_event_attributes":
            attrs = event.activity_task_started_event_attributes
            started.append((types[attrs.scheduled_event_id], attrs.identity))
    return started


async def polling_identities(client: Client, queue: str) -> set[str]:
    return {p.identity for kind in ("workflow", "activity") for p in await pollers_of(client, queue, kind)}


STATE: dict[str, str] = {}  # build ids of the versions, shared by the scripted tests below


async def test_bootstrap_deploys_the_pipeline_worker_and_hands_over(ctx: SelfDeploy, stack_client: Client) -> None:
    run = ctx.cli(ctx.config("v1"), "bootstrap").expect(0)
    assert "is not serving task queue" in run.stdout and "Handed over" in run.stdout, run.stdout
    STATE["v1"] = ctx.build_id()
    [pod] = [p for p in await polling_identities(stack_client, ctx.queue) if p.endswith(f"@{STATE['v1']}")]
    assert pod.startswith(f"{ctx.pipeline_app}-")
    # The process that ran the temporary worker has exited; the bootstrap's workflow ran on it.
    workflow_id, run_id = run.run_id
    identities = {identity for _, identity in await activity_identities(stack_client, workflow_id, run_id)}
    assert any(not i.startswith(f"{ctx.pipeline_app}-") for i in identities), identities


async def test_a_second_bootstrap_changes_nothing(ctx: SelfDeploy) -> None:
    generation = ctx.deployment()["metadata"]["generation"]
    run = ctx.cli(ctx.config("v1"), "bootstrap").expect(0)
    assert "nothing to do" in run.stdout and "Deploying" not in run.stdout, run.stdout
    assert ctx.deployment()["metadata"]["generation"] == generation


async def test_the_pipeline_deploys_its_next_version_while_its_pods_are_replaced(ctx: SelfDeploy, stack_client: Client) -> None:
    run = ctx.cli(ctx.config("v2"), "deploy", "--app", ctx.pipeline_app).expect(0)
    STATE["v2"] = ctx.build_id()
    assert STATE["v2"] != STATE["v1"]
    started = await activity_identities(stack_client, *run.run_id)
    print("self-upgrade activities:", *started, sep="\n  ")
    builds = {identity.rsplit("@", 1)[1] for _, identity in started}
    assert {STATE["v1"], STATE["v2"]} <= builds, started  # activities ran on pods of both versions
    assert all(identity.startswith(f"{ctx.pipeline_app}-") for _, identity in started), started  # and only on pods
    assert started[-1][1].endswith(f"@{STATE['v2']}"), started  # the new version finished the workflow
    await eventually(
        lambda: _expect_pollers(stack_client, ctx.queue, STATE["v2"]), timeout=60, what="v2 polling the pipeline queue"
    )


async def test_a_broken_version_rolls_back_by_the_surviving_pods(ctx: SelfDeploy, stack_client: Client) -> None:
    run = ctx.cli(ctx.config("v3", command=BROKEN_COMMAND), "deploy", "--app", ctx.pipeline_app).expect(EXIT_ROLLED_BACK)
    assert ctx.build_id() == STATE["v2"]
    started = await activity_identities(stack_client, *run.run_id)
    print("broken-version activities:", *started, sep="\n  ")
    assert {identity.rsplit("@", 1)[1] for _, identity in started} == {STATE["v2"]}, started
    rollout_attempts = [i for i, (activity, _) in enumerate(started) if activity == "wait_for_rollout"]
    assert len(rollout_attempts) >= 2, started  # the failed rollout, then the rollback's
    # v2 is verified polling again: bootstrap agrees there is nothing to do.
    again = ctx.cli(ctx.config("v2"), "bootstrap").expect(0)
    assert "nothing to do" in again.stdout, again.stdout


async def test_the_in_cluster_pipeline_deploys_the_sample_worker(ctx: SelfDeploy, stack_client: Client) -> None:
    run = ctx.cli(ctx.config("v2"), "deploy").expect(0)
    started = await activity_identities(stack_client, *run.run_id)
    assert started and all(identity == started[0][1] for _, identity in started), started
    assert started[0][1].startswith(f"{ctx.pipeline_app}-") and started[0][1].endswith(f"@{STATE['v2']}"), started


async def _expect_pollers(client: Client, queue: str, build_id: str) -> None:
    identities = await polling_identities(client, queue)
    assert any(i.endswith(f"@{build_id}") for i in identities), identities
