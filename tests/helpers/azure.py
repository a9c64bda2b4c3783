"""The ARM imitation (bootstrap/azure_arm) as the real Azure SDKs reach it: token scopes, API version, clients."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.resource.resources import ResourceManagementClient

from bootstrap.azure_arm import Imitation

ARM_SCOPE = "https://management.azure.com/.default"
AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
TASKS_API_VERSION = "2025-03-01-preview"


def credential(arm: Imitation) -> ClientSecretCredential:
    return ClientSecretCredential(
        arm.tenant_id,
        arm.client_id,
        arm.client_secret,
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )


def _kwargs(arm: Imitation) -> dict[str, Any]:
    return {"base_url": arm.endpoint, "connection_verify": str(arm.ca_bundle), "credential_scopes": [ARM_SCOPE]}


class Clients:
    def __init__(self, arm: Imitation) -> None:
        cred = credential(arm)
        self.arm = arm
        self.groups = ResourceManagementClient(cred, arm.subscription_id, **_kwargs(arm)).resource_groups
        self.acr = ContainerRegistryManagementClient(cred, arm.subscription_id, api_version=TASKS_API_VERSION, **_kwargs(arm))
        self.aks = ContainerServiceClient(cred, arm.subscription_id, **_kwargs(arm)).managed_clusters
        self.roles = AuthorizationManagementClient(cred, arm.subscription_id, **_kwargs(arm)).role_assignments
        self.token = cred.get_token(ARM_SCOPE).token

    def grant(self, scope: str, role: str, principal_id: str) -> None:
        """A role assignment of the built-in `role` (by name, its id from builtin-roles.json) to a service principal."""
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        from pipeline.azure import roles

        definition = (
            f"/subscriptions/{self.arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{roles.ROLE_IDS[role]}"
        )
        self.roles.create(
            scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=definition, principal_id=principal_id, principal_type="ServicePrincipal"
            ),
        )

    def raw(self, method: str, path: str, version: str, body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.arm.endpoint}{path}?api-version={version}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.arm.ca_bundle),
            timeout=30,
        )
