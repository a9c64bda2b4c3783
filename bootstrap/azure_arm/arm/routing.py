"""The routing table: which operation a method and path are, its api-versions, its RBAC action and its handler.

Paths match case-insensitively, like ARM's. To add an operation, add a `Route` to `ROUTES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bootstrap.azure_arm.arm.api_versions import (
    AKS_VERSIONS,
    AUTHORIZATION_VERSIONS,
    MSI_VERSIONS,
    REGISTRY_VERSIONS,
    RESOURCE_VERSIONS,
    TASK_VERSIONS,
)
from bootstrap.azure_arm.arm.context import Handler
from bootstrap.azure_arm.arm.operations import operation_result, operation_status
from bootstrap.azure_arm.arm.providers.cluster_credentials import managed_clusters_list_admin, managed_clusters_list_user
from bootstrap.azure_arm.arm.providers.managed_clusters import (
    managed_clusters_create_or_update,
    managed_clusters_delete,
    managed_clusters_get,
)
from bootstrap.azure_arm.arm.providers.managed_identities import (
    federated_identity_credentials_create_or_update,
    federated_identity_credentials_delete,
    federated_identity_credentials_get,
    federated_identity_credentials_list,
    user_assigned_identities_create_or_update,
    user_assigned_identities_delete,
    user_assigned_identities_get,
)
from bootstrap.azure_arm.arm.providers.permissions import permissions_list
from bootstrap.azure_arm.arm.providers.registries import (
    registries_create,
    registries_delete,
    registries_get,
    registries_list_credentials,
)
from bootstrap.azure_arm.arm.providers.registry_names import registries_check_name_availability
from bootstrap.azure_arm.arm.providers.registry_runs import (
    registries_get_build_source_upload_url,
    registries_schedule_run,
    runs_cancel,
    runs_get,
    runs_get_log_sas_url,
    runs_list,
)
from bootstrap.azure_arm.arm.providers.resource_groups import (
    resource_groups_create_or_update,
    resource_groups_delete,
    resource_groups_get,
)
from bootstrap.azure_arm.arm.providers.role_assignments import (
    role_assignments_create,
    role_assignments_delete,
    role_assignments_get,
    role_assignments_list_for_scope,
)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    api_versions: frozenset[str]
    action: str  # the RBAC action ARM checks ("" = none: every caller may read its own permissions)
    resource_type: str  # for NoRegisteredProviderFound messages
    handler: Handler
    in_group: bool = True  # the path names a resource group that must exist (404 ResourceGroupNotFound)


_SUB = r"/subscriptions/(?P<subscriptionId>[^/]+)/resourceGroups/(?P<resourceGroupName>[^/]+)/providers"
_RG = r"/subscriptions/(?P<subscriptionId>[^/]+)/resourcegroups/(?P<resourceGroupName>[^/]+)"
_REG = _SUB + r"/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]+)"
_AKS = _SUB + r"/Microsoft\.ContainerService/managedClusters/(?P<resourceName>[^/]+)"
_AKS_OP = r"/subscriptions/(?P<subscriptionId>[^/]+)/providers/Microsoft\.ContainerService/locations/(?P<location>[^/]+)/operationStatus/(?P<operationId>[^/]+)"
_AKS_RESULT = r"/subscriptions/(?P<subscriptionId>[^/]+)/providers/Microsoft\.ContainerService/locations/(?P<location>[^/]+)/operationresults/(?P<operationId>[^/]+)"
_RG_RESULT = r"/subscriptions/(?P<subscriptionId>[^/]+)/operationresults/(?P<operationId>[^/]+)"
_ROLE_ASSIGNMENT = r"/providers/Microsoft\.Authorization/roleAssignments/(?P<roleAssignmentName>[^/]+)"
_RA = _REG + _ROLE_ASSIGNMENT
_SUBSCRIPTION = r"/subscriptions/(?P<subscriptionId>[^/]+)"
_ROLE_ASSIGNMENTS = r"/providers/Microsoft\.Authorization/roleAssignments"
_PERMISSIONS = r"/providers/Microsoft\.Authorization/permissions"
_CHECK_NAME = _SUBSCRIPTION + r"/providers/Microsoft\.ContainerRegistry/checkNameAvailability"
_UAI = _SUB + r"/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<identityName>[^/]+)"
_FICS = _UAI + "/federatedIdentityCredentials"
_FIC = _FICS + r"/(?P<ficName>[^/]+)"
_ACR, _MC = "Microsoft.ContainerRegistry/registries", "Microsoft.ContainerService/managedClusters"
_MSI = "Microsoft.ManagedIdentity/userAssignedIdentities"
_RGS, _RAS = "Microsoft.Resources/resourceGroups", "Microsoft.Authorization/roleAssignments"


def _route(
    method: str, pattern: str, operation: str, versions: frozenset[str], action: str, handler: Handler, *, in_group: bool = True
) -> Route:
    resource_type = next((t for t in (_ACR, _MC, _RAS, _MSI) if (action or _RAS).split("/")[0] == t.split("/")[0]), _RGS)
    return Route(
        method, re.compile(pattern + "/?$", re.IGNORECASE), operation, versions, action, resource_type, handler, in_group
    )


ROUTES: list[Route] = [
    _route("GET", _RG, "ResourceGroups_Get", RESOURCE_VERSIONS, "Microsoft.Resources/subscriptions/resourceGroups/read", resource_groups_get, in_group=False),
    _route("PUT", _RG, "ResourceGroups_CreateOrUpdate", RESOURCE_VERSIONS, "Microsoft.Resources/subscriptions/resourceGroups/write", resource_groups_create_or_update, in_group=False),
    _route("DELETE", _RG, "ResourceGroups_Delete", RESOURCE_VERSIONS, "Microsoft.Resources/subscriptions/resourceGroups/delete", resource_groups_delete, in_group=False),
    _route("GET", _RG_RESULT, "ResourceGroups_DeleteOperationResult", RESOURCE_VERSIONS, "", operation_result, in_group=False),
    _route("GET", _REG, "Registries_Get", REGISTRY_VERSIONS, f"{_ACR}/read", registries_get),
    _route("PUT", _REG, "Registries_Create", REGISTRY_VERSIONS, f"{_ACR}/write", registries_create),
    _route("DELETE", _REG, "Registries_Delete", REGISTRY_VERSIONS, f"{_ACR}/delete", registries_delete),
    _route("GET", _REG + r"/operationStatuses/(?P<operationId>[^/]+)", "Registries_GetOperationStatus", REGISTRY_VERSIONS, f"{_ACR}/operationStatuses/read", operation_status),
    _route("POST", _REG + "/listCredentials", "Registries_ListCredentials", REGISTRY_VERSIONS, f"{_ACR}/listCredentials/action", registries_list_credentials),
    _route("POST", _REG + "/listBuildSourceUploadUrl", "Registries_GetBuildSourceUploadUrl", TASK_VERSIONS, f"{_ACR}/listBuildSourceUploadUrl/action", registries_get_build_source_upload_url),
    _route("POST", _REG + "/scheduleRun", "Registries_ScheduleRun", TASK_VERSIONS, f"{_ACR}/scheduleRun/action", registries_schedule_run),
    _route("GET", _REG + "/runs", "Runs_List", TASK_VERSIONS, f"{_ACR}/runs/read", runs_list),
    _route("GET", _REG + r"/runs/(?P<runId>[^/]+)", "Runs_Get", TASK_VERSIONS, f"{_ACR}/runs/read", runs_get),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/listLogSasUrl", "Runs_GetLogSasUrl", TASK_VERSIONS, f"{_ACR}/runs/listLogSasUrl/action", runs_get_log_sas_url),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/cancel", "Runs_Cancel", TASK_VERSIONS, f"{_ACR}/runs/cancel/action", runs_cancel),
    _route("GET", _RA, "RoleAssignments_Get", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_get),
    _route("PUT", _RA, "RoleAssignments_Create", AUTHORIZATION_VERSIONS, f"{_RAS}/write", role_assignments_create),
    _route("DELETE", _RA, "RoleAssignments_Delete", AUTHORIZATION_VERSIONS, f"{_RAS}/delete", role_assignments_delete),
    _route("GET", _AKS + _ROLE_ASSIGNMENT, "RoleAssignments_Get", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_get),
    _route("PUT", _AKS + _ROLE_ASSIGNMENT, "RoleAssignments_Create", AUTHORIZATION_VERSIONS, f"{_RAS}/write", role_assignments_create),
    _route("DELETE", _AKS + _ROLE_ASSIGNMENT, "RoleAssignments_Delete", AUTHORIZATION_VERSIONS, f"{_RAS}/delete", role_assignments_delete),
    _route("GET", _RG + _ROLE_ASSIGNMENT, "RoleAssignments_Get", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_get),
    _route("PUT", _RG + _ROLE_ASSIGNMENT, "RoleAssignments_Create", AUTHORIZATION_VERSIONS, f"{_RAS}/write", role_assignments_create),
    _route("DELETE", _RG + _ROLE_ASSIGNMENT, "RoleAssignments_Delete", AUTHORIZATION_VERSIONS, f"{_RAS}/delete", role_assignments_delete),
    _route("GET", _SUBSCRIPTION + _ROLE_ASSIGNMENT, "RoleAssignments_Get", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_get, in_group=False),
    _route("PUT", _SUBSCRIPTION + _ROLE_ASSIGNMENT, "RoleAssignments_Create", AUTHORIZATION_VERSIONS, f"{_RAS}/write", role_assignments_create, in_group=False),
    _route("DELETE", _SUBSCRIPTION + _ROLE_ASSIGNMENT, "RoleAssignments_Delete", AUTHORIZATION_VERSIONS, f"{_RAS}/delete", role_assignments_delete, in_group=False),
    _route("GET", _SUBSCRIPTION + _ROLE_ASSIGNMENTS, "RoleAssignments_ListForScope", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_list_for_scope, in_group=False),
    _route("GET", _RG + _ROLE_ASSIGNMENTS, "RoleAssignments_ListForScope", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_list_for_scope),
    _route("GET", _REG + _ROLE_ASSIGNMENTS, "RoleAssignments_ListForScope", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_list_for_scope),
    _route("GET", _AKS + _ROLE_ASSIGNMENTS, "RoleAssignments_ListForScope", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_list_for_scope),
    _route("GET", _SUBSCRIPTION + _PERMISSIONS, "Permissions_ListForSubscription", AUTHORIZATION_VERSIONS, "", permissions_list, in_group=False),
    _route("GET", _RG + _PERMISSIONS, "Permissions_ListForResourceGroup", AUTHORIZATION_VERSIONS, "", permissions_list),
    _route("GET", _REG + _PERMISSIONS, "Permissions_ListForResource", AUTHORIZATION_VERSIONS, "", permissions_list),
    _route("GET", _AKS + _PERMISSIONS, "Permissions_ListForResource", AUTHORIZATION_VERSIONS, "", permissions_list),
    _route("POST", _CHECK_NAME, "Registries_CheckNameAvailability", REGISTRY_VERSIONS, "Microsoft.ContainerRegistry/checkNameAvailability/read", registries_check_name_availability, in_group=False),
    _route("PUT", _UAI, "UserAssignedIdentities_CreateOrUpdate", MSI_VERSIONS, f"{_MSI}/write", user_assigned_identities_create_or_update),
    _route("GET", _UAI, "UserAssignedIdentities_Get", MSI_VERSIONS, f"{_MSI}/read", user_assigned_identities_get),
    _route("DELETE", _UAI, "UserAssignedIdentities_Delete", MSI_VERSIONS, f"{_MSI}/delete", user_assigned_identities_delete),
    _route("GET", _FICS, "FederatedIdentityCredentials_List", MSI_VERSIONS, f"{_MSI}/federatedIdentityCredentials/read", federated_identity_credentials_list),
    _route("PUT", _FIC, "FederatedIdentityCredentials_CreateOrUpdate", MSI_VERSIONS, f"{_MSI}/federatedIdentityCredentials/write", federated_identity_credentials_create_or_update),
    _route("GET", _FIC, "FederatedIdentityCredentials_Get", MSI_VERSIONS, f"{_MSI}/federatedIdentityCredentials/read", federated_identity_credentials_get),
    _route("DELETE", _FIC, "FederatedIdentityCredentials_Delete", MSI_VERSIONS, f"{_MSI}/federatedIdentityCredentials/delete", federated_identity_credentials_delete),
    _route("GET", _AKS, "ManagedClusters_Get", AKS_VERSIONS, f"{_MC}/read", managed_clusters_get),
    _route("PUT", _AKS, "ManagedClusters_CreateOrUpdate", AKS_VERSIONS, f"{_MC}/write", managed_clusters_create_or_update),
    _route("DELETE", _AKS, "ManagedClusters_Delete", AKS_VERSIONS, f"{_MC}/delete", managed_clusters_delete),
    _route("GET", _AKS_RESULT, "ManagedClusters_DeleteOperationResult", AKS_VERSIONS, "Microsoft.ContainerService/locations/operationresults/read", operation_result, in_group=False),
    _route("GET", _AKS_OP, "ManagedClusters_GetOperationStatus", AKS_VERSIONS, "Microsoft.ContainerService/locations/operationStatus/read", operation_status, in_group=False),
    _route("POST", _AKS + "/listClusterUserCredential", "ManagedClusters_ListClusterUserCredentials", AKS_VERSIONS, f"{_MC}/listClusterUserCredential/action", managed_clusters_list_user),
    _route("POST", _AKS + "/listClusterAdminCredential", "ManagedClusters_ListClusterAdminCredentials", AKS_VERSIONS, f"{_MC}/listClusterAdminCredential/action", managed_clusters_list_admin),
]  # fmt: skip


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method and (m := route.pattern.match(path)):
            return route, m.groupdict()
    return None
