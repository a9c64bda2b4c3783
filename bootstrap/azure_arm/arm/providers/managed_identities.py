"""Microsoft.ManagedIdentity/userAssignedIdentities and their federatedIdentityCredentials (all synchronous).

UserAssignedIdentities_CreateOrUpdate/Get/Delete and FederatedIdentityCredentials_CreateOrUpdate/Get/Delete/List,
shaped after IdentityCreate.json / FederatedIdentityCredentialCreate.json (2026-05-31). An identity's clientId and
principalId are generated once, at its creation, and kept in seed.json; the token endpoint (identity.py) accepts
the identity's clientId with an assertion that one of its federated credentials matches, and ARM's role check
(auth.py) then grants what the role assignments of its principalId grant.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm import creation
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.state import FederatedCredentialSeed, IdentitySeed

_MSI = "Microsoft.ManagedIdentity/userAssignedIdentities"
_FIC_NAME = re.compile(r"^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$")  # FederatedIdentityCredential.tsp


def identity_id(ctx: Context, identity: IdentitySeed) -> str:
    """As the service spells it (IdentityCreate.json): lower-case `resourcegroups`."""
    return f"/subscriptions/{ctx.seed.subscription_id}/resourcegroups/{identity.resource_group}/providers/{_MSI}/{identity.name}"


def _identity_body(ctx: Context, identity: IdentitySeed) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "clientId": identity.client_id,
        "principalId": identity.principal_id,
        "tenantId": ctx.seed.tenant_id,
    }
    if ctx.request.query.get("api-version", "") >= "2026-05-31":  # members the 2026-05-31 example adds
        properties |= {"isolationScope": "None", "assignmentRestrictions": {"providers": []}}
    return {
        "id": identity_id(ctx, identity),
        "location": identity.location,
        "name": identity.name,
        "properties": properties,
        "tags": dict(identity.tags),
        "type": _MSI,
    }


def _fic_body(ctx: Context, identity: IdentitySeed, fic: FederatedCredentialSeed) -> dict[str, Any]:
    return {
        "id": f"{identity_id(ctx, identity)}/federatedIdentityCredentials/{fic.name}",
        "name": fic.name,
        "properties": {"issuer": fic.issuer, "subject": fic.subject, "audiences": list(fic.audiences)},
        "type": f"{_MSI}/federatedIdentityCredentials",
    }


def _identity(ctx: Context) -> IdentitySeed:
    name = ctx.params["identityName"]
    found = ctx.seed.identity(name, ctx.group)
    if found is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{_MSI}/{name}' under resource group '{ctx.group}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return found


# -- userAssignedIdentities -------------------------------------------------


async def user_assigned_identities_create_or_update(ctx: Context) -> web.StreamResponse:
    """201 new (clientId/principalId generated once), 200 existing (tags replaced); another location is 400."""
    name = ctx.params["identityName"]
    body = await read_body(ctx)
    location = creation.known_location(body.get("location"), "userAssignedIdentities")
    existing = ctx.seed.identity(name, ctx.group)
    if existing is not None:
        if creation.normal_location(existing.location) != location:
            raise creation.moved("user assigned identity", name, ctx.group, existing.location, location)
        existing.tags = creation.tags(body)
        ctx.save()
        return json_response(_identity_body(ctx, existing), status=200)
    identity = IdentitySeed(name=name, location=location, resource_group=ctx.group, tags=creation.tags(body))
    ctx.seed.identities.append(identity)
    ctx.save()
    return json_response(_identity_body(ctx, identity), status=201)


async def user_assigned_identities_get(ctx: Context) -> web.StreamResponse:
    return json_response(_identity_body(ctx, _identity(ctx)))


async def user_assigned_identities_delete(ctx: Context) -> web.StreamResponse:
    """200 deleted (no body), 204 absent. Its role assignments stay, as in Azure (they then name an unknown principal)."""
    found = ctx.seed.identity(ctx.params["identityName"], ctx.group)
    if found is None:
        return web.Response(status=204)
    ctx.seed.identities.remove(found)
    ctx.save()
    return web.Response(status=200)


# -- federatedIdentityCredentials -------------------------------------------


def _bad_request(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _checked_fic(name: str, body: dict[str, Any]) -> FederatedCredentialSeed:
    if not _FIC_NAME.match(name):
        raise _bad_request(
            f"The federated identity credential name '{name}' is invalid: 3-120 characters, letters, digits, '-' and "
            "'_', starting with a letter or digit."
        )
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise _bad_request("The request body must contain 'properties' with 'issuer', 'subject' and 'audiences'.")
    issuer, subject, audiences = properties.get("issuer"), properties.get("subject"), properties.get("audiences")
    parsed = urllib.parse.urlsplit(issuer) if isinstance(issuer, str) else None
    if not isinstance(issuer, str) or parsed is None or parsed.scheme != "https" or not parsed.netloc:
        raise _bad_request(f"The issuer '{issuer}' is invalid: it must be an https URL.")
    if not isinstance(subject, str) or not subject.strip():
        raise _bad_request("The subject is required.")
    if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str) or not audiences[0]:
        raise _bad_request("The audiences property must hold exactly one audience.")
    return FederatedCredentialSeed(name=name, issuer=issuer, subject=subject, audiences=[audiences[0]])


async def federated_identity_credentials_create_or_update(ctx: Context) -> web.StreamResponse:
    """201 new, 200 replaced. Another credential of the identity with the same issuer and subject is 400."""
    identity = _identity(ctx)
    name = ctx.params["ficName"]
    wanted = _checked_fic(name, await read_body(ctx))
    for other in identity.federated_credentials:
        if other.name.lower() != name.lower() and (other.issuer, other.subject) == (wanted.issuer, wanted.subject):
            raise _bad_request(
                f"The federated identity credential '{other.name}' of this identity already has issuer "
                f"'{wanted.issuer}' and subject '{wanted.subject}'."
            )
    existing = next((f for f in identity.federated_credentials if f.name.lower() == name.lower()), None)
    if existing is not None:
        existing.issuer, existing.subject, existing.audiences = wanted.issuer, wanted.subject, wanted.audiences
        ctx.save()
        return json_response(_fic_body(ctx, identity, existing), status=200)
    identity.federated_credentials.append(wanted)
    ctx.save()
    return json_response(_fic_body(ctx, identity, wanted), status=201)


async def federated_identity_credentials_get(ctx: Context) -> web.StreamResponse:
    identity = _identity(ctx)
    name = ctx.params["ficName"]
    found = next((f for f in identity.federated_credentials if f.name.lower() == name.lower()), None)
    if found is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{_MSI}/{identity.name}/federatedIdentityCredentials/{name}' under resource group "
            f"'{ctx.group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return json_response(_fic_body(ctx, identity, found))


async def federated_identity_credentials_delete(ctx: Context) -> web.StreamResponse:
    identity = _identity(ctx)
    name = ctx.params["ficName"]
    found = next((f for f in identity.federated_credentials if f.name.lower() == name.lower()), None)
    if found is None:
        return web.Response(status=204)
    identity.federated_credentials.remove(found)
    ctx.save()
    return web.Response(status=200)


async def federated_identity_credentials_list(ctx: Context) -> web.StreamResponse:
    """`value` in creation order; `$top` pages it with a `nextLink` carrying `$skiptoken`."""
    identity = _identity(ctx)
    query = ctx.request.query
    try:
        start = int(query.get("$skiptoken") or 0)
        top = int(query["$top"]) if "$top" in query else None
    except ValueError as exc:
        raise _bad_request(f"Invalid paging parameter: {exc}") from exc
    items = identity.federated_credentials[start:]
    body: dict[str, Any] = {"value": [_fic_body(ctx, identity, f) for f in (items[:top] if top else items)]}
    if top and len(items) > top:
        next_query = urllib.parse.urlencode({**query, "$skiptoken": str(start + top)})
        body["nextLink"] = f"{ctx.base_url}{ctx.request.path}?{next_query}"
    return json_response(body)
