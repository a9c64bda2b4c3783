"""Whether the role assignments `pipeline bootstrap --azure` makes exist now (for `pipeline doctor`).

    present, missing = role_status.status(config)

Reads the registry (its roleAssignmentMode), the cluster (its kubelet identity), the pipeline worker's managed
identity, then lists each grant's role assignments (role_grants.exists: by principal, at the scope or above, under
any name: an administrator's `az role assignment create` counts). Every failure is an AzureError (one line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.azure import provision, role_grants
from pipeline.azure.clients import acr_client, aks_client, authorization_client, msi_client
from pipeline.azure.errors import Resource, azure_errors

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig


def status(config: PipelineConfig) -> tuple[list[role_grants.Grant], list[role_grants.Grant]]:
    """(present, missing) role assignments of the pipeline's identities."""
    plan = provision.plan_for(config)
    sub, endpoint, group = plan.subscription_id, plan.endpoint, plan.resource_group

    def resource(kind: str, name: str, key: str = "") -> Resource:
        return Resource(kind, name, group, sub, key)

    with (
        acr_client(subscription_id=sub, endpoint=endpoint) as registries,
        azure_errors(resource("registry", plan.registry_name, "[acr].name")),
    ):
        registry = registries.registries.get(group, plan.registry_name)
    with (
        aks_client(subscription_id=sub, endpoint=endpoint) as clusters,
        azure_errors(resource("AKS cluster", plan.cluster_name, "[aks].cluster_name")),
    ):
        cluster = clusters.managed_clusters.get(group, plan.cluster_name)
    with (
        msi_client(subscription_id=sub, endpoint=endpoint) as identities,
        azure_errors(resource("managed identity", plan.identity_name, "[azure].identity")),
    ):
        identity = identities.user_assigned_identities.get(group, plan.identity_name)
    kubelet = ((cluster.properties.identity_profile or {}) if cluster.properties else {}).get("kubeletidentity")
    grants = role_grants.wanted(
        registry_name=plan.registry_name,
        registry_id=str(registry.id),
        registry_mode=str(registry.role_assignment_mode or role_grants.LEGACY),
        cluster_name=plan.cluster_name,
        cluster_id=str(cluster.id),
        kubelet_object_id=str(kubelet.object_id or "") if kubelet else "",
        identity_name=plan.identity_name,
        identity_principal_id=str(identity.principal_id or ""),
    )
    with authorization_client(subscription_id=sub, endpoint=endpoint) as client:
        missing = role_grants.missing(client, grants, resource("role assignments", plan.registry_name))
    return [g for g in grants if g not in missing], missing
