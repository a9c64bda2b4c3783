"""AKS access through the real azure-mgmt-containerservice against the imitation, reaching the real local cluster.

The last test is the whole `aks` target: DeploymentWorkflow on the session's
Temporal dev server, the image built by ACR Tasks, the kubeconfig from the
AKS API, the sample worker rolled out to the local cluster and verified polling.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from bootstrap.azure_arm import Imitation
from pipeline import activities, deployments, kube
from pipeline.azure import aks
from pipeline.config import load_config, to_toml
from pipeline.inputs import deploy_request
from pipeline.models import ClusterRef, ReadRevisionInput
from pipeline.readiness import PollingGate
from pipeline.worker import build_worker
from tests.azure.pipeline_support import REPO_ROOT, azure_env, cluster_ref  # noqa: F401  (azure_env is a fixture)
from tests.helpers.source import ship_request

pytestmark = pytest.mark.usefixtures("azure_env")


@pytest.fixture(autouse=True)
def local_cluster(arm_kubeconfig: Path | None) -> None:
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")


def kubeconfig_token(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["users"][0]["user"]["token"])


def namespaces(kc: kube.KubeClient) -> list[str]:
    return [ns.metadata.name for ns in kc.core.list_namespace().items]


@pytest.fixture(autouse=True)
def _fresh_kubeconfigs() -> None:
    aks.forget_kubeconfigs()  # each test counts its own ARM calls


def test_user_credentials_give_a_kubeconfig_that_reaches_the_cluster(arm: Imitation) -> None:
    before = arm.count("ManagedClusters_ListClusterUserCredentials")
    with aks.connect(cluster_ref(arm)) as kc:
        assert "default" in namespaces(kc)
    assert arm.count("ManagedClusters_ListClusterUserCredentials") == before + 1


def test_the_kubeconfig_is_kept_and_concurrent_callers_share_one_fetch(arm: Imitation) -> None:
    """listClusterUserCredential is an ARM write (the smallest bucket): twenty activities at once cost one."""
    before = arm.count("ManagedClusters_ListClusterUserCredentials")
    with ThreadPoolExecutor(max_workers=20) as pool:
        fetched = list(pool.map(lambda _: aks.fetch_kubeconfig(cluster_ref(arm)), range(20)))
    assert len(set(fetched)) == 1 and arm.count("ManagedClusters_ListClusterUserCredentials") == before + 1
    aks.forget_kubeconfigs()
    aks.fetch_kubeconfig(cluster_ref(arm))
    assert arm.count("ManagedClusters_ListClusterUserCredentials") == before + 2


def test_admin_credentials_when_configured(arm: Imitation) -> None:
    before = arm.count("ManagedClusters_ListClusterAdminCredentials")
    with aks.connect(cluster_ref(arm, admin=True)) as kc:
        assert "default" in namespaces(kc)
    assert arm.count("ManagedClusters_ListClusterAdminCredentials") == before + 1


def test_kubeconfig_file_is_private_and_removed(arm: Imitation) -> None:
    with aks.kubeconfig_file(cluster_ref(arm)) as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert yaml.safe_load(Path(path).read_text())["users"][0]["user"]["token"]
    assert not os.path.exists(path)


def test_entra_id_cluster_kubelogin_is_replaced_by_an_azure_identity_token(arm: Imitation) -> None:
    ref = cluster_ref(arm, name=arm.aad_cluster_name)
    raw = aks.fetch_kubeconfig(ref)
    assert aks.uses_kubelogin(yaml.safe_load(raw)["users"][0]["user"])  # as AKS returns it
    doc, aad = aks.usable_kubeconfig(raw)
    assert aad and set(doc["users"][0]["user"]) == {"token"}
    tokens = arm.count("Token")
    with aks.connect(ref) as kc:
        assert "default" in namespaces(kc)
        assert "kube-system" in namespaces(kc)  # each request re-asks azure-identity (its cache answers)
        assert kc.api.configuration.refresh_api_key_hook is not None
    assert arm.count("Token") - tokens <= 1  # cached: no token request per API call


def test_cluster_activities_resolve_an_aks_cluster_ref(arm: Imitation) -> None:
    result = ActivityEnvironment().run(
        activities.read_revision,
        ReadRevisionInput(app=f"nothing-{uuid.uuid4().hex[:6]}", namespace="default", cluster=ClusterRef(aks=cluster_ref(arm))),
    )
    assert result.revision is None


async def test_deployment_workflow_to_aks_builds_with_acr_and_verifies_polling(
    arm: Imitation,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    arm_kubeconfig: Path,
) -> None:
    caplog.set_level("DEBUG")
    client: Client = temporal_env.client
    suffix = uuid.uuid4().hex[:6]
    app, namespace = f"aks-e2e-{suffix}", f"aks-e2e-{suffix}"
    pipeline_queue, app_queue = f"pipeline-aks-{suffix}", f"aks-e2e-{suffix}"
    config = {
        "target": "aks",
        "temporal": {"address": client.service_client.config.target_host, "namespace": client.namespace},
        "pipeline": {"task_queue": pipeline_queue, "default_app": app},
        "azure": {"subscription_id": arm.subscription_id, "resource_group": arm.resource_group, "endpoint": arm.endpoint},
        "acr": {"name": arm.registry_name, "login_server": arm.login_server, "image_pull_secret": "acr-pull"},
        "aks": {"cluster_name": arm.cluster_name},
        "kubernetes": {"namespace": namespace},
        "rollout": {"progress_deadline_seconds": 60, "verification_timeout_seconds": 40},
        "apps": {
            app: {
                "task_queue": app_queue,
                "replicas": 1,
                "build_context": str(REPO_ROOT),
                "dockerfile": "Dockerfile",
                "build_target": "sample-worker",
                "build_args": {"BASE_IMAGE": "pipeline-base:bookworm"},
            }
        },
    }
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    for key in [k for k in os.environ if k.startswith(("PIPELINE_", "TEMPORAL_", "K8S_"))] + ["KUBECONFIG"]:
        monkeypatch.delenv(key, raising=False)
    request = ship_request(deploy_request(load_config(path), None), REPO_ROOT)  # the source travels as the CLI sends it
    assert request.cluster.aks is not None and request.cluster.kubeconfig == ""  # AKS coordinates only, no kubeconfig
    scheduled = arm.count("Registries_ScheduleRun")
    try:
        with ThreadPoolExecutor(max_workers=32) as executor:
            # As `pipeline worker` runs them: the worker and, beside it, the readiness gate's controller.
            gate = PollingGate(client, connect=lambda: aks.connect(cluster_ref(arm)), namespace=namespace)
            async with build_worker(client, task_queue=pipeline_queue, executor=executor, grace_seconds=1), gate:
                handle = await deployments.start(client, request, task_queue=pipeline_queue)
                result = await handle.result()
        assert result.outcome == "succeeded", result.reason
        assert result.image.startswith(f"{arm.login_server}/{app}@sha256:")
        assert result.pollers and all(p.build_id for p in result.pollers)
        assert arm.count("Registries_ScheduleRun") == scheduled + 1
        history = json.dumps((await handle.fetch_history()).to_json_dict())
        cluster_token = kubeconfig_token(arm_kubeconfig)
        secrets = [arm.client_secret, cluster_token, *(p for r in arm.seed["registries"] for p in r["passwords"])]
        logs = "\n".join(r.getMessage() for r in caplog.records)
        assert "Run ID:" in logs  # the ACR run log did reach the activity logger
        assert not [s for s in secrets if s in history or s in logs]  # no secret, token or password in history or logs
        with aks.connect(cluster_ref(arm)) as kc:
            deployment = kube.get_deployment(kc, namespace=namespace, name=app)
            assert deployment is not None
            assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "acr-pull"}]
            secret = kc.core.read_namespaced_secret("acr-pull", namespace)
            assert secret.type == "kubernetes.io/dockerconfigjson"
    finally:
        with aks.connect(cluster_ref(arm)) as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=namespace)
