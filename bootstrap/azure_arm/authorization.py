"""Azure RBAC as ARM evaluates it: built-in role definitions, role assignments inherited downwards, actions.

Role definitions are Microsoft's built-in ones, read from `builtin-roles.json` (a byte-for-byte copy of
`../shared/azure-examples/builtin-roles.json`, compiled from the built-in role documentation with the real GUIDs,
actions, notActions, dataActions and notDataActions; never typed in here). A role assignment at a scope (the
subscription `/subscriptions/{s}`, a resource group, or a resource id) applies to that scope and everything under it.

An action is allowed at a path when some role assignment of the caller at that path or above has a role whose
`actions` match it and whose `notActions` do not (each role's notActions subtract only from that role's actions, as
in Azure's "How Azure RBAC determines if a user has access to a resource"): so Contributor (`*` minus
`Microsoft.Authorization/*/Write`) may create a registry but not a role assignment, while Owner + Contributor may.
Patterns match as ARM matches them: case-insensitive, `*` any run of characters (`*`, `*/read`,
`Microsoft.ContainerRegistry/*`, `Microsoft.Authorization/*/Write`). Data actions (`repositories/content/read`) are
matched against `dataActions`/`notDataActions` only.

`permissions` is what `GET {scope}/providers/Microsoft.Authorization/permissions` answers (GetPermissions.json):
one `{actions, notActions, dataActions, notDataActions}` entry per role assignment of the caller at or above the
scope. `denied` is ARM's 403 AuthorizationFailed for a missing action.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bootstrap.azure_arm.identity import TokenClaims
from bootstrap.azure_arm.state import RoleAssignmentSeed, Seed

ROLE_DEFINITIONS: dict[str, dict[str, Any]] = {
    r["id"].lower(): r for r in json.loads((Path(__file__).resolve().parent / "builtin-roles.json").read_text())
}
"""Built-in role definitions by lower-case GUID (the same GUIDs in every tenant)."""
ROLE_IDS: dict[str, str] = {r["roleName"]: guid for guid, r in ROLE_DEFINITIONS.items()}
"""Built-in role GUIDs by role name ("Owner", "Contributor", "AcrPull", ...)."""


def role_definition_id(subscription_id: str, role_name: str) -> str:
    """The subscription-scoped role definition id of a built-in role, as role assignments carry it."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_IDS[role_name]}"


def role_guid(role_definition: str) -> str:
    return role_definition.rstrip("/").rsplit("/", 1)[-1].lower()


def action_matches(pattern: str, action: str) -> bool:
    """An RBAC action pattern (`*` any characters, case-insensitive) against an operation's action."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), action, re.IGNORECASE) is not None


def in_scope(scope: str, path: str) -> bool:
    """Whether `path` is `scope` or under it (an assignment at `scope` applies there)."""
    scope, path = scope.rstrip("/").lower(), path.rstrip("/").lower()
    return path == scope or path.startswith(scope + "/")


def principal_of(seed: Seed, claims: TokenClaims) -> str:
    """The caller's object id: a seeded client's, a user-assigned identity's principalId, else the token's `oid`."""
    client = seed.client(claims.client_id)
    if client is not None:
        return client.object_id
    managed = seed.identity_by_client_id(claims.client_id)
    return managed.principal_id if managed is not None else claims.object_id


def assignments_over(seed: Seed, principal: str, path: str) -> Iterator[tuple[RoleAssignmentSeed, dict[str, Any]]]:
    """The role assignments of `principal` at `path` or above, with their (known) role definitions."""
    for assignment in seed.role_assignments:
        if assignment.principal_id.lower() != principal.lower() or not in_scope(assignment.scope, path):
            continue
        role = ROLE_DEFINITIONS.get(role_guid(assignment.role_definition_id))
        if role is not None:
            yield assignment, role


def role_allows(role: dict[str, Any], action: str, *, data: bool = False) -> bool:
    allowed, denied = ("dataActions", "notDataActions") if data else ("actions", "notActions")
    return any(action_matches(a, action) for a in role.get(allowed, [])) and not any(
        action_matches(n, action) for n in role.get(denied, [])
    )


def granted(seed: Seed, principal: str, path: str, action: str, *, data: bool = False) -> bool:
    """Whether a role assignment of `principal` at `path` or above allows `action` (a data action with `data`)."""
    return any(role_allows(role, action, data=data) for _, role in assignments_over(seed, principal, path))


def permissions(seed: Seed, principal: str, path: str) -> list[dict[str, list[str]]]:
    """Permissions_List* for the caller: one entry per role assignment at `path` or above (GetPermissions.json)."""
    return [
        {
            "actions": list(role.get("actions", [])),
            "notActions": list(role.get("notActions", [])),
            "dataActions": list(role.get("dataActions", [])),
            "notDataActions": list(role.get("notDataActions", [])),
        }
        for _, role in assignments_over(seed, principal, path)
    ]


def denied_message(claims: TokenClaims, action: str, scope: str) -> str:
    """ARM's AuthorizationFailed message."""
    return (
        f"The client '{claims.client_id}' with object id '{claims.object_id}' does not have authorization to perform "
        f"action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials."
    )
