"""`pipeline bootstrap --azure` against the empty ARM imitation (issue 6 item 4's "Done when").

provision   `pipeline.azure.provision` through the real SDKs: from nothing, the
            resource group, registry, cluster and AcrPull assignment are each
            created by exactly one PUT; a second run issues no PUT at all; an
            incompatible registry is reported and left alone.
CLI         the real console script, each test in its own resource group:
            from nothing, it creates the four once, builds the pipeline-worker
            image with one ACR run, deploys it to the cluster the AKS API hands
            out (the local cluster) and hands over to the in-cluster pods, which
            poll the test's own task queue; a second run creates nothing and says
            the pipeline is already deployed. A cluster without the OIDC issuer,
            an injected 409 and a failed long-running operation each end in one
            line, a non-zero exit and no PUT beyond the refused one.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from azure.mgmt.containerservice import models as aks_models
from temporalio.client import Client

from bootstrap.azure_arm import Imitation
from pipeline import kube
from pipeline.azure import credentials, provision
from tests.e2e.support import (
    KUBECONFIG,
    PIPELINE,
    TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE,
    UI_URL,
    pollers_of,
    readable_text,
    self_deploy_apps_toml,
)
from tests.helpers import eventually
from tests.helpers.azure import ARM_SCOPE, Clients, credential

PUTS = (
    "ResourceGroups_CreateOrUpdate",
    "Registries_Create",
    "ManagedClusters_CreateOrUpdate",
    "UserAssignedIdentities_CreateOrUpdate",
    "FederatedIdentityCredentials_CreateOrUpdate",
    "RoleAssignments_Create",
)
# From nothing: one PUT of each, but four role assignments (AcrPull for the kubelet, three roles for the identity).
FROM_NOTHING = {**dict.fromkeys(PUTS, 1), "RoleAssignments_Create": 4}
KINDS = (
    "resource group",
    "registry",
    "AKS cluster",
    "managed identity",
    "federated identity credential",
    "AcrPull role assignment",
    "Container Registry Tasks Contributor role assignment",
    "AcrPush role assignment",
    "Azure Kubernetes Service Cluster User Role role assignment",
)
LOCATION = "westeurope"
# What the CLI's environment may carry of the imitation's: the credential and the CA, never config overrides
# (AZURE_RESOURCE_GROUP, AZURE_LOCATION, ... would replace the test's own names).
CREDENTIAL_ENV = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
)
LINE = re.compile(r"^(" + "|".join(KINDS) + r") (.+?): (created|exists)\b", re.MULTILINE)


def puts(arm: Imitation) -> dict[str, int]:
    counts = arm.requests()["counts"]
    return {op: int(counts.get(op, 0)) for op in PUTS}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {op: after[op] - before[op] for op in PUTS}


@dataclass
class Names:
    """One test's Azure and Kubernetes names, unique in the shared imitation, cluster and Temporal."""

    uid: str

    @classmethod
    def fresh(cls) -> Names:
        return cls(uuid.uuid4().hex[:6])

    @property
    def group(self) -> str:
        return f"rg-{self.uid}"

    @property
    def registry(self) -> str:
        return f"acr{self.uid}"

    @property
    def cluster(self) -> str:
        return f"aks-{self.uid}"

    @property
    def namespace(self) -> str:
        return f"azboot-{self.uid}"

    @property
    def pipeline_app(self) -> str:
        return f"azpw-{self.uid}"

    @property
    def queue(self) -> str:
        return f"azboot-{self.uid}-deployments"

    def plan(self, arm: Imitation) -> provision.Plan:
        return provision.Plan(
            subscription_id=arm.subscription_id,
            resource_group=self.group,
            location=LOCATION,
            endpoint=arm.endpoint,
            registry_name=self.registry,
            login_server=arm_login_server(),
            registry_admin_user=False,
            cluster_name=self.cluster,
        )

    def config(self, arm: Imitation, directory: Path, *, target: str = "aks") -> Path:
        """A config of target aks against the imitation: this test's resource names, namespace, queue and apps."""
        text = f"""
target = "{target}"
[temporal]
address = "{TEMPORAL_ADDRESS}"
namespace = "{TEMPORAL_NAMESPACE}"
ui_url = "{UI_URL}"
[pipeline]
task_queue = "{self.queue}"
default_app = "azsw-{self.uid}"
[azure]
subscription_id = "{arm.subscription_id}"
resource_group = "{self.group}"
location = "{LOCATION}"
endpoint = "{arm.endpoint}"
[acr]
name = "{self.registry}"
login_server = "{arm_login_server()}"
image_pull_secret = ""
[aks]
cluster_name = "{self.cluster}"
[kubernetes]
namespace = "{self.namespace}"
kubeconfig = ""
"""
        text += self_deploy_apps_toml(
            sample_app=f"azsw-{self.uid}",
            sample_queue=f"azsw-{self.uid}",
            pipeline_app=self.pipeline_app,
            pipeline_grace_seconds=20,
        )
        path = directory / f"config-{self.uid}-{target}.toml"
        path.write_text(text)
        return path


def arm_login_server() -> str:
    return "127.0.0.1:5000"  # the imitation's registries' loginServer (its --registry, the local registry)


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines(self) -> dict[str, str]:
        """{kind: "created"/"exists"} of the per-resource lines."""
        return {kind: state for kind, _, state in LINE.findall(self.stdout)}


def run_cli(arm: Imitation, config: Path, *args: str, timeout: float = 120) -> CliRun:
    """`pipeline --config CONFIG ARGS` with the imitation's credential in its environment and nothing else of Azure."""
    prefixes = ("PIPELINE", "TEMPORAL_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({k: arm.env[k] for k in CREDENTIAL_ENV})
    started = time.monotonic()
    done = subprocess.run(
        [PIPELINE, "--config", str(config), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=config.parent
    )
    run = CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    print(f"$ pipeline {' '.join(args)}  # exit {run.code} in {run.seconds:.1f}s\n{run.output}")
    return run


def one_line_error(run: CliRun) -> str:
    """The run's stderr, which must be exactly one line (no traceback)."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr:\n{run.output}"
    return lines[0]


@pytest.fixture
def azure_env(nothing: Imitation, monkeypatch: pytest.MonkeyPatch) -> Iterator[Imitation]:
    """The imitation's credential in os.environ for in-process provision calls (the credential cache reset around)."""
    for key in CREDENTIAL_ENV:
        monkeypatch.setenv(key, nothing.env[key])
    credentials.reset()
    yield nothing
    credentials.reset()


# ----- provision, in process -----


def test_provision_from_nothing_creates_each_resource_once_then_nothing(azure_env: Imitation) -> None:
    arm, names = azure_env, Names.fresh()
    plan = names.plan(arm)
    before = puts(arm)
    said: list[str] = []
    outcomes = provision.provision(plan, say=said.append)
    assert [(o.kind, o.created) for o in outcomes] == [(kind, True) for kind in KINDS]
    assert said == [o.line() for o in outcomes]
    assert delta(puts(arm), before) == FROM_NOTHING
    # What exists now is what the pipeline needs.
    az = Clients(arm)
    cluster = az.aks.get(names.group, names.cluster).properties
    assert cluster is not None and cluster.provisioning_state == "Succeeded"
    assert cluster.oidc_issuer_profile and cluster.oidc_issuer_profile.enabled
    assert cluster.security_profile and cluster.security_profile.workload_identity
    assert cluster.security_profile.workload_identity.enabled
    kubelet = str((cluster.identity_profile or {})["kubeletidentity"].object_id)
    registry = az.acr.registries.get(names.group, names.registry)
    assignment = az.roles.get(str(registry.id), provision.role_assignment_name(scope=str(registry.id), principal_id=kubelet))
    assert assignment.principal_id == kubelet
    assert str(assignment.role_definition_id).endswith(provision.ACR_PULL_ROLE)
    # Again: everything found, not one PUT.
    middle = puts(arm)
    again = provision.provision(plan, say=lambda _: None)
    assert [o.created for o in again] == [False] * len(KINDS)
    assert delta(puts(arm), middle) == dict.fromkeys(PUTS, 0)


def test_an_incompatible_registry_is_reported_and_left_alone(azure_env: Imitation) -> None:
    arm, names = azure_env, Names.fresh()
    az = Clients(arm)
    az.groups.create_or_update(names.group, {"location": LOCATION})
    az.acr.registries.begin_create(names.group, names.registry, {"location": "eastus", "sku": {"name": "Basic"}}).result()
    before = puts(arm)
    with pytest.raises(
        provision.IncompatibleResource, match=r"registry .* is in location eastus, not \[azure\]\.location westeurope"
    ):
        provision.provision(names.plan(arm), say=lambda _: None)
    # The pull Secret needs the admin user, which a registry created without it does not have.
    with pytest.raises(provision.IncompatibleResource, match="admin user disabled"):
        provision.provision(replace(names.plan(arm), location="eastus", registry_admin_user=True), say=lambda _: None)
    assert delta(puts(arm), before) == dict.fromkeys(PUTS, 0)
    assert az.acr.registries.get(names.group, names.registry).location == "eastus"


# ----- the CLI -----


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_bootstrap_azure_needs_target_aks(nothing: Imitation, workdir: Path) -> None:
    names = Names.fresh()
    before = puts(nothing)
    run = run_cli(nothing, names.config(nothing, workdir, target="local"), "bootstrap", "--azure")
    assert run.code == 2
    assert 'needs target = "aks"' in one_line_error(run)
    assert delta(puts(nothing), before) == dict.fromkeys(PUTS, 0)


def test_a_cluster_without_oidc_issuer_is_reported_and_nothing_is_changed(nothing: Imitation, workdir: Path) -> None:
    names = Names.fresh()
    az = Clients(nothing)
    az.groups.create_or_update(names.group, {"location": LOCATION})
    plain = aks_models.ManagedCluster(
        location=LOCATION,
        identity=aks_models.ManagedClusterIdentity(type="SystemAssigned"),
        properties=aks_models.ManagedClusterProperties(
            dns_prefix=names.cluster,
            agent_pool_profiles=[aks_models.ManagedClusterAgentPoolProfile(name="nodepool1", count=1, mode="System")],
        ),  # as `az aks create` without --enable-oidc-issuer --enable-workload-identity
    )
    az.aks.begin_create_or_update(names.group, names.cluster, plain).result()
    before = puts(nothing)
    run = run_cli(nothing, names.config(nothing, workdir), "bootstrap", "--azure")
    assert run.code == 2, run.output
    error = one_line_error(run)
    assert f"AKS cluster {names.cluster}" in error and "the OIDC issuer and workload identity disabled" in error, error
    assert "--enable-oidc-issuer --enable-workload-identity" in error
    assert run.lines() == {"resource group": "exists", "registry": "created"}
    after = delta(puts(nothing), before)
    assert after == {**dict.fromkeys(PUTS, 0), "Registries_Create": 1}, after  # the cluster saw no PUT
    cluster = az.aks.get(names.group, names.cluster).properties
    assert cluster is not None and not (cluster.oidc_issuer_profile and cluster.oidc_issuer_profile.enabled)


def test_a_409_is_one_clear_line(nothing: Imitation, workdir: Path) -> None:
    names = Names.fresh()
    nothing.inject(
        operation="Registries_Create",
        status=409,
        code="AnotherOperationInProgress",
        message="Another operation on this or dependent resource is in progress.",
    )
    run = run_cli(nothing, names.config(nothing, workdir), "bootstrap", "--azure")
    assert run.code == 2, run.output
    error = one_line_error(run)
    assert error.startswith(f"creating registry {names.registry} (resource group {names.group}")
    assert "409 AnotherOperationInProgress: Another operation on this or dependent resource is in progress" in error
    assert run.lines() == {"resource group": "created"}


def test_a_failed_cluster_operation_is_one_clear_line_and_a_rerun_reports_the_failed_cluster(
    nothing: Imitation, workdir: Path
) -> None:
    names = Names.fresh()
    nothing.inject(
        kind="failOperation",
        operation="ManagedClusters_CreateOrUpdate",
        code="QuotaExceeded",
        message="Operation could not be completed as it results in exceeding approved standardDSv3Family Cores quota.",
    )
    config = names.config(nothing, workdir)
    run = run_cli(nothing, config, "bootstrap", "--azure")
    assert run.code == 1, run.output
    error = one_line_error(run)
    assert error.startswith(f"creating AKS cluster {names.cluster} (resource group {names.group}")
    assert "failed: QuotaExceeded: Operation could not be completed as it results in exceeding" in error
    assert run.lines() == {"resource group": "created", "registry": "created"}
    before = puts(nothing)
    again = run_cli(nothing, config, "bootstrap", "--azure")
    assert again.code == 2 and "is in provisioningState Failed" in one_line_error(again), again.output
    assert delta(puts(nothing), before) == dict.fromkeys(PUTS, 0)


# ----- from nothing to a self-deployed pipeline -----


@pytest.fixture
def deployed_names(stack: None, arm_kubeconfig: Path | None) -> Iterator[Names]:
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")
    names = Names.fresh()
    try:
        yield names
    finally:
        try:
            with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
                kube.delete_object(kc, api_version="v1", kind="Namespace", name=names.namespace)
        except kube.KubeError as err:
            print(f"could not delete namespace {names.namespace}: {err}")


@pytest.mark.e2e
@pytest.mark.timeout(900)
async def test_bootstrap_azure_from_nothing_then_again(
    nothing: Imitation, deployed_names: Names, workdir: Path, stack_client: Client
) -> None:
    names = deployed_names
    config = names.config(nothing, workdir)
    before, builds = puts(nothing), nothing.count("Registries_ScheduleRun")
    run = await asyncio.to_thread(run_cli, nothing, config, "bootstrap", "--azure", timeout=600)
    assert run.code == 0, run.output
    assert run.lines() == dict.fromkeys(KINDS, "created")
    assert delta(puts(nothing), before) == FROM_NOTHING
    assert nothing.count("Registries_ScheduleRun") == builds + 1, "the pipeline-worker image was not built by one ACR run"
    assert "is not serving task queue" in run.stdout and "Handed over" in run.stdout, run.output
    assert f"Deployed {arm_login_server()}/{names.pipeline_app}@sha256:" in run.output

    # The hand-over: only the in-cluster pods poll the queue (the CLI's temporary worker has exited).
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        pods = kube.list_pods(kc, namespace=names.namespace, selector={"app.kubernetes.io/name": names.pipeline_app})
        deployment = kube.get_deployment(kc, namespace=names.namespace, name=names.pipeline_app)
    assert deployment is not None and pods
    build_id = deployment["spec"]["template"]["metadata"]["annotations"]["pipeline.temporal.io/build-id"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{arm_login_server()}/{names.pipeline_app}@sha256:") and not deployment["spec"]["template"][
        "spec"
    ].get("imagePullSecrets"), "pulls must rely on the kubelet identity's AcrPull, not a Secret"
    live = {p.name for p in pods if not p.terminating}

    async def pods_poll() -> None:
        identities = {p.identity for p in await pollers_of(stack_client, names.queue, "activity")}
        assert {f"{pod}@{build_id}" for pod in live} <= identities, identities

    await eventually(pods_poll, timeout=30, what="the in-cluster pipeline worker polling its queue")

    # No credential of the imitation's principal reached the output or the deployment's history.
    history = readable_text(await stack_client.get_workflow_handle(f"deploy-aks-{names.pipeline_app}").fetch_history())
    token = credential(nothing).get_token(ARM_SCOPE).token
    for where, text in (("CLI output", run.output), ("the deployment's history", history)):
        assert nothing.client_secret not in text and token not in text, f"a credential in {where}"

    # Again: every resource found, no PUT, no build, nothing deployed.
    generation = deployment["metadata"]["generation"]
    middle, builds = puts(nothing), nothing.count("Registries_ScheduleRun")
    again = await asyncio.to_thread(run_cli, nothing, config, "bootstrap", "--azure", timeout=180)
    assert again.code == 0, again.output
    assert again.lines() == dict.fromkeys(KINDS, "exists")
    assert "already deployed" in again.stdout and "nothing to do" in again.stdout and "Deploying" not in again.stdout
    assert delta(puts(nothing), middle) == dict.fromkeys(PUTS, 0)
    assert nothing.count("Registries_ScheduleRun") == builds
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        assert (kube.get_deployment(kc, namespace=names.namespace, name=names.pipeline_app) or {})["metadata"][
            "generation"
        ] == generation
    print(f"timings: from nothing {run.seconds:.1f}s, again {again.seconds:.1f}s")
