"""Microsoft.Authorization/roleAssignments at the scope of the subscription, a resource group, a registry or a
managed cluster: RoleAssignments_Get, RoleAssignments_Create (for any built-in role of builtin-roles.json),
RoleAssignments_Delete (200 with the deleted assignment, 204 when absent: RoleAssignments_Delete.json) and
RoleAssignments_ListForScope. A created assignment takes effect at once (authorization.py reads the seed)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.arm.providers.managed_clusters import cluster_id, kubelet_object_id, principal_id
from bootstrap.azure_arm.arm.providers.registries import registry_id
from bootstrap.azure_arm.authorization import ROLE_DEFINITIONS, in_scope
from bootstrap.azure_arm.builds import now_iso
from bootstrap.azure_arm.state import RoleAssignmentSeed

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _principals(ctx: Context) -> set[str]:
    """Object ids the imitated directory knows: the seeded principals, every cluster's identities and every
    user-assigned identity."""
    known = {c.object_id.lower() for c in ctx.seed.clients} | {i.principal_id.lower() for i in ctx.seed.identities}
    for cluster in ctx.seed.clusters:
        known.add(kubelet_object_id(ctx.seed, cluster))
        known.add(principal_id(ctx.seed, cluster))
    return known


def _role_assignment_body(assignment: RoleAssignmentSeed) -> dict[str, Any]:
    return {
        "properties": {
            "roleDefinitionId": assignment.role_definition_id,
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": assignment.created_on,
            "updatedOn": assignment.created_on,
            "createdBy": assignment.created_by,
            "updatedBy": assignment.created_by,
            "delegatedManagedIdentityResourceId": None,
            "description": None,
        },
        "id": f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": assignment.name,
    }


def _scope(ctx: Context) -> str:
    """The resource id the path names: a registry, a managed cluster, (checked to exist by dispatch) a group, or
    the subscription."""
    if "registryName" in ctx.params:
        return registry_id(ctx.seed, ctx.registry())
    if "resourceName" in ctx.params:
        return cluster_id(ctx.seed, ctx.cluster())
    if "resourceGroupName" not in ctx.params:
        return f"/subscriptions/{ctx.seed.subscription_id}"
    group = ctx.seed.group(ctx.group)
    return f"/subscriptions/{ctx.seed.subscription_id}/resourceGroups/{group.name if group else ctx.group}"


async def role_assignments_get(ctx: Context) -> web.StreamResponse:
    scope = _scope(ctx)
    found = ctx.seed.role_assignment(scope, ctx.params["roleAssignmentName"])
    if found is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{ctx.params['roleAssignmentName']}' is not found.")
    return json_response(_role_assignment_body(found))


async def role_assignments_delete(ctx: Context) -> web.StreamResponse:
    scope = _scope(ctx)
    found = ctx.seed.role_assignment(scope, ctx.params["roleAssignmentName"])
    if found is None:
        return web.Response(status=204)
    ctx.seed.role_assignments.remove(found)
    ctx.save()
    return json_response(_role_assignment_body(found))


def _check_name(name: str) -> None:
    if not _GUID.match(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )


def _check_role_and_principal(ctx: Context, role: str, principal: str) -> str:
    """The role definition's GUID, once the role is a known built-in one and the principal is in the directory."""
    if not role or not principal:
        raise ArmError(400, "InvalidRoleAssignmentRequest", "The properties roleDefinitionId and principalId are required.")
    role_guid = role.rstrip("/").rsplit("/", 1)[-1].lower()
    prefixes = (f"/subscriptions/{ctx.seed.subscription_id}/providers/microsoft.authorization/roledefinitions/",
                "/providers/microsoft.authorization/roledefinitions/")  # fmt: skip
    if role_guid not in ROLE_DEFINITIONS or not role.lower().startswith(prefixes):
        raise ArmError(400, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{role_guid}' does not exist.")
    if principal not in _principals(ctx):
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal.replace('-', '')} does not exist in the directory {ctx.seed.tenant_id}. Check that you "
            "have the correct principal ID. If you are creating this principal and then immediately assigning a role, "
            "this error might be related to a replication delay. In this case, set the role assignment principalType "
            "property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
        )
    return role_guid


def _role_guid(assignment: RoleAssignmentSeed) -> str:
    return assignment.role_definition_id.rsplit("/", 1)[-1].lower()


def _check_no_conflict(ctx: Context, scope: str, principal: str, role_guid: str) -> None:
    """The same principal and role at the same scope under another name is 409 RoleAssignmentExists."""
    for other in ctx.seed.role_assignments:
        if other.scope.lower() == scope.lower() and other.principal_id == principal and _role_guid(other) == role_guid:
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")


async def role_assignments_create(ctx: Context) -> web.StreamResponse:
    """RoleAssignments_Create at a registry's, cluster's or group's scope: idempotent by name (same content -> 201
    again); the same principal and role under another name -> 409 RoleAssignmentExists; other content under the
    same name -> 400."""
    scope = _scope(ctx)
    name = ctx.params["roleAssignmentName"]
    _check_name(name)
    properties = (await read_body(ctx)).get("properties") or {}
    principal = str(properties.get("principalId") or "").lower()
    role_guid = _check_role_and_principal(ctx, str(properties.get("roleDefinitionId") or ""), principal)
    same_name = ctx.seed.role_assignment(scope, name)
    if same_name is not None:
        if same_name.principal_id != principal or _role_guid(same_name) != role_guid:
            raise ArmError(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return json_response(_role_assignment_body(same_name), status=201)
    _check_no_conflict(ctx, scope, principal, role_guid)
    assignment = RoleAssignmentSeed(
        name=name.lower(),
        scope=scope,
        role_definition_id=f"/subscriptions/{ctx.seed.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}",
        principal_id=principal,
        principal_type=str(properties.get("principalType") or "ServicePrincipal"),
        created_on=now_iso(),
        created_by=ctx.claims.object_id,
    )
    ctx.seed.role_assignments.append(assignment)
    ctx.save()
    return json_response(_role_assignment_body(assignment), status=201)


def _filter(expression: str) -> tuple[bool, str]:
    """RoleAssignments_ListForScope's `$filter`: `atScope()` and/or `principalId eq '<id>'` (anything else 400)."""
    at_scope, principal = False, ""
    for part in [p.strip() for p in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE) if p.strip()]:
        if part.lower() == "atscope()":
            at_scope = True
        elif m := re.fullmatch(r"principalId\s+eq\s+'([^']+)'", part, re.IGNORECASE):
            principal = m.group(1).lower()
        else:
            raise ArmError(400, "InvalidFilterInQueryString", f"The filter '{expression}' is not supported.")
    return at_scope, principal


async def role_assignments_list_for_scope(ctx: Context) -> web.StreamResponse:
    """RoleAssignments_ListForScope: the assignments that apply at the scope (at it or above), plus, with a
    `principalId eq` filter, that principal's assignments below it; `atScope()` keeps those at or above only."""
    scope = _scope(ctx)
    at_scope, principal = _filter(ctx.request.query.get("$filter", ""))
    found = [
        a
        for a in ctx.seed.role_assignments
        if (not principal or a.principal_id.lower() == principal)
        and (in_scope(a.scope, scope) or (bool(principal) and not at_scope and in_scope(scope, a.scope)))
    ]
    return json_response({"value": [_role_assignment_body(a) for a in found]})
