"""The ARM imitation, driven by the real azure-identity, azure-mgmt-containerregistry and azure-mgmt-containerservice.

No mocks: every call below crosses HTTPS to `python -m bootstrap.azure_arm serve`,
builds really run on the local Docker engine and push to the local registry,
and the kubeconfig really lists the local cluster's namespaces.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models
from azure.mgmt.containerservice import ContainerServiceClient

from bootstrap.azure_arm import Imitation, start
from tests.helpers.azure import AKS_SCOPE, ARM_SCOPE, TASKS_API_VERSION

TERMINAL = {"Succeeded", "Failed", "Canceled", "Error", "Timeout"}
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def acr_client(arm: Imitation, credential: Any, **kwargs: Any) -> ContainerRegistryManagementClient:
    return ContainerRegistryManagementClient(
        credential,
        arm.subscription_id,
        base_url=arm.endpoint,
        api_version=TASKS_API_VERSION,  # 14.x defaults registries to 2025-04-01, which has no ACR Tasks
        connection_verify=str(arm.ca_bundle),
        **kwargs,
    )


def aks_client(arm: Imitation, credential: Any, **kwargs: Any) -> ContainerServiceClient:
    return ContainerServiceClient(
        credential, arm.subscription_id, base_url=arm.endpoint, connection_verify=str(arm.ca_bundle), **kwargs
    )


def context_archive(dockerfile: str, **files: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in {"Dockerfile": dockerfile, **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def schedule_build(
    arm: Imitation, client: ContainerRegistryManagementClient, archive: bytes, *, image: str, **request: Any
) -> Any:
    upload = client.registries.get_build_source_upload_url(arm.resource_group, arm.registry_name)
    put = requests.put(
        upload.upload_url, data=archive, headers={"x-ms-blob-type": "BlockBlob"}, verify=str(arm.ca_bundle), timeout=30
    )
    assert put.status_code == 201, put.text
    build = acr_models.DockerBuildRequest(
        source_location=upload.relative_path,
        docker_file_path="Dockerfile",
        image_names=[image],
        is_push_enabled=True,
        platform=acr_models.PlatformProperties(os="Linux", architecture="amd64"),
        timeout=600,
        **request,
    )
    return client.registries.schedule_run(arm.resource_group, arm.registry_name, build)


def wait_for_run(arm: Imitation, client: ContainerRegistryManagementClient, run_id: str, *, timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        run = client.runs.get(arm.resource_group, arm.registry_name, run_id)
        if not seen or seen[-1] != run.status:
            seen.append(run.status)
        if run.status in TERMINAL:
            run.seen_statuses = seen
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {timeout:.0f}s"
        time.sleep(0.3)


def fetch_log(arm: Imitation, client: ContainerRegistryManagementClient, run_id: str) -> str:
    """The run log read the way a follower reads it: once its blob metadata says `Complete` (as `az acr` waits for),
    Range requests from the last offset on, until 416."""
    link = client.runs.get_log_sas_url(arm.resource_group, arm.registry_name, run_id).log_link
    deadline = time.monotonic() + 30
    while "x-ms-meta-Complete" not in requests.head(link, verify=str(arm.ca_bundle), timeout=10).headers:
        assert time.monotonic() < deadline, f"the log of run {run_id} has no Complete mark after 30s"
        time.sleep(0.2)
    text, offset = b"", 0
    while True:
        response = requests.get(link, headers={"Range": f"bytes={offset}-"}, verify=str(arm.ca_bundle), timeout=10)
        if response.status_code == 416:
            return text.decode()
        assert response.status_code == 206, response.text
        assert response.headers["Content-Range"].startswith(f"bytes {offset}-")
        text += response.content
        offset += len(response.content)


def registry_digest(repository: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Docker-Content-Digest"])


def error_code(exc: HttpResponseError) -> str:
    assert exc.error is not None, exc
    return str(exc.error.code)


def count_delta(arm: Imitation, operation: str) -> Callable[[], int]:
    before = arm.count(operation)
    return lambda: arm.count(operation) - before


# -- identity ------------------------------------------------------------


def test_default_azure_credential_from_environment_gets_an_arm_token(arm_env: dict[str, str]) -> None:
    credential = DefaultAzureCredential(disable_instance_discovery=True)
    token = credential.get_token(ARM_SCOPE)
    assert token.expires_on > time.time() + 3000
    claims = json.loads(base64.urlsafe_b64decode(token.token.split(".")[1] + "=="))
    assert claims["aud"] == "https://management.azure.com/" and claims["appid"] == arm_env["AZURE_CLIENT_ID"]


def test_wrong_client_secret_is_invalid_client(arm: Imitation) -> None:
    credential = ClientSecretCredential(
        arm.tenant_id,
        arm.client_id,
        "not-the-secret",
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(ARM_SCOPE)
    with pytest.raises(ClientAuthenticationError, match="invalid_client|AADSTS7000215"):
        acr_client(arm, credential).registries.get(arm.resource_group, arm.registry_name)


# -- registries ----------------------------------------------------------


def test_registries_get_and_list_credentials(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    headers: dict[str, str] = {}
    client = ContainerRegistryManagementClient(
        arm_credential, arm.subscription_id, base_url=arm.endpoint, connection_verify=str(arm.ca_bundle)
    )
    registry = client.registries.get(
        arm.resource_group, arm.registry_name.upper(), raw_response_hook=lambda r: headers.update(r.http_response.headers)
    )
    assert registry.name == arm.registry_name and registry.login_server == "127.0.0.1:5000" == arm.login_server
    assert registry.provisioning_state == "Succeeded" and registry.sku.name == "Standard"
    assert headers["x-ms-request-id"] and headers["x-ms-correlation-request-id"]
    credentials = client.registries.list_credentials(arm.resource_group, arm.registry_name)
    assert credentials.username == arm.registry_name and [p.name for p in credentials.passwords] == ["password", "password2"]


def test_build_pushes_to_the_local_registry_and_logs(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    tag = uuid.uuid4().hex[:10]
    scheduled = count_delta(arm, "Registries_ScheduleRun")
    run = schedule_build(
        arm,
        client,
        context_archive(f'FROM {arm.login_server}/pipeline-base:bookworm\nARG GREETING\nRUN echo "hi $GREETING" # {tag}\n'),
        image=f"arm-imitation-test:{tag}",
        arguments=[acr_models.Argument(name="GREETING", value="from-acr-imitation")],
    )
    assert run.status == "Queued" and run.run_id.startswith("c") and run.run_type == "QuickBuild"
    done = wait_for_run(arm, client, run.run_id)
    assert done.status == "Succeeded", fetch_log(arm, client, run.run_id)
    assert "Running" in done.seen_statuses or done.seen_statuses[0] == "Succeeded"
    assert done.start_time and done.finish_time and done.finish_time >= done.start_time
    [image] = done.output_images
    assert (image.registry, image.repository, image.tag) == ("127.0.0.1:5000", "arm-imitation-test", tag)
    assert image.digest == registry_digest("arm-imitation-test", tag)
    log = fetch_log(arm, client, run.run_id)
    assert "hi from-acr-imitation" in log and "*****" not in log and f"Run ID: {run.run_id} was successful" in log
    assert scheduled() == 1
    listed = list(client.runs.list(arm.resource_group, arm.registry_name, filter=f"RunId eq '{run.run_id}'"))
    assert [r.run_id for r in listed] == [run.run_id] and listed[0].status == "Succeeded"


def test_failing_build_ends_failed_with_the_error_in_the_log(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    run = schedule_build(
        arm,
        client,
        context_archive(f"FROM {arm.login_server}/pipeline-base:bookworm\nRUN echo about-to-fail && exit 3\n"),
        image="arm-imitation-test:fails",
    )
    done = wait_for_run(arm, client, run.run_id)
    assert done.status == "Failed" and not done.output_images
    log = fetch_log(arm, client, run.run_id)
    assert "about-to-fail" in log and "returned a non-zero code: 3" in log
    assert f"Run ID: {run.run_id} failed after" in log


def test_injected_run_failure_and_cancel(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    archive = context_archive(f"FROM {arm.login_server}/pipeline-base:bookworm\n")
    arm.inject(kind="failRun", message="agent lost: injected by the test")
    failed = wait_for_run(arm, client, schedule_build(arm, client, archive, image="arm-imitation-test:injected").run_id)
    assert failed.status == "Failed" and "injected by the test" in (failed.run_error_message or "")
    assert "agent lost: injected by the test" in fetch_log(arm, client, failed.run_id)

    arm.inject(kind="runDelay", seconds=30)
    slow = schedule_build(arm, client, archive, image="arm-imitation-test:canceled")
    client.runs.cancel(arm.resource_group, arm.registry_name, slow.run_id)
    assert wait_for_run(arm, client, slow.run_id, timeout=10).status == "Canceled"

    arm.inject(kind="runDelay", seconds=30)
    arm.inject(kind="runTimeout", seconds=1)
    timed_out = wait_for_run(
        arm, client, schedule_build(arm, client, archive, image="arm-imitation-test:timeout").run_id, timeout=10
    )
    assert timed_out.status == "Timeout" and "timeout of 1 seconds" in (timed_out.run_error_message or "")


def test_runs_survive_a_restart(arm: Imitation, arm_credential: ClientSecretCredential, tmp_path: Path) -> None:
    client = acr_client(arm, arm_credential)
    [latest] = list(client.runs.list(arm.resource_group, arm.registry_name, top=1))
    copy = tmp_path / "restarted"
    shutil.copytree(arm.state_dir, copy, ignore=shutil.ignore_patterns("endpoint", "blobs"))
    restarted = start(copy)
    try:
        credential = ClientSecretCredential(
            restarted.tenant_id, restarted.client_id, restarted.client_secret, authority=restarted.endpoint,
            disable_instance_discovery=True, connection_verify=str(restarted.ca_bundle),
        )  # fmt: skip
        again = acr_client(restarted, credential).runs.get(restarted.resource_group, restarted.registry_name, latest.run_id)
        assert (again.run_id, again.status, again.output_images) == (latest.run_id, latest.status, latest.output_images)
    finally:
        restarted.stop()


def test_upload_url_checks_its_signature(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    upload = acr_client(arm, arm_credential).registries.get_build_source_upload_url(arm.resource_group, arm.registry_name)
    tampered = upload.upload_url.replace("sp=cw", "sp=rcw")
    response = requests.put(tampered, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 403 and response.headers["x-ms-error-code"] == "AuthenticationFailed"
    response = requests.put(upload.upload_url, data=b"x", verify=str(arm.ca_bundle), timeout=10)
    assert response.status_code == 400 and response.headers["x-ms-error-code"] == "MissingRequiredHeader"


# -- managed clusters ----------------------------------------------------


def _list_namespaces(kubeconfig: dict[str, Any]) -> list[str]:
    from kubernetes import client as k8s, config as k8s_config

    api = k8s_config.new_client_from_config_dict(kubeconfig)  # type: ignore[no-untyped-call]
    try:
        return [str(ns.metadata.name) for ns in k8s.CoreV1Api(api).list_namespace().items if ns.metadata]
    finally:
        api.close()


def test_cluster_user_credentials_reach_the_local_cluster(
    arm: Imitation, arm_credential: ClientSecretCredential, arm_kubeconfig: Path | None
) -> None:
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")
    client = aks_client(arm, arm_credential)
    cluster = client.managed_clusters.get(arm.resource_group, arm.cluster_name)
    assert cluster.provisioning_state == "Succeeded" and cluster.aad_profile is None
    [credential] = client.managed_clusters.list_cluster_user_credentials(arm.resource_group, arm.cluster_name).kubeconfigs or []
    assert (
        credential.value is not None and credential.name == "clusterUser" and isinstance(credential.value, bytes)
    )  # the SDK already base64-decoded it
    assert "default" in _list_namespaces(yaml.safe_load(credential.value))


def test_aad_cluster_kubeconfig_works_with_an_azure_identity_token(
    arm: Imitation, arm_credential: ClientSecretCredential, arm_kubeconfig: Path | None
) -> None:
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")
    client = aks_client(arm, arm_credential)
    assert client.managed_clusters.get(arm.resource_group, arm.aad_cluster_name).aad_profile.managed is True
    [credential] = (
        client.managed_clusters.list_cluster_user_credentials(arm.resource_group, arm.aad_cluster_name).kubeconfigs or []
    )
    assert credential.value is not None
    kubeconfig = yaml.safe_load(credential.value)
    [user] = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "kubelogin"
    user["user"] = {"token": arm_credential.get_token(AKS_SCOPE).token}
    assert "default" in _list_namespaces(kubeconfig)


# -- errors the pipeline must handle --------------------------------------


def test_no_token_bad_token_and_expired_token_are_401(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    url = (
        f"{arm.endpoint}/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{arm.registry_name}?api-version=2025-11-01"
    )
    missing = requests.get(url, verify=str(arm.ca_bundle), timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    bogus = requests.get(url, headers={"Authorization": "Bearer not-a-token"}, verify=str(arm.ca_bundle), timeout=10)
    assert bogus.status_code == 401 and bogus.json()["error"]["code"] == "InvalidAuthenticationToken"
    aks_token = arm_credential.get_token(AKS_SCOPE).token
    wrong_audience = requests.get(url, headers={"Authorization": f"Bearer {aks_token}"}, verify=str(arm.ca_bundle), timeout=10)
    assert wrong_audience.status_code == 401

    arm.inject(kind="expiredToken")
    fresh = ClientSecretCredential(
        arm.tenant_id,
        arm.client_id,
        arm.client_secret,
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )
    with pytest.raises(ClientAuthenticationError) as raised:
        acr_client(arm, fresh).registries.get(arm.resource_group, arm.registry_name)
    assert raised.value.status_code == 401 and error_code(raised.value) == "ExpiredAuthenticationToken"


def test_principal_without_role_is_403(arm: Imitation) -> None:
    client_id, secret = arm.no_access_client
    credential = ClientSecretCredential(
        arm.tenant_id,
        client_id,
        secret,
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )
    with pytest.raises(HttpResponseError) as raised:
        aks_client(arm, credential).managed_clusters.list_cluster_user_credentials(arm.resource_group, arm.cluster_name)
    assert raised.value.status_code == 403 and error_code(raised.value) == "AuthorizationFailed"
    assert "listClusterUserCredential/action" in str(raised.value)


def test_unknown_registry_resource_group_and_api_version(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    with pytest.raises(ResourceNotFoundError) as raised:
        client.registries.get(arm.resource_group, "nosuchregistry")
    assert error_code(raised.value) == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as raised:
        client.registries.get("no-such-group", arm.registry_name)
    assert error_code(raised.value) == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as raised:
        client.runs.get(arm.resource_group, arm.registry_name, "cz999")
    stable = ContainerRegistryManagementClient(
        arm_credential, str(uuid.uuid4()), base_url=arm.endpoint, connection_verify=str(arm.ca_bundle)
    )
    with pytest.raises(ResourceNotFoundError) as raised:
        stable.registries.get(arm.resource_group, arm.registry_name)
    assert error_code(raised.value) == "SubscriptionNotFound"
    runs_url = (
        f"{arm.endpoint}/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{arm.registry_name}/runs?api-version=2025-04-01"
    )  # the SDK itself refuses: 14.x's 2025-04-01 has no operation group 'runs'
    token = arm_credential.get_token(ARM_SCOPE).token
    wrong_version = requests.get(runs_url, headers={"Authorization": f"Bearer {token}"}, verify=str(arm.ca_bundle), timeout=10)
    assert wrong_version.status_code == 400 and wrong_version.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_429_with_retry_after_is_retried_by_the_sdk(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    client.registries.get(arm.resource_group, arm.registry_name)  # token fetched before timing
    requests_seen = count_delta(arm, "Registries_Get")
    arm.inject(operation="Registries_Get", status=429, count=2, retryAfter=1)
    started = time.monotonic()
    assert client.registries.get(arm.resource_group, arm.registry_name).name == arm.registry_name
    assert requests_seen() == 3
    assert time.monotonic() - started >= 2.0  # Retry-After: 1 honoured twice


def test_500_burst_is_retried_by_the_sdk_even_for_post(
    arm: Imitation, arm_credential: ClientSecretCredential, arm_kubeconfig: Path | None
) -> None:
    client = aks_client(arm, arm_credential, retry_backoff_factor=0.1)
    get_seen = count_delta(arm, "ManagedClusters_Get")
    arm.inject(operation="ManagedClusters_Get", status=500, count=3)
    assert client.managed_clusters.get(arm.resource_group, arm.cluster_name).name == arm.cluster_name
    assert get_seen() == 4
    if arm_kubeconfig is not None:
        post_seen = count_delta(arm, "ManagedClusters_ListClusterUserCredentials")
        arm.inject(operation="ManagedClusters_ListClusterUserCredentials", status=500, count=2)
        assert client.managed_clusters.list_cluster_user_credentials(arm.resource_group, arm.cluster_name).kubeconfigs
        assert post_seen() == 3
