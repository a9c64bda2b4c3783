"""The ARM imitation's creation operations, through the real SDKs, shaped after Microsoft's examples.

ResourceGroups_CreateOrUpdate/Get, Registries_Create (long-running),
ManagedClusters_CreateOrUpdate (long-running), RoleAssignments_Create/Get, the
`failOperation` and 409 faults, what ARM refuses, and that created resources
persist and work with the existing operations (ListCredentials, ScheduleRun's
upload URL, ListClusterUserCredential). Each test works in its own resource
group of the empty imitation (`nothing`).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerservice import models as aks_models

from bootstrap.azure_arm import Imitation, start
from tests.helpers.azure import Clients

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
# Microsoft's published examples (Azure/azure-rest-api-specs, MIT), copied unchanged: see examples/README.md.
EXAMPLES = Path(__file__).resolve().parent / "examples"


@pytest.fixture
def az(nothing: Imitation) -> Clients:
    return Clients(nothing)


@pytest.fixture
def group(az: Clients) -> str:
    name = f"rg-{uuid.uuid4().hex[:8]}"
    az.groups.create_or_update(name, {"location": "westeurope"})
    return name


def _cluster(*, oidc: bool = True, workload: bool = True, location: str = "westeurope") -> aks_models.ManagedCluster:
    return aks_models.ManagedCluster(
        location=location,
        identity=aks_models.ManagedClusterIdentity(type="SystemAssigned"),
        properties=aks_models.ManagedClusterProperties(
            dns_prefix="imitation",
            agent_pool_profiles=[
                aks_models.ManagedClusterAgentPoolProfile(name="nodepool1", count=1, vm_size="Standard_D2s_v3", mode="System")
            ],
            oidc_issuer_profile=aks_models.ManagedClusterOIDCIssuerProfile(enabled=oidc),
            security_profile=aks_models.ManagedClusterSecurityProfile(
                workload_identity=aks_models.ManagedClusterSecurityProfileWorkloadIdentity(enabled=workload)
            ),
        ),
    )


def test_resource_groups_are_created_once_and_never_moved(az: Clients) -> None:
    name = f"rg-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ResourceNotFoundError) as missing:
        az.groups.get(name)
    assert missing.value.error is not None and missing.value.error.code == "ResourceGroupNotFound"
    created = az.raw(
        "PUT", f"/subscriptions/{az.arm.subscription_id}/resourcegroups/{name}", "2025-04-01", {"location": "West Europe"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["properties"] == {"provisioningState": "Succeeded"} and created.json()["location"] == "westeurope"
    again = az.groups.create_or_update(name, {"location": "westeurope", "tags": {"team": "pipeline"}})
    assert again.tags == {"team": "pipeline"} and az.groups.get(name).location == "westeurope"
    with pytest.raises(HttpResponseError) as moved:
        az.groups.create_or_update(name, {"location": "eastus"})
    assert moved.value.status_code == 409 and moved.value.error is not None
    assert moved.value.error.code == "InvalidResourceGroupLocation"
    # An unknown region: ARM's own code for a group (a provider's is LocationNotAvailableForResourceType).
    with pytest.raises(HttpResponseError) as nowhere:
        az.groups.create_or_update(f"rg-{uuid.uuid4().hex[:8]}", {"location": "atlantis"})
    assert nowhere.value.status_code == 400 and nowhere.value.error is not None
    assert nowhere.value.error.code == "LocationNotAvailableForResourceGroup"


def test_registry_create_is_long_running_and_the_registry_works_with_the_existing_operations(az: Clients, group: str) -> None:
    example = json.loads((EXAMPLES / "2025-11-01" / "RegistryCreate.json").read_text())
    path = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/acr{uuid.uuid4().hex[:8]}"
    body = dict(example["parameters"]["registry"], location="westeurope")
    first = az.raw("PUT", path, "2025-11-01", body)
    assert first.status_code == 201, first.text
    assert first.json()["properties"]["provisioningState"] == "Creating"
    assert set(first.json()) == set(example["responses"]["201"]["body"]), "the 201 body is not shaped as Microsoft's example"
    status_url = first.headers["Azure-AsyncOperation"]
    assert "/operationStatuses/" in status_url and first.headers["Retry-After"] == "1"
    assert az.raw("GET", path, "2025-11-01").json()["properties"]["provisioningState"] == "Creating"
    status = requests.get(status_url, headers={"Authorization": f"Bearer {az.token}"}, verify=str(az.arm.ca_bundle), timeout=10)
    assert status.json()["status"] == "InProgress"
    deadline = time.monotonic() + 10
    while status.json()["status"] == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.3)
        status = requests.get(
            status_url, headers={"Authorization": f"Bearer {az.token}"}, verify=str(az.arm.ca_bundle), timeout=10
        )
    assert status.json()["status"] == "Succeeded", status.json()
    name = path.rsplit("/", 1)[1]
    registry = az.acr.registries.get(group, name)
    assert registry.provisioning_state == "Succeeded" and registry.login_server == "127.0.0.1:5000"
    assert registry.sku.name == "Standard" and registry.admin_user_enabled is True
    # The existing operations work on it, as on the seeded registry.
    assert [p.name for p in az.acr.registries.list_credentials(group, name).passwords or []] == ["password", "password2"]
    assert az.acr.registries.get_build_source_upload_url(group, name).upload_url
    # PUT again, same location: 200 Succeeded at once (an update); another location: ARM's InvalidResourceLocation.
    assert az.raw("PUT", path, "2025-11-01", body).status_code == 200
    with pytest.raises(HttpResponseError) as moved:
        az.acr.registries.begin_create(group, name, {"location": "eastus", "sku": {"name": "Standard"}}).result()
    assert moved.value.status_code == 400 and moved.value.error is not None
    assert moved.value.error.code == "InvalidResourceLocation"


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("ab-c", {"location": "westeurope", "sku": {"name": "Standard"}}, "InvalidParameter"),  # 5-50 letters/digits
        ("acrgoodname", {"location": "westeurope", "sku": {"name": "Gold"}}, "InvalidSku"),
        ("acrgoodname", {"location": "atlantis", "sku": {"name": "Basic"}}, "LocationNotAvailableForResourceType"),
        ("acrgoodname", {"sku": {"name": "Basic"}}, "LocationRequired"),
    ],
)
def test_registry_create_refuses_what_acr_refuses(az: Clients, group: str, name: str, body: dict[str, Any], code: str) -> None:
    with pytest.raises(HttpResponseError) as refused:
        az.acr.registries.begin_create(group, name, body).result()
    assert refused.value.status_code == 400 and refused.value.error is not None and refused.value.error.code == code


def test_registry_create_in_a_missing_group_is_resource_group_not_found(az: Clients) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        az.acr.registries.begin_create("no-such-group", "acrnogroup1", {"location": "westeurope", "sku": {"name": "Basic"}})
    assert missing.value.error is not None and missing.value.error.code == "ResourceGroupNotFound"


def test_cluster_create_is_long_running_and_echoes_oidc_workload_identity_and_kubelet_identity(
    az: Clients, group: str, arm_kubeconfig: Path | None
) -> None:
    before = az.arm.count("ManagedClusters_GetOperationStatus")
    poller = az.aks.begin_create_or_update(group, "aks1", _cluster())
    assert az.aks.get(group, "aks1").properties.provisioning_state == "Creating"  # type: ignore[union-attr]
    cluster = poller.result()
    props = cluster.properties
    assert props is not None and props.provisioning_state == "Succeeded"
    assert props.oidc_issuer_profile.enabled and props.oidc_issuer_profile.issuer_url.startswith("https://")  # type: ignore[union-attr]
    assert props.security_profile.workload_identity.enabled  # type: ignore[union-attr]
    kubelet = (props.identity_profile or {})["kubeletidentity"]
    assert uuid.UUID(str(kubelet.object_id)) and uuid.UUID(str(kubelet.client_id))
    assert az.arm.count("ManagedClusters_GetOperationStatus") > before  # the SDK polled the Azure-AsyncOperation URL
    if arm_kubeconfig is not None:  # its credentials are the local cluster's, as the seeded clusters'
        [entry] = az.aks.list_cluster_user_credentials(group, "aks1").kubeconfigs or []
        local = yaml.safe_load(arm_kubeconfig.read_text())
        assert (
            yaml.safe_load(bytes(entry.value or b""))["clusters"][0]["cluster"]["server"]
            == local["clusters"][0]["cluster"]["server"]
        )
    # Workload identity needs the OIDC issuer, as AKS says; and a cluster never moves.
    with pytest.raises(HttpResponseError) as refused:
        az.aks.begin_create_or_update(group, "aks2", _cluster(oidc=False, workload=True))
    assert refused.value.status_code == 400
    with pytest.raises(HttpResponseError) as moved:
        az.aks.begin_create_or_update(group, "aks1", _cluster(location="eastus"))
    assert moved.value.error is not None and moved.value.error.code == "InvalidResourceLocation"


def test_a_failed_cluster_operation_fails_the_poller_and_leaves_the_cluster_failed(az: Clients, group: str) -> None:
    az.arm.inject(
        kind="failOperation", operation="ManagedClusters_CreateOrUpdate", code="QuotaExceeded", message="Not enough vCPU quota."
    )
    poller = az.aks.begin_create_or_update(group, "doomed", _cluster())
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert failed.value.error is not None and failed.value.error.code == "QuotaExceeded"
    assert failed.value.error.message == "Not enough vCPU quota."
    assert az.aks.get(group, "doomed").properties.provisioning_state == "Failed"  # type: ignore[union-attr]


def test_an_injected_409_is_shaped_as_arm(az: Clients, group: str) -> None:
    az.arm.inject(operation="Registries_Create", status=409)
    with pytest.raises(HttpResponseError) as conflict:
        az.acr.registries.begin_create(group, "acrconflict1", {"location": "westeurope", "sku": {"name": "Basic"}})
    assert conflict.value.status_code == 409 and conflict.value.error is not None and conflict.value.error.code == "Conflict"
    with pytest.raises(ResourceNotFoundError):
        az.acr.registries.get(group, "acrconflict1")  # nothing was created


def test_role_assignments_are_idempotent_by_name_and_unique_by_principal_and_role(az: Clients, group: str) -> None:
    registry = az.acr.registries.begin_create(
        group, f"acr{uuid.uuid4().hex[:8]}", {"location": "westeurope", "sku": {"name": "Basic"}}
    ).result()
    cluster = az.aks.begin_create_or_update(group, "aks-roles", _cluster()).result()
    principal = str((cluster.properties.identity_profile or {})["kubeletidentity"].object_id)  # type: ignore[union-attr]
    scope, name = str(registry.id), str(uuid.uuid4())

    def params(role: str = ACR_PULL, who: str = principal) -> RoleAssignmentCreateParameters:
        return RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{az.arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=who,
            principal_type="ServicePrincipal",
        )

    with pytest.raises(ResourceNotFoundError):
        az.roles.get(scope, name)
    created = az.roles.create(scope, name, params())
    assert created.principal_id == principal and created.scope == scope and created.role_definition_id.endswith(ACR_PULL)
    assert az.roles.get(scope, name).principal_id == principal
    assert az.roles.create(scope, name, params()).name == name  # the same PUT again: fine
    for kwargs, status, code in [
        ({}, 409, "RoleAssignmentExists"),  # same principal and role, another name
        ({"role": ACR_PUSH, "name": name}, 400, "RoleAssignmentUpdateNotPermitted"),
        ({"who": str(uuid.uuid4())}, 400, "PrincipalNotFound"),
        ({"role": str(uuid.uuid4())}, 400, "RoleDefinitionDoesNotExist"),
        ({"name": "not-a-guid"}, 400, "InvalidRoleAssignmentId"),
    ]:
        other = str(kwargs.pop("name", uuid.uuid4()))
        with pytest.raises(HttpResponseError) as refused:
            az.roles.create(scope, other, params(**kwargs))
        assert (refused.value.status_code, refused.value.error.code if refused.value.error else None) == (status, code)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="arm-restart-") as directory:
        yield Path(directory)


def test_created_resources_survive_a_restart(scratch: Path, arm_kubeconfig: Path | None) -> None:
    first = start(scratch, kubeconfig=arm_kubeconfig, empty=True)
    try:
        assert "AZURE_REGISTRY_NAME" not in first.env and "AZURE_AKS_CLUSTER" not in first.env
        az = Clients(first)
        az.groups.create_or_update("kept", {"location": "westeurope"})
        az.acr.registries.begin_create("kept", "acrkept01", {"location": "westeurope", "sku": {"name": "Basic"}}).result()
    finally:
        first.stop()
    again = start(scratch, kubeconfig=arm_kubeconfig, empty=True)
    try:
        az = Clients(again)
        assert az.groups.get("kept").location == "westeurope"
        assert az.acr.registries.get("kept", "acrkept01").provisioning_state == "Succeeded"
    finally:
        again.stop()
