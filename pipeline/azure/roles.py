"""Azure RBAC as the bring-up needs it: the built-in roles it grants or asks for, and ARM's action matching.

Ids and actions are Microsoft's built-in role definitions (the same GUID in every tenant), as compiled in
`builtin-roles.json` of Azure's examples from its role documentation; tests/azure/test_authorization.py checks
every id and every "granted by" list here against that file, so none is invented.

`allowed(permissions, action)` evaluates what `GET {scope}/providers/Microsoft.Authorization/permissions`
answers as ARM does: an action is allowed when one entry's `actions` match it and the same entry's `notActions`
do not (patterns are case-insensitive, `*` any run of characters: `*`, `*/read`, `Microsoft.Authorization/*/Write`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ROLE_IDS: dict[str, str] = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "Container Registry Tasks Contributor": "fb382eab-e894-4461-af04-94435c366c3f",
    "Container Registry Repository Reader": "b93aa761-3e63-49ed-ac28-beffa264f7ac",
    "Container Registry Repository Writer": "2a1e307c-b015-4ebd-883e-5b7698a07328",
    "Azure Kubernetes Service Cluster User Role": "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
}
"""Built-in role GUIDs by role name."""

ROLE_NAMES: dict[str, str] = {guid: name for name, guid in ROLE_IDS.items()}

# The actions `pipeline bootstrap --azure` performs (ARM's operation names of each route it calls), with the
# built-in roles that grant each one, narrowest first (checked against builtin-roles.json by the tests).
READ_ACTIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Resources/subscriptions/resourceGroups/read": ("Reader", "Contributor", "Owner"),
    "Microsoft.ContainerRegistry/registries/read": ("Reader", "Contributor", "Owner"),
    "Microsoft.ContainerService/managedClusters/read": ("Reader", "Contributor", "Owner"),
    "Microsoft.ManagedIdentity/userAssignedIdentities/read": ("Reader", "Managed Identity Contributor", "Contributor", "Owner"),
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read": (
        "Reader", "Managed Identity Contributor", "Contributor", "Owner"),
    "Microsoft.Authorization/roleAssignments/read": ("Reader", "Contributor", "Owner"),
}  # fmt: skip
WRITE_ACTIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Resources/subscriptions/resourceGroups/write": ("Contributor", "Owner"),
    "Microsoft.ContainerRegistry/registries/write": ("Contributor", "Owner"),
    "Microsoft.ContainerService/managedClusters/write": ("Contributor", "Owner"),
    "Microsoft.ManagedIdentity/userAssignedIdentities/write": ("Managed Identity Contributor", "Contributor", "Owner"),
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write": (
        "Managed Identity Contributor", "Contributor", "Owner"),
}  # fmt: skip
ASSIGN_ACTION = "Microsoft.Authorization/roleAssignments/write"
ASSIGNING_ROLES: tuple[str, ...] = ("Role Based Access Control Administrator", "User Access Administrator", "Owner")
"""Who may create role assignments: not Contributor (`Microsoft.Authorization/*/Write` is in its notActions)."""


@dataclass(frozen=True)
class Permission:
    """One entry of the permissions API's `value`."""

    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


def action_matches(pattern: str, action: str) -> bool:
    """An RBAC action pattern against an action, as ARM matches them (case-insensitive, `*` wildcards)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), action, re.IGNORECASE) is not None


def allowed(permissions: Iterable[Permission], action: str) -> bool:
    return any(
        any(action_matches(a, action) for a in p.actions) and not any(action_matches(n, action) for n in p.not_actions)
        for p in permissions
    )


def permission_of(entry: Mapping[str, object]) -> Permission:
    """A permissions API entry (`{"actions": [...], "notActions": [...], ...}`)."""

    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key)
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return Permission(strings("actions"), strings("notActions"))


def granted_by(action: str) -> tuple[str, ...]:
    return {**READ_ACTIONS, **WRITE_ACTIONS, ASSIGN_ACTION: ASSIGNING_ROLES}[action]


def or_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
