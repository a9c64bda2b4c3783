"""ACR Tasks runs for a requested platform, and ACR's data-plane token exchange, through the real SDKs and the imitation.

Runs really build on the local Docker engine (arm64 under QEMU user emulation) and push to the local registry, so the
manifests and configs checked here are the registry's own. The arm64 build with a RUN step needs the multi-platform
base image `127.0.0.1:5000/pipeline-base:bookworm` (an OCI index with linux/arm64) and is skipped, saying so, without it.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models

from bootstrap.azure_arm import Imitation, acr_auth
from bootstrap.azure_arm.arm.providers.registries import registry_id
from bootstrap.azure_arm.identity import TokenClaims
from bootstrap.azure_arm.state import IdentitySeed, RoleAssignmentSeed, Seed
from tests.helpers.azure import Clients

BASE = "127.0.0.1:5000/pipeline-base:bookworm"
REGISTRY = "http://127.0.0.1:5000"
INDEX_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
TERMINAL = {"Succeeded", "Failed", "Canceled", "Error", "Timeout"}
EXCHANGE_SCOPE = "https://management.core.windows.net/.default"  # what azure-containerregistry's exchange client asks for
DOCKERFILE = f"FROM {BASE}\nRUN uname -m > /arch\n"
SCRATCH_DOCKERFILE = "FROM scratch\nCOPY Dockerfile /\n"


# -- helpers ---------------------------------------------------------------


def _registry_get(path: str, accept: str) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"{REGISTRY}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


def _context(dockerfile: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _schedule(arm: Imitation, clients: Clients, image: str, dockerfile: str = DOCKERFILE, **platform: str) -> Any:
    upload = clients.acr.registries.get_build_source_upload_url(arm.resource_group, arm.registry_name)
    put = requests.put(
        upload.upload_url,
        data=_context(dockerfile),
        headers={"x-ms-blob-type": "BlockBlob"},
        verify=str(arm.ca_bundle),
        timeout=30,
    )
    assert put.status_code == 201, put.text
    request = acr_models.DockerBuildRequest(
        source_location=upload.relative_path,
        docker_file_path="Dockerfile",
        image_names=[image],
        is_push_enabled=True,
        no_cache=True,
        platform=acr_models.PlatformProperties(**platform),
        timeout=900,
    )
    return clients.acr.registries.schedule_run(arm.resource_group, arm.registry_name, request)


def _wait(arm: Imitation, clients: Clients, run_id: str, *, timeout: float = 420) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = clients.acr.runs.get(arm.resource_group, arm.registry_name, run_id)
        if run.status in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {timeout:.0f}s"
        time.sleep(1)


def _log(arm: Imitation, clients: Clients, run_id: str) -> str:
    """The whole run log: read once its blob says `Complete` (the last lines come after the run turned terminal)."""
    link = clients.acr.runs.get_log_sas_url(arm.resource_group, arm.registry_name, run_id).log_link
    deadline = time.monotonic() + 30
    while "x-ms-meta-Complete" not in (response := requests.get(link, verify=str(arm.ca_bundle), timeout=30)).headers:
        assert time.monotonic() < deadline, f"the log of run {run_id} has no Complete mark after 30s"
        time.sleep(0.2)
    return response.text


def _pushed_image(output: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The registry's manifest behind a run's output image digest, and its config."""
    body, headers = _registry_get(f"/v2/{output.repository}/manifests/{output.digest}", MANIFEST_TYPES)
    assert headers["Docker-Content-Digest"] == output.digest
    manifest = json.loads(body)
    config, _ = _registry_get(f"/v2/{output.repository}/blobs/{manifest['config']['digest']}", "*/*")
    return manifest, json.loads(config)


def _file_in_last_layer(repository: str, manifest: dict[str, Any], name: str) -> str:
    layer, _ = _registry_get(f"/v2/{repository}/blobs/{manifest['layers'][-1]['digest']}", "*/*")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read().decode().strip()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _aad_token(arm: Imitation, client_id: str, secret: str) -> str:
    credential = ClientSecretCredential(
        arm.tenant_id,
        client_id,
        secret,
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )
    return credential.get_token(EXCHANGE_SCOPE).token


def _exchange(arm: Imitation, access_token: str, *, service: str | None = None) -> requests.Response:
    return requests.post(
        f"{arm.endpoint}/oauth2/exchange?api-version=2021-07-01",
        data={
            "grant_type": "access_token",
            "service": service or arm.login_server,
            "tenant": arm.tenant_id,
            "access_token": access_token,
        },
        verify=str(arm.ca_bundle),
        timeout=30,
    )


def _token(arm: Imitation, refresh_token: str, scope: str, *, service: str | None = None) -> requests.Response:
    return requests.post(
        f"{arm.endpoint}/oauth2/token?api-version=2021-07-01",
        data={
            "grant_type": "refresh_token",
            "service": service or arm.login_server,
            "scope": scope,
            "refresh_token": refresh_token,
        },
        verify=str(arm.ca_bundle),
        timeout=30,
    )


def _unauthorized(response: requests.Response) -> str:
    assert response.status_code == 401, response.text
    [error] = response.json()["errors"]
    assert error["code"] == "UNAUTHORIZED"
    return str(error["message"])


# -- fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def arm64_base() -> str:
    """The multi-platform base image's index in the local registry, with a linux/arm64 manifest; else skip."""
    try:
        body, _ = _registry_get("/v2/pipeline-base/manifests/bookworm", INDEX_TYPES)
        index = json.loads(body)
    except (OSError, ValueError) as exc:
        pytest.skip(f"{BASE} is not in the local registry ({exc}): the arm64 base comes with the stack's arm64 support")
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index.get("manifests", []) if "platform" in m}
    if "linux/arm64" not in platforms:
        pytest.skip(f"{BASE} is not a multi-platform index with linux/arm64 (platforms: {sorted(platforms) or 'none'})")
    return BASE


@pytest.fixture
def clients(arm: Imitation) -> Clients:
    return Clients(arm)


# -- runs for a platform -------------------------------------------------------


def test_arm64_run_builds_and_pushes_an_arm64_image(arm: Imitation, clients: Clients, arm64_base: str) -> None:
    tag = f"arm64-{uuid.uuid4().hex[:8]}"
    queued = _schedule(arm, clients, f"platforms/probe:{tag}", os="Linux", architecture="arm64")
    assert queued.platform.os == "Linux" and queued.platform.architecture == "arm64"
    run = _wait(arm, clients, queued.run_id)
    log = _log(arm, clients, queued.run_id)
    assert run.status == "Succeeded", log[-3000:]
    assert run.platform.os == "Linux" and run.platform.architecture == "arm64" and run.platform.variant is None
    assert "Launching container with name: build (docker build --platform linux/arm64 -f Dockerfile" in log
    [output] = run.output_images
    assert (output.registry, output.repository, output.tag) == (arm.login_server, "platforms/probe", tag)
    manifest, config = _pushed_image(output)
    assert "index" not in str(manifest.get("mediaType", "")) and "list" not in str(manifest.get("mediaType", ""))
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert _file_in_last_layer("platforms/probe", manifest, "arch") == "aarch64"  # RUN really ran as arm64


@pytest.mark.parametrize("base", ["scratch", "multi-platform base"])
def test_runs_for_two_platforms_of_one_repository_in_parallel(
    arm: Imitation, clients: Clients, base: str, request: pytest.FixtureRequest
) -> None:
    """FROM scratch (no base image, no emulated RUN: the engine sets the config's platform), and FROM the
    multi-platform base with a RUN (each build starts from its own platform's base, at the same time)."""
    dockerfile = SCRATCH_DOCKERFILE if base == "scratch" else DOCKERFILE
    if base != "scratch":
        request.getfixturevalue("arm64_base")
    suffix = uuid.uuid4().hex[:8]
    wanted = {"amd64": f"amd64-{suffix}", "arm64": f"arm64-{suffix}"}
    scheduled = {
        arch: _schedule(arm, clients, f"platforms/pair:{tag}", dockerfile, os="linux", architecture=arch)
        for arch, tag in wanted.items()  # os spelled as `az acr build --platform linux/arm64` may send it
    }
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(scheduled, pool.map(lambda r: _wait(arm, clients, r.run_id), scheduled.values()), strict=True))
    digests = set()
    for arch, run in runs.items():
        assert run.status == "Succeeded", _log(arm, clients, run.run_id)[-3000:]
        assert run.platform.os == "Linux" and run.platform.architecture == arch  # ACR's spelling of the os
        [output] = run.output_images
        assert output.tag == wanted[arch]
        manifest, config = _pushed_image(output)
        assert (config["os"], config["architecture"]) == ("linux", arch)
        assert "docker build --platform linux/" + arch in _log(arm, clients, run.run_id)
        if base != "scratch":
            assert _file_in_last_layer("platforms/pair", manifest, "arch") == {"amd64": "x86_64", "arm64": "aarch64"}[arch]
        digests.add(output.digest)
    assert len(digests) == 2


@pytest.mark.parametrize(
    ("platform", "field"),
    [
        ({"os": "Linux", "architecture": "sparc"}, "platform.architecture"),
        ({"os": "Plan9", "architecture": "amd64"}, "platform.os"),
        ({"os": "Linux", "architecture": "arm", "variant": "v9"}, "platform.variant"),
    ],
)
def test_a_platform_acr_does_not_know_is_400(arm: Imitation, clients: Clients, platform: dict[str, str], field: str) -> None:
    upload = clients.acr.registries.get_build_source_upload_url(arm.resource_group, arm.registry_name)
    request = acr_models.DockerBuildRequest(
        source_location=upload.relative_path,
        docker_file_path="Dockerfile",
        image_names=["platforms/never:latest"],
        platform=acr_models.PlatformProperties(**platform),
    )
    with pytest.raises(HttpResponseError) as raised:
        clients.acr.registries.schedule_run(arm.resource_group, arm.registry_name, request)
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "InvalidParameter"
    assert field in str(raised.value.error.message)


# -- the data-plane token exchange ----------------------------------------------


def test_exchange_gives_the_seeded_principal_a_refresh_token_and_scoped_access(arm: Imitation) -> None:
    exchanged = _exchange(arm, _aad_token(arm, arm.client_id, arm.client_secret))
    assert exchanged.status_code == 200, exchanged.text
    refresh_token = exchanged.json()["refresh_token"]
    refresh = _claims(refresh_token)
    assert refresh["iss"] == "Azure Container Registry" and refresh["aud"] == arm.login_server
    assert refresh["grant_type"] == "refresh_token" and refresh["tenant"] == arm.tenant_id
    assert refresh["permissions"]["actions"] == ["*"] and refresh["exp"] > time.time() + 3600

    token = _token(arm, refresh_token, "repository:platforms/probe:pull,push")
    assert token.status_code == 200, token.text
    access = _claims(token.json()["access_token"])
    assert access["aud"] == arm.login_server and access["sub"] == refresh["sub"]
    assert access["access"] == [{"type": "repository", "name": "platforms/probe", "actions": ["pull", "push"]}]


def test_exchange_refuses_a_principal_without_a_registry_role(arm: Imitation) -> None:
    client_id, secret = arm.no_access_client
    message = _unauthorized(_exchange(arm, _aad_token(arm, client_id, secret)))
    assert client_id in message


def test_exchange_refuses_a_wrong_service_bad_token_and_misused_tokens(arm: Imitation) -> None:
    aad = _aad_token(arm, arm.client_id, arm.client_secret)
    assert "other.azurecr.io" in _unauthorized(_exchange(arm, aad, service="other.azurecr.io"))
    _unauthorized(_exchange(arm, aad[:-4] + "AAAA"))  # signature does not verify
    refresh_token = _exchange(arm, aad).json()["refresh_token"]
    _unauthorized(_exchange(arm, refresh_token))  # an ACR token is no Entra ID token
    _unauthorized(_token(arm, refresh_token, "repository:platforms/probe:pull", service="other.azurecr.io"))
    _unauthorized(_token(arm, aad, "repository:platforms/probe:pull"))  # an Entra ID token is no refresh token
    arm_call = requests.get(  # nor is an ACR token an ARM token
        f"{arm.endpoint}/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}?api-version=2025-04-01",
        headers={"Authorization": f"Bearer {refresh_token}"},
        verify=str(arm.ca_bundle),
        timeout=30,
    )
    assert arm_call.status_code == 401 and arm_call.json()["error"]["code"] == "InvalidAuthenticationToken"


LEGACY, ABAC = "LegacyRegistryPermissions", "AbacRepositoryPermissions"


@pytest.mark.parametrize(
    ("role", "scope_of", "mode", "expected"),
    [
        ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "registry", LEGACY, {"pull"}),  # AcrPull
        ("8311e382-0749-4cb8-b61a-304f252e45ec", "registry", LEGACY, {"pull", "push"}),  # AcrPush
        ("2a1e307c-b015-4ebd-883e-5b7698a07328", "registry", ABAC, {"pull", "push"}),  # Container Registry Repository Writer
        ("b93aa761-3e63-49ed-ac28-beffa264f7ac", "registry", ABAC, {"pull"}),  # Container Registry Repository Reader
        ("2a1e307c-b015-4ebd-883e-5b7698a07328", "registry", LEGACY, set()),  # ... not honoured in the legacy mode
        ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "registry", ABAC, set()),  # AcrPull: not honoured in the ABAC mode
        ("8311e382-0749-4cb8-b61a-304f252e45ec", "registry", ABAC, set()),  # AcrPush: neither
        ("b24988ac-6180-42a0-ab88-20f7382dd24c", "group", LEGACY, {"pull", "push", "delete"}),  # Contributor, on the group
        ("b24988ac-6180-42a0-ab88-20f7382dd24c", "group", ABAC, set()),  # Contributor has no dataActions
        ("fb382eab-e894-4461-af04-94435c366c3f", "registry", LEGACY, set()),  # Container Registry Tasks Contributor: no push
        ("8311e382-0749-4cb8-b61a-304f252e45ec", "elsewhere", LEGACY, set()),  # AcrPush on another group
    ],
)
def test_an_identitys_role_assignments_decide_its_registry_permissions(
    role: str, scope_of: str, mode: str, expected: set[str]
) -> None:
    """What the exchange grants a user-assigned identity (acr_auth's permissions and scopes), from its role
    assignments and the registry's roleAssignmentMode."""
    seed = Seed.default(login_server="127.0.0.1:5000")
    managed = IdentitySeed("pusher", seed.location, seed.resource_group)
    seed.identities.append(managed)
    registry = seed.registries[0]
    registry.role_assignment_mode = mode
    scope = {
        "registry": registry_id(seed, registry),
        "group": f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.resource_group}",
        "elsewhere": f"/subscriptions/{seed.subscription_id}/resourceGroups/other-rg",
    }[scope_of]
    seed.role_assignments.append(
        RoleAssignmentSeed(
            str(uuid.uuid4()),
            scope,
            f"/subscriptions/{seed.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            managed.principal_id,
            "ServicePrincipal",
            "2026-01-01T00:00:00Z",
            "test",
        )
    )
    claims = TokenClaims("https://management.azure.com/", managed.client_id, managed.principal_id, seed.tenant_id, 0)
    allowed = acr_auth._docker_actions(acr_auth._permissions(seed, claims, [registry]))
    assert allowed == expected
    access = acr_auth._scope_access("repository:samples/app:pull,push", allowed)
    assert access is not None and set(access["actions"]) == {"pull", "push"} & expected
