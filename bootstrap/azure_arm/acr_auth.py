"""ACR's data-plane token exchange (Azure/acr docs/AAD-OAuth.md; the azure-containerregistry SDK's
`Authentication_ExchangeAadAccessTokenForAcrRefreshToken` / `Authentication_ExchangeAcrRefreshTokenForAcrAccessToken`):

1. `POST /oauth2/exchange` (form: `grant_type=access_token`, `service` = the login server, optional `tenant`,
   `access_token` = an Entra ID token for ARM) -> `{"refresh_token": ...}`;
2. `POST /oauth2/token` (form: `grant_type=refresh_token`, `service`, `scope` (repeatable), `refresh_token`)
   -> `{"access_token": ...}` whose `access` claim lists what each scope was granted.

The AAD token is checked as ARM checks it (signature, `exp`, audience, tenant). What the caller may do is what its
role assignments on a registry behind that login server grant, by the registry's roleAssignmentMode: in
LegacyRegistryPermissions the actions (pull: `registries/pull/read`; push: `registries/push/write`; delete:
`registries/artifacts/delete`; an unrestricted `*` role, Owner, everything), in AbacRepositoryPermissions the data
actions only (`repositories/content/read`, `/write`, `/delete`: the Container Registry Repository roles). A caller granted nothing gets no refresh token. Every refusal is 401 with the registry's error body
`{"errors": [{"code": "UNAUTHORIZED", "message": ...}]}`.

Both tokens are JWTs with ACR's claim sets (`iss` "Azure Container Registry", `aud` = the service, `grant_type`,
`permissions` / `access`), signed like every imitation token (identity.sign), so they are stateless too. The
imitation's registries themselves are anonymous (see README note 27): nothing here is needed to push or pull.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from bootstrap.azure_arm import identity
from bootstrap.azure_arm.arm.providers.registries import registry_id
from bootstrap.azure_arm.authorization import assignments_over, granted, principal_of
from bootstrap.azure_arm.state import RegistrySeed, Seed

ISSUER = "Azure Container Registry"
REFRESH_LIFETIME = 3 * 3600  # ACR refresh tokens last three hours
ACCESS_LIFETIME = 4500  # exp - iat of the access token in AAD-OAuth.md's example
_REGISTRY = "Microsoft.ContainerRegistry/registries"
# docker action -> (the ARM action, the data action) that grants it
DOCKER_ACTIONS: dict[str, tuple[str, str]] = {
    "pull": (f"{_REGISTRY}/pull/read", f"{_REGISTRY}/repositories/content/read"),
    "push": (f"{_REGISTRY}/push/write", f"{_REGISTRY}/repositories/content/write"),
    "delete": (f"{_REGISTRY}/artifacts/delete", f"{_REGISTRY}/repositories/content/delete"),
}


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": message}]}, status=401)


def _registries(seed: Seed, service: str) -> list[RegistrySeed]:
    """The registries whose login server is `service` (every registry of the imitation shares the --registry one)."""
    return [r for r in seed.registries if r.login_server.lower() == service.lower()]


def _permissions(seed: Seed, claims: identity.TokenClaims, registries: list[RegistrySeed]) -> dict[str, list[str]]:
    """The refresh token's `permissions`: what the caller's role assignments on one of `registries` (or above) grant.

    In LegacyRegistryPermissions mode only `actions` count (AcrPull, AcrPush, AcrDelete, Reader, Contributor; an
    unrestricted `*` role such as Owner is `*`); in AbacRepositoryPermissions mode only `dataActions` do (the
    Container Registry Repository Reader/Writer/Contributor roles): "Legacy ACR roles such as AcrPull, AcrPush, and
    AcrDelete are not honored in ABAC-enabled registries" (ACR's ABAC documentation), and Owner/Contributor/Reader,
    which carry no dataActions, give no data-plane access there either."""
    principal = principal_of(seed, claims)
    actions: list[str] = []
    data_actions: list[str] = []
    for registry in registries:
        scope = registry_id(seed, registry)
        abac = registry.role_assignment_mode == "AbacRepositoryPermissions"
        if not abac and any(
            r.get("actions") == ["*"] and not r.get("notActions") for _, r in assignments_over(seed, principal, scope)
        ):
            return {"actions": ["*"], "notActions": []}
        for action, data_action in DOCKER_ACTIONS.values():
            if not abac and action not in actions and granted(seed, principal, scope, action):
                actions.append(action)
            if abac and data_action not in data_actions and granted(seed, principal, scope, data_action, data=True):
                data_actions.append(data_action)
    return {"actions": actions, "notActions": []} | ({"dataActions": data_actions} if data_actions else {})


def _docker_actions(permissions: dict[str, Any]) -> set[str]:
    """What a refresh token's permissions allow on a repository: `{"*"}` for everything, else pull/push/delete."""
    actions, data_actions = permissions.get("actions") or [], permissions.get("dataActions") or []
    if "*" in actions:
        return {"*"}
    return {name for name, (action, data_action) in DOCKER_ACTIONS.items() if action in actions or data_action in data_actions}


async def handle_exchange(request: web.Request) -> web.Response:
    """`POST /oauth2/exchange`: an Entra ID token for ARM -> an ACR refresh token for `service`."""
    seed: Seed = request.app["seed"]
    form = await request.post()
    grant_type, service = str(form.get("grant_type", "")), str(form.get("service", ""))
    if grant_type != "access_token":
        return _unauthorized(
            f"grant_type '{grant_type}' is not supported: use access_token (access_token_refresh_token and refresh_token "
            "are deprecated and need AAD refresh tokens, which the imitation does not issue)."
        )
    registries = _registries(seed, service)
    if not registries:
        return _unauthorized(f"the service '{service}' is not the login server of a registry.")
    tenant = str(form.get("tenant", "") or "")
    if tenant and tenant.lower() != seed.tenant_id.lower():
        return _unauthorized(f"the tenant '{tenant}' is not the registry's tenant.")
    try:
        claims = identity.verify(seed, str(form.get("access_token", "")).strip())
    except identity.TokenExpired:
        return _unauthorized("the access token has expired.")
    except identity.TokenInvalid:
        return _unauthorized("the access token is invalid.")
    if claims.audience not in identity.ARM_AUDIENCES:
        return _unauthorized(f"the access token has been obtained for the wrong audience '{claims.audience}'.")
    if claims.tenant_id != seed.tenant_id:
        return _unauthorized(f"the access token is from the wrong tenant '{claims.tenant_id}'.")
    permissions = _permissions(seed, claims, registries)
    if not _docker_actions(permissions):
        return _unauthorized(
            f"the client '{claims.client_id}' with object id '{claims.object_id}' has no role on the registry "
            f"'{registries[0].name}' that allows pull or push."
        )
    now = int(time.time())
    refresh = identity.sign(
        seed,
        {
            "jti": str(uuid.uuid4()),
            "sub": claims.object_id,
            "nbf": now,
            "exp": now + REFRESH_LIFETIME,
            "iat": now,
            "iss": ISSUER,
            "aud": service,
            "version": "1.0",
            "grant_type": "refresh_token",
            "tenant": seed.tenant_id,
            "permissions": permissions,
            "roles": [],
        },
    )
    return web.json_response({"refresh_token": refresh})


def _scope_access(scope: str, allowed: set[str]) -> dict[str, Any] | None:
    """One `type:name:actions` scope as an `access` entry with the granted actions (None if malformed)."""
    kind, _, rest = scope.partition(":")
    name, _, wanted = rest.rpartition(":")
    if not kind or not name or not wanted:
        return None
    requested = [a for a in wanted.split(",") if a]
    if "*" in allowed:
        actions = requested
    elif kind == "repository":
        actions = [a for a in requested if a in allowed]
    else:  # registry:catalog:* and the like need every permission
        actions = []
    return {"type": kind, "name": name, "actions": actions}


async def handle_token(request: web.Request) -> web.Response:
    """`POST /oauth2/token`: an ACR refresh token -> an ACR access token for the requested scopes."""
    seed: Seed = request.app["seed"]
    form = await request.post()
    grant_type, service = str(form.get("grant_type", "")), str(form.get("service", ""))
    if grant_type != "refresh_token":
        return _unauthorized(f"grant_type '{grant_type}' is not supported: use refresh_token.")
    try:
        refresh = identity.signed_claims(seed, str(form.get("refresh_token", "")).strip())
    except identity.TokenExpired:
        return _unauthorized("the refresh token has expired.")
    except identity.TokenInvalid:
        return _unauthorized("the refresh token is invalid.")
    if refresh.get("iss") != ISSUER or refresh.get("grant_type") != "refresh_token":
        return _unauthorized("the refresh token is invalid.")
    if str(refresh.get("aud", "")).lower() != service.lower() or not _registries(seed, service):
        return _unauthorized(f"the refresh token was not issued for the service '{service}'.")
    allowed = _docker_actions(refresh.get("permissions") or {})
    access = []
    for scope in [str(s) for s in form.getall("scope", [])]:
        for part in scope.split():
            entry = _scope_access(part, allowed)
            if entry is None:
                return _unauthorized(f"the scope '{part}' is not valid.")
            access.append(entry)
    now = int(time.time())
    token = identity.sign(
        seed,
        {
            "jti": str(uuid.uuid4()),
            "sub": refresh.get("sub", ""),
            "nbf": now,
            "exp": now + ACCESS_LIFETIME,
            "iat": now,
            "iss": ISSUER,
            "aud": service,
            "version": "1.0",
            "access": access,
            "roles": [],
            "grant_type": "access_token",
            "tenant": refresh.get("tenant", seed.tenant_id),
        },
    )
    return web.json_response({"access_token": token})
