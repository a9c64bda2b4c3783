"""Microsoft.Authorization/permissions: what the caller may do at a scope (Permissions_ListForResourceGroup,
Permissions_ListForResource, 2022-04-01, GetPermissions.json / GetResourcePermissions.json; also at the
subscription, `GET /subscriptions/{s}/providers/Microsoft.Authorization/permissions`).

The answer is the caller's own: one `{actions, notActions, dataActions, notDataActions}` entry per role
assignment of the caller at the scope or above (authorization.permissions); no assignment, an empty `value`.
A client evaluates it as ARM does: an action is allowed when some entry's actions match it and that entry's
notActions do not. Every authenticated caller may ask (the route has no RBAC action); a named registry or
cluster must exist (404), a named group too (dispatch, 404 ResourceGroupNotFound).
"""

from __future__ import annotations

from aiohttp import web

from bootstrap.azure_arm.arm.context import Context, json_response
from bootstrap.azure_arm.authorization import permissions, principal_of

_SUFFIX = "/providers/microsoft.authorization/permissions"


async def permissions_list(ctx: Context) -> web.StreamResponse:
    if "registryName" in ctx.params:
        ctx.registry()
    if "resourceName" in ctx.params:
        ctx.cluster()
    path = ctx.request.path.rstrip("/")
    scope = path[: len(path) - len(_SUFFIX)] if path.lower().endswith(_SUFFIX) else path
    return json_response({"value": permissions(ctx.seed, principal_of(ctx.seed, ctx.claims), scope)})
