"""ARM's gateway checks of the caller: the bearer token (401) and the caller's role (403 AuthorizationFailed)."""

from __future__ import annotations

import datetime
import re

from aiohttp import web

from bootstrap.azure_arm import identity
from bootstrap.azure_arm.arm.context import ArmError
from bootstrap.azure_arm.arm.providers.role_assignments import ROLE_DEFINITIONS
from bootstrap.azure_arm.arm.routing import Route
from bootstrap.azure_arm.state import Seed

_MISSING_HEADER = {
    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The authentication failed because of missing \'Authorization\' header."'
}
_EXPIRED = {
    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The access token has expired."'
}
_INVALID = {
    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The access token is invalid."'
}


def _bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise ArmError(
            401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.", _MISSING_HEADER
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ArmError(
            401,
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            _MISSING_HEADER,
        )
    return token


def _verified(seed: Seed, token: str) -> identity.TokenClaims:
    try:
        return identity.verify(seed, token.strip())
    except identity.TokenExpired as exc:
        expired = datetime.datetime.fromtimestamp(exc.expired_at, datetime.UTC)
        raise ArmError(
            401,
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{expired:%m/%d/%Y %I:%M:%S %p}' is earlier than current UTC time "
            f"'{datetime.datetime.now(datetime.UTC):%m/%d/%Y %I:%M:%S %p}'.",
            _EXPIRED,
        ) from None
    except identity.TokenInvalid:
        raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", _INVALID) from None


def authenticate(request: web.Request, seed: Seed) -> identity.TokenClaims:
    """The claims of the request's bearer token, an ARM token of the seed's tenant; 401 otherwise."""
    claims = _verified(seed, _bearer_token(request))
    if claims.audience not in identity.ARM_AUDIENCES:
        raise ArmError(
            401,
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{claims.audience}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
        )
    if claims.tenant_id != seed.tenant_id:
        raise ArmError(
            401, "InvalidAuthenticationTokenTenant", f"The access token is from the wrong issuer '{claims.tenant_id}'."
        )
    return claims


def _action_matches(pattern: str, action: str) -> bool:
    """An RBAC action pattern (`*` any characters, case-insensitive) against an operation's action."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), action, re.IGNORECASE) is not None


def _in_scope(scope: str, path: str) -> bool:
    scope, path = scope.rstrip("/").lower(), path.rstrip("/").lower()
    return path == scope or path.startswith(scope + "/")


def granted(seed: Seed, principal: str, path: str, action: str, *, data: bool = False) -> bool:
    """Whether a role assignment of `principal` at `path` or above grants `action` (its role's actions minus
    notActions, as builtin-roles.json lists them; with `data`, its dataActions minus notDataActions)."""
    allowed, denied = ("dataActions", "notDataActions") if data else ("actions", "notActions")
    for assignment in seed.role_assignments:
        if assignment.principal_id.lower() != principal.lower() or not _in_scope(assignment.scope, path):
            continue
        role = ROLE_DEFINITIONS.get(assignment.role_definition_id.rsplit("/", 1)[-1].lower())
        if role is None:
            continue
        if any(_action_matches(a, action) for a in role.get(allowed, [])) and not any(
            _action_matches(n, action) for n in role.get(denied, [])
        ):
            return True
    return False


def authorize(request: web.Request, route: Route, seed: Seed, claims: identity.TokenClaims) -> None:
    """403 AuthorizationFailed unless the caller is a seeded client with access (allowed everything), or a
    user-assigned identity (a federated token's caller) with a role assignment granting the route's action at the
    request's resource or above."""
    client = seed.client(claims.client_id)
    managed = seed.identity_by_client_id(claims.client_id) if client is None else None
    if managed is not None and granted(seed, managed.principal_id, request.path, route.action):
        return
    if client is None or not client.has_access:
        scope = request.path.rstrip("/")
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{claims.client_id}' with object id '{claims.object_id}' does not have authorization to perform "
            f"action '{route.action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
            "please refresh your credentials.",
        )
