"""The ARM imitation's deletes, as Microsoft's examples show them (../shared/azure-examples, README there).

| operation | example | answer |
|---|---|---|
| Registries_Delete | 2025-11-01/RegistryDelete.json | 202 + `Location` (its operationStatuses URL), 204 when absent |
| ManagedClusters_Delete | 2026-08-01/ManagedClustersDelete.json | 202 + `location` (locations/{location}/operationresults), 204 when absent |
| ResourceGroups_Delete | 2025-04-01/ForceDeleteVMsInResourceGroup.json | 202 + `location` (subscription operationresults); absent: 404 as ResourceGroups_Get |
| RoleAssignments_Delete | 2022-04-01/RoleAssignments_Delete.json | 200 with the deleted assignment, 204 when absent |

Polling a `Location` answers 202 while the delete runs, then 200; the resource says provisioningState
Deleting meanwhile, and is gone (404) after. A resource group takes what it holds with it.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from azure.mgmt.msi import ManagedServiceIdentityClient

from bootstrap.azure_arm import Imitation
from tests.helpers.azure import ARM_SCOPE, Clients, credential

REGISTRY_VERSION, AKS_VERSION, GROUP_VERSION, ROLES_VERSION = "2025-11-01", "2026-08-01", "2025-04-01", "2022-04-01"
LOCATION = "westeurope"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


def follow(az: Clients, response: requests.Response) -> list[int]:
    """Poll the 202's Location until it stops answering 202; the statuses seen."""
    assert response.status_code == 202, response.text
    assert response.headers["Retry-After"] == "1"
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = requests.get(
            response.headers["Location"],
            headers={"Authorization": f"Bearer {az.token}"},
            verify=str(az.arm.ca_bundle),
            timeout=10,
        )
        seen.append(polled.status_code)
        if polled.status_code != 202:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"still 202 after 30 s: {seen}")


@pytest.fixture
def az(nothing: Imitation) -> Clients:
    return Clients(nothing)


def group_with_registry_and_cluster(az: Clients) -> tuple[str, str, str]:
    uid = uuid.uuid4().hex[:6]
    group, registry, cluster = f"del-{uid}", f"delacr{uid}", f"del-aks-{uid}"
    az.groups.create_or_update(group, {"location": LOCATION})
    az.acr.registries.begin_create(group, registry, {"location": LOCATION, "sku": {"name": "Standard"}}).result()
    body = {
        "location": LOCATION,
        "identity": {"type": "SystemAssigned"},
        "properties": {"dnsPrefix": cluster, "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "mode": "System"}]},
    }
    az.aks.begin_create_or_update(group, cluster, body).result()
    return group, registry, cluster


def test_a_registry_delete_is_long_running_then_gone(az: Clients) -> None:
    group, registry, _ = group_with_registry_and_cluster(az)
    path = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{registry}"
    started = az.raw("DELETE", path, REGISTRY_VERSION)
    assert f"{path}/operationStatuses/registries-" in started.headers["Location"]
    assert az.raw("GET", path, REGISTRY_VERSION).json()["properties"]["provisioningState"] == "Deleting"
    assert follow(az, started)[-1] == 200
    assert az.raw("GET", path, REGISTRY_VERSION).status_code == 404
    assert az.raw("DELETE", path, REGISTRY_VERSION).status_code == 204


def test_a_cluster_delete_is_long_running_then_gone(az: Clients) -> None:
    group, _, cluster = group_with_registry_and_cluster(az)
    path = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{cluster}"
    started = az.raw("DELETE", path, AKS_VERSION)
    assert f"/providers/Microsoft.ContainerService/locations/{LOCATION}/operationresults/" in started.headers["Location"]
    assert follow(az, started)[-1] == 200
    assert az.raw("GET", path, AKS_VERSION).status_code == 404
    assert az.raw("DELETE", path, AKS_VERSION).status_code == 204


def test_a_group_delete_takes_what_it_holds(az: Clients) -> None:
    group, registry, cluster = group_with_registry_and_cluster(az)
    identities = ManagedServiceIdentityClient(
        credential(az.arm),
        az.arm.subscription_id,
        base_url=az.arm.endpoint,
        connection_verify=str(az.arm.ca_bundle),
        credential_scopes=[ARM_SCOPE],
    )
    identities.user_assigned_identities.create_or_update(group, "someone", {"location": LOCATION})
    path = f"/subscriptions/{az.arm.subscription_id}/resourcegroups/{group}"
    started = az.raw("DELETE", path, GROUP_VERSION)
    assert f"/subscriptions/{az.arm.subscription_id}/operationresults/" in started.headers["Location"]
    assert follow(az, started)[-1] == 200
    for gone in (path, f"{path}/providers/Microsoft.ContainerRegistry/registries/{registry}"):
        assert az.raw("GET", gone, REGISTRY_VERSION if "registries" in gone else GROUP_VERSION).status_code == 404
    missing = az.raw("DELETE", path, GROUP_VERSION)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "ResourceGroupNotFound")
    # The name is free again: the same group can be made anew, empty.
    az.groups.create_or_update(group, {"location": LOCATION})
    assert az.raw("GET", f"{path}/providers/Microsoft.ContainerService/managedClusters/{cluster}", AKS_VERSION).status_code == 404


def test_a_role_assignment_delete_answers_the_deleted_assignment_then_204(az: Clients) -> None:
    group, registry, _ = group_with_registry_and_cluster(az)
    scope = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{registry}"
    name = str(uuid.uuid4())
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    body = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{az.arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}",
            "principalId": az.arm.object_id("reader"),
            "principalType": "ServicePrincipal",
        }
    }
    assert az.raw("PUT", path, ROLES_VERSION, body).status_code == 201
    deleted = az.raw("DELETE", path, ROLES_VERSION)
    assert deleted.status_code == 200 and deleted.json()["name"] == name
    assert deleted.json()["properties"]["scope"] == scope
    assert az.raw("GET", path, ROLES_VERSION).status_code == 404
    assert az.raw("DELETE", path, ROLES_VERSION).status_code == 204
