"""The pipeline worker's workload identity, as its pods need it: the managed identity's public ids.

    ids = identities.lookup(subscription_id=..., resource_group=..., name="temporal-pipeline", endpoint=...)
    ids.client_id, ids.tenant_id

`pipeline bootstrap --azure` creates the identity (`provision.ensure_identity`);
the CLI reads it here when it prepares a deployment of the pipeline's own app,
so the rendered pods carry its client and tenant id (never a secret). A missing
identity is one line that says to run the bring-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError

from pipeline.azure.clients import msi_client
from pipeline.azure.errors import AzureNotFound, Resource, azure_errors


@dataclass(frozen=True)
class IdentityIds:
    client_id: str
    tenant_id: str


def lookup(*, subscription_id: str, resource_group: str, name: str, endpoint: str) -> IdentityIds:
    """The client and tenant id of user-assigned identity `name` (UserAssignedIdentities_Get)."""
    resource = Resource("managed identity", name, resource_group, subscription_id, "[azure].identity")
    with msi_client(subscription_id=subscription_id, endpoint=endpoint) as client:
        try:
            with azure_errors(resource):
                found = client.user_assigned_identities.get(resource_group, name)
        except AzureNotFound as error:
            if not isinstance(error.__cause__, ResourceNotFoundError) or error.code != "ResourceNotFound":
                raise
            raise AzureNotFound(
                f"{resource.describe()} does not exist; run `pipeline bootstrap --azure` to create it "
                "(or set [apps.<pipeline app>].azure_client_id)",
                status=404,
                code=error.code,
            ) from error
    if not found.client_id or not found.tenant_id:
        raise AzureNotFound(f"{resource.describe()} has no clientId/tenantId in ARM's answer", status=200, code="")
    return IdentityIds(client_id=str(found.client_id), tenant_id=str(found.tenant_id))
