"""ARM's gateway checks of the caller: the bearer token (401) and the caller's role assignments (403
AuthorizationFailed, evaluated in bootstrap/azure_arm/authorization.py).

`granted` is re-exported for the ACR token exchange (acr_auth.py)."""

from __future__ import annotations

import datetime

from aiohttp import web

from bootstrap.azure_arm import identity
from bootstrap.azure_arm.arm.context import ArmError
from bootstrap.azure_arm.arm.routing import Route
from bootstrap.azure_arm.authorization import denied_message, granted, principal_of
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


def authorize(request: web.Request, route: Route, seed: Seed, claims: identity.TokenClaims) -> None:
    """403 AuthorizationFailed unless a role assignment of the caller (a seeded client, a user-assigned identity)
    at the request's path or above allows the route's action (authorization.py). A route without an action
    (Permissions_List*: every caller may read its own permissions) is not checked."""
    if not route.action or granted(seed, principal_of(seed, claims), request.path, route.action):
        return
    raise ArmError(403, "AuthorizationFailed", denied_message(claims, route.action, request.path.rstrip("/")))


__all__ = ["authenticate", "authorize", "granted"]
