"""Microsoft.ContainerRegistry/registries: Registries_Get, Registries_Create and Registries_Delete (long-running),
Registries_ListCredentials.

`properties.roleAssignmentMode` (LegacyRegistryPermissions, the default, or AbacRepositoryPermissions) is read
from a PUT and shown at the api-versions that define it (`MODE_VERSIONS`); a PUT on an existing registry that
names it switches the mode (as `az acr update --role-assignment-mode` does). Names are global (registry_names.py).

The build operations on a registry (listBuildSourceUploadUrl, scheduleRun, runs) are in registry_runs.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm import creation
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.arm.operations import delete_settled, in_progress, start_operation
from bootstrap.azure_arm.arm.providers import registry_names
from bootstrap.azure_arm.builds import now_iso
from bootstrap.azure_arm.state import RegistrySeed, Seed

REGISTRY_SKUS = ("Basic", "Standard", "Premium")
ROLE_ASSIGNMENT_MODES = ("AbacRepositoryPermissions", "LegacyRegistryPermissions")
# The api-versions whose Registry has `properties.roleAssignmentMode`: the 2025-11-01 examples (RegistryCreate.json)
# and azure-mgmt-containerregistry 14's v2025_03_01_preview models (its default 2025-04-01 has none). Other versions
# neither read it from a PUT nor show it, as ARM ignores properties an api-version does not define.
MODE_VERSIONS = frozenset({"2025-03-01-preview", "2025-05-01-preview", "2025-06-01-preview", "2025-11-01"})
_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")


def registry_id(seed: Seed, registry: RegistrySeed) -> str:
    return (
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.group_of(registry)}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry.name}"
    )


def registry_body(seed: Seed, registry: RegistrySeed) -> dict[str, Any]:
    return {
        "id": registry_id(seed, registry),
        "name": registry.name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": registry.location,
        "tags": dict(registry.tags),
        "sku": {"name": registry.sku, "tier": registry.sku},
        "properties": {
            "loginServer": registry.login_server,
            "creationDate": registry.creation_date,
            "provisioningState": registry.provisioning_state,
            "adminUserEnabled": registry.admin_user_enabled,
            "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "lastUpdatedTime": registry.creation_date, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
            },
            "encryption": {"status": "disabled"},
            "status": None,
            "dataEndpointEnabled": False,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "networkRuleBypassAllowedForTasks": False,
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": False,
            "roleAssignmentMode": registry.role_assignment_mode,
        },
    }


def _shown(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """`body` as the request's api-version defines a Registry (no roleAssignmentMode before 2025-03-01-preview)."""
    if ctx.request.query.get("api-version") not in MODE_VERSIONS:
        body["properties"].pop("roleAssignmentMode", None)
    return body


async def registries_get(ctx: Context) -> web.StreamResponse:
    return json_response(_shown(ctx, registry_body(ctx.seed, ctx.registry())))


async def registries_list_credentials(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    if not registry.admin_user_enabled:
        raise ArmError(
            400,
            "UnAuthorizedForCredentialOperations",
            f"Cannot perform credential operations for {registry_id(ctx.seed, registry)} as admin user is disabled. "
            "Kindly enable admin user as per docs: https://docs.microsoft.com/azure/container-registry/container-registry-authentication#admin-account",
        )
    return json_response(
        {
            "username": registry.name,
            "passwords": [
                {"name": name, "value": value} for name, value in zip(("password", "password2"), registry.passwords, strict=False)
            ],
        }
    )


@dataclass(frozen=True)
class _CreateRequest:
    """A Registries_Create body, checked as ACR checks it."""

    body: dict[str, Any]
    location: str
    sku: str
    admin: bool
    mode: str | None  # properties.roleAssignmentMode when the api-version has it and the body names it


async def _create_request(ctx: Context, name: str) -> _CreateRequest:
    if not _REGISTRY_NAME.match(name):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The registry name '{name}' is invalid: it must be 5-50 characters long and contain only letters and digits.",
        )
    body = await read_body(ctx)
    location = creation.known_location(body.get("location"), "registries")
    sku = str((body.get("sku") or {}).get("name") or "")
    if sku not in REGISTRY_SKUS:
        raise ArmError(
            400,
            "InvalidSku",
            f"The sku '{sku}' is invalid: it must be one of {', '.join(REGISTRY_SKUS)} (the 'sku.name' property).",
        )
    properties = body.get("properties") or {}
    mode = properties.get("roleAssignmentMode") if ctx.request.query.get("api-version") in MODE_VERSIONS else None
    if mode is not None:
        mode = next((m for m in ROLE_ASSIGNMENT_MODES if m.lower() == str(mode).lower()), None)
        if mode is None:
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value '{properties.get('roleAssignmentMode')}' of 'properties.roleAssignmentMode' is invalid: "
                f"it must be one of {', '.join(ROLE_ASSIGNMENT_MODES)}.",
            )
    return _CreateRequest(body, location, sku, bool(properties.get("adminUserEnabled", False)), mode)


def _update(ctx: Context, existing: RegistrySeed, wanted: _CreateRequest) -> web.StreamResponse:
    """Registries_Create on an existing registry: 200 Succeeded at once (sku, admin user, tags)."""
    name = ctx.params["registryName"]
    if creation.normal_location(existing.location) != wanted.location:
        raise creation.moved("registry", name, ctx.group, existing.location, wanted.location)
    if existing.provisioning_state in ("Creating", "Updating"):
        raise in_progress("registry", name)
    existing.sku, existing.admin_user_enabled, existing.tags = wanted.sku, wanted.admin, creation.tags(wanted.body)
    existing.role_assignment_mode = wanted.mode or existing.role_assignment_mode
    ctx.save()
    return json_response(_shown(ctx, registry_body(ctx.seed, existing)))


async def registries_create(ctx: Context) -> web.StreamResponse:
    """Registries_Create: new -> 201 Creating + Azure-AsyncOperation; existing -> 200 Succeeded (sku, admin user, tags)."""
    name = ctx.params["registryName"]
    wanted = await _create_request(ctx, name)
    existing = ctx.seed.registry(name, ctx.group)
    if existing is not None:
        return _update(ctx, existing, wanted)
    if registry_names.taken(ctx.seed, name):  # another group's, or another customer's (registry_names.py)
        raise registry_names.in_use_error(name)
    registry = RegistrySeed(
        name=name,
        location=wanted.location,
        login_server=ctx.request.app["login_server"],
        admin_user_enabled=wanted.admin,
        creation_date=now_iso(),
        resource_group=ctx.group,
        sku=wanted.sku,
        provisioning_state="Creating",
        tags=creation.tags(wanted.body),
        role_assignment_mode=wanted.mode or "LegacyRegistryPermissions",
    )
    ctx.seed.registries.append(registry)
    ctx.save()
    _, headers = start_operation(ctx, kind="registry", name=name, operation="Registries_Create")
    response = json_response(_shown(ctx, registry_body(ctx.seed, registry)), status=201)
    response.headers.update(headers)
    return response


async def registries_delete(ctx: Context) -> web.StreamResponse:
    """RegistryDelete.json: 204 absent; else 202 + `Location` (its operationStatuses URL), provisioningState
    Deleting until the registry is gone."""
    registry = ctx.seed.registry(ctx.params["registryName"], ctx.group)
    if registry is None:
        return web.Response(status=204)
    location = f"{ctx.base_url}{registry_id(ctx.seed, registry)}/operationStatuses"
    return delete_settled(ctx, registry, kind="registry", operation="Registries_Delete", location=location)
