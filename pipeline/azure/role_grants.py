"""The role assignments the pipeline's identities need, whether they exist, and the `az` commands that make them.

    grants = role_grants.wanted(plan_names, registry, cluster, identity)
    missing = role_grants.missing(client, grants)          # RoleAssignments_ListForScope, filtered by principal
    text = role_grants.script(missing)                     # `az role assignment create ...`, one per grant

Each identity gets the narrowest built-in role that works (ids in roles.py):

| identity | role | scope | why |
|---|---|---|---|
| the AKS cluster's kubelet identity | AcrPull (legacy registry) or Container Registry Repository Reader (ABAC registry) | the registry | nodes pull the images |
| the pipeline worker's managed identity | Container Registry Tasks Contributor | the registry | upload the build context, schedule and follow ACR runs |
| the pipeline worker's managed identity | AcrPush (legacy) or Container Registry Repository Writer (ABAC) | the registry | push a multi-platform image index; in ABAC mode runs push as the caller (`[caller]`) |
| the pipeline worker's managed identity | Azure Kubernetes Service Cluster User Role | the cluster | fetch the cluster's user kubeconfig |

A registry in `AbacRepositoryPermissions` mode does not honour AcrPull/AcrPush ("Legacy ACR roles such as AcrPull,
AcrPush, and AcrDelete are not honored in ABAC-enabled registries", ACR's ABAC documentation), hence the
Repository roles there. An assignment exists when RoleAssignments_ListForScope at its scope, filtered by the
principal, lists the role at that scope or above (made by bootstrap, or by an administrator under any name).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError as SdkAzureError

from pipeline.azure import roles
from pipeline.azure.errors import Resource, translate

if TYPE_CHECKING:
    from azure.mgmt.authorization import AuthorizationManagementClient

ABAC = "AbacRepositoryPermissions"
LEGACY = "LegacyRegistryPermissions"


@dataclass(frozen=True)
class Grant:
    """One role assignment a pipeline identity needs: `role_name` for `principal_id` at `scope`."""

    role_name: str
    principal_id: str
    scope: str
    label: str  # e.g. "for temporal-aks's kubelet identity on temporalab12cd34ef"

    @property
    def role_id(self) -> str:
        return roles.ROLE_IDS[self.role_name]

    def command(self) -> str:
        """The exact `az role assignment create` that makes it (the role by GUID, as Azure's CLI accepts it)."""
        return (
            f"az role assignment create --assignee-object-id {self.principal_id} --assignee-principal-type "
            f"ServicePrincipal --role {self.role_id} --scope {shlex.quote(self.scope)}"
        )

    def line(self) -> str:
        return f"{self.role_name} {self.label}"


def pull_role(mode: str) -> str:
    return "Container Registry Repository Reader" if mode == ABAC else "AcrPull"


def push_role(mode: str) -> str:
    return "Container Registry Repository Writer" if mode == ABAC else "AcrPush"


def wanted(
    *,
    registry_name: str,
    registry_id: str,
    registry_mode: str,
    cluster_name: str,
    cluster_id: str,
    kubelet_object_id: str,
    identity_name: str,
    identity_principal_id: str,
) -> list[Grant]:
    """Every role assignment bootstrap makes, in the order it makes them."""
    return [
        Grant(pull_role(registry_mode), kubelet_object_id, registry_id, f"for {cluster_name}'s kubelet identity on {registry_name}"),
        Grant("Container Registry Tasks Contributor", identity_principal_id, registry_id, f"for {identity_name} on {registry_name}"),
        Grant(push_role(registry_mode), identity_principal_id, registry_id, f"for {identity_name} on {registry_name}"),
        Grant("Azure Kubernetes Service Cluster User Role", identity_principal_id, cluster_id, f"for {identity_name} on {cluster_name}"),
    ]  # fmt: skip


def exists(client: AuthorizationManagementClient, grant: Grant, resource: Resource) -> bool:
    """Whether the principal holds the role at the grant's scope or above (any assignment name)."""
    try:
        found = client.role_assignments.list_for_scope(grant.scope, filter=f"principalId eq '{grant.principal_id}'")
        return any(
            str(a.role_definition_id or "").rstrip("/").rsplit("/", 1)[-1].lower() == grant.role_id
            and grant.scope.lower().startswith(str(a.scope or "").rstrip("/").lower())
            for a in found
        )
    except SdkAzureError as exc:
        raise translate(exc, resource) from exc


def missing(client: AuthorizationManagementClient, grants: list[Grant], resource: Resource) -> list[Grant]:
    return [g for g in grants if not exists(client, g, resource)]


def script(grants: list[Grant]) -> str:
    """A shell script of the `az role assignment create` commands (a comment line above each)."""
    lines = ["#!/bin/sh", "# Role assignments `pipeline bootstrap --azure --no-role-assignments` could not make.", "set -e"]
    for grant in grants:
        lines += [f"# {grant.line()}", grant.command()]
    return "\n".join(lines) + "\n"
