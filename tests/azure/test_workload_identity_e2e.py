"""Target aks end to end with the in-cluster pipeline worker as its own Azure identity (issue 15's "Done when").

From nothing (an empty ARM imitation, no identity made by hand, no secret given to the pods):

bootstrap   `pipeline bootstrap --azure` creates the resource group, registry, cluster, AcrPull, the
            pipeline's user-assigned managed identity, its federated credential for the pipeline
            worker's ServiceAccount on the cluster's OIDC issuer (the local cluster's real issuer),
            and the identity's two roles; it self-deploys the pipeline worker, whose pods carry a
            projected ServiceAccount token and the identity's public ids, no hostPath and no secret.
deploy      `pipeline deploy --app <sample> --follow`: the CLI uploads the source once (as the CLI's
            user); the in-cluster worker, authenticated by workload identity, schedules exactly one
            ACR run (the imitation's request log names the identity's client id as the caller), and
            the build activity's started event names that pod; the pollers are verified.
killed      during the next deploy's ACR run the pipeline worker's container is SIGKILLed; the
            restarted pod resumes the same run (one Registries_ScheduleRun) and the deploy verifies.
secrets     no client secret, token or ServiceAccount JWT in the histories or the CLI output.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import docker
import pytest
from azure.mgmt.msi import ManagedServiceIdentityClient
from temporalio.client import Client

from bootstrap.azure_arm import Imitation
from pipeline import kube
from pipeline.config import to_toml
from tests.azure.test_bootstrap_azure import Names, deployed_names, run_cli  # noqa: F401  (deployed_names: a fixture)
from tests.e2e.support import KUBECONFIG, readable_text
from tests.helpers import eventually
from tests.helpers.azure import ARM_SCOPE, credential
from tests.helpers.histories import heartbeated_run_id, started_identities

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def wi_config(names: Names, arm: Imitation, directory: Path, *, build_args: dict[str, str] | None = None) -> Path:
    """The test's aks config, trusting the imitation's CA in the pods ([azure].ca_bundle)."""
    path = names.config(arm, directory)
    data = tomllib.loads(path.read_text())
    data["azure"]["ca_bundle"] = str(arm.ca_bundle)
    if build_args:
        data["apps"][f"azsw-{names.uid}"].setdefault("build_args", {}).update(build_args)
    path.write_text(to_toml(data))
    return path


def identity_of(arm: Imitation, names: Names) -> Any:
    client = ManagedServiceIdentityClient(
        credential(arm),
        arm.subscription_id,
        base_url=arm.endpoint,
        connection_verify=str(arm.ca_bundle),
        credential_scopes=[ARM_SCOPE],
    )
    return client.user_assigned_identities.get(names.group, "temporal-pipeline")


def pipeline_pods(names: Names) -> list[kube.PodInfo]:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        pods = kube.list_pods(kc, namespace=names.namespace, selector={"app.kubernetes.io/name": names.pipeline_app})
    return [p for p in pods if not p.terminating]


def calls(arm: Imitation, since: int, operation: str) -> list[dict[str, Any]]:
    return [entry for entry in arm.requests()["log"][since:] if entry.get("operation") == operation]


@pytest.mark.e2e
@pytest.mark.timeout(1500)
async def test_aks_from_nothing_the_in_cluster_worker_builds_and_deploys_as_its_workload_identity(
    nothing: Imitation,
    deployed_names: Names,  # noqa: F811  (the fixture imported above)
    workdir: Path,
    stack_client: Client,
) -> None:
    names, arm = deployed_names, nothing
    config = wi_config(names, arm, workdir)
    run = await asyncio.to_thread(run_cli, arm, config, "bootstrap", "--azure", timeout=600)
    assert run.code == 0, run.output
    for line in (
        "managed identity temporal-pipeline: created",
        f"federated identity credential {names.namespace}-{names.pipeline_app} of temporal-pipeline: created",
        f"Container Registry Tasks Contributor role assignment for temporal-pipeline on {names.registry}: created",
        f"AcrPush role assignment for temporal-pipeline on {names.registry}: created",
        f"Azure Kubernetes Service Cluster User Role role assignment for temporal-pipeline on {names.cluster}: created",
    ):
        assert line in run.stdout, run.output
    identity = identity_of(arm, names)

    # The pods: the identity's public ids and a projected token; no hostPath, no secret.
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        deployment = kube.get_deployment(kc, namespace=names.namespace, name=names.pipeline_app)
    assert deployment is not None
    spec = deployment["spec"]["template"]["spec"]
    assert not [v for v in spec.get("volumes", []) if "hostPath" in v], spec["volumes"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["AZURE_CLIENT_ID"] == identity.client_id and env["AZURE_TENANT_ID"] == identity.tenant_id
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == "/var/run/secrets/azure/tokens/azure-identity-token"
    rendered = json.dumps(deployment)
    assert "AZURE_CLIENT_SECRET" not in rendered and arm.client_secret not in rendered

    # A deploy of the sample app, executed by the in-cluster worker as itself.
    sample = f"azsw-{names.uid}"
    log_start = len(arm.requests()["log"])
    deploy = await asyncio.to_thread(run_cli, arm, config, "deploy", "--app", sample, "--follow", timeout=600)
    assert deploy.code == 0 and ": verified" in deploy.stdout, deploy.output
    uploads = calls(arm, log_start, "Registries_GetBuildSourceUploadUrl")
    scheduled = calls(arm, log_start, "Registries_ScheduleRun")
    assert len(uploads) == 1 and len(scheduled) == 1, (uploads, scheduled)
    assert uploads[0]["clientId"] == arm.client_id, "the CLI's user uploads the source"
    assert scheduled[0]["clientId"] == identity.client_id, "the in-cluster worker schedules the run as its identity"
    # The activities' kubeconfig comes from the AKS API, asked by the identity (Cluster User Role).
    assert identity.client_id in {e["clientId"] for e in calls(arm, log_start, "ManagedClusters_ListClusterUserCredentials")}
    handle = stack_client.get_workflow_handle(f"deploy-aks-{sample}")
    pods = {p.name for p in pipeline_pods(names)}
    builds = started_identities(await handle.fetch_history(), "build_image")
    assert builds and all(who.split("@")[0] in pods for _, who in builds), (builds, pods)

    # SIGKILL the pipeline worker's container during the next ACR run: the restarted one resumes that run.
    count = arm.count("Registries_ScheduleRun")
    arm.inject(kind="runDelay", seconds=8)
    changed = wi_config(names, arm, workdir, build_args={"PIPELINE_TEST_REVISION": "2"})
    second = asyncio.ensure_future(asyncio.to_thread(run_cli, arm, changed, "deploy", "--app", sample, "--follow", timeout=600))
    try:
        first_run = (await handle.describe()).run_id

        async def run_id_heartbeated() -> None:
            description = await handle.describe()
            assert description.run_id != first_run, "the second deployment has not started"
            assert heartbeated_run_id(description), "no ACR run id heartbeated yet"

        await eventually(run_id_heartbeated, timeout=120, interval=0.3, what="the build activity heartbeating its run id")
        engine = docker.from_env()
        try:
            killed = 0
            for pod in pipeline_pods(names):
                for container in engine.containers.list(filters={"label": f"io.kubernetes.pod.name={pod.name}"}):
                    container.kill(signal="SIGKILL")
                    killed += 1
        finally:
            engine.close()
        assert killed, "no pipeline worker container to kill"
        killed_at = time.monotonic()
    finally:
        result = await second
    assert result.code == 0 and ": verified" in result.stdout, result.output
    print(f"timings: SIGKILLed during the ACR run -> verified in {time.monotonic() - killed_at:.1f}s")
    assert arm.count("Registries_ScheduleRun") == count + 1, "the retried build scheduled another ACR run"
    attempts = started_identities(await handle.fetch_history(), "build_image")
    assert max(attempt for attempt, _ in attempts) >= 2, attempts

    # Nothing secret anywhere: the client secret, an ARM token, any JWT (the projected ServiceAccount token).
    token = credential(arm).get_token(ARM_SCOPE).token
    texts = {"CLI output": run.output + deploy.output + result.output}
    async for execution in stack_client.list_workflows(f'WorkflowId = "deploy-aks-{sample}"'):
        history = await stack_client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        texts[f"history {execution.run_id}"] = readable_text(history)
    for where, text in texts.items():
        assert arm.client_secret not in text and token not in text, f"a credential in {where}"
        assert not JWT.search(text), f"a JWT in {where}"
