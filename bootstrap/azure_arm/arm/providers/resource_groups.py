"""Microsoft.Resources/resourceGroups: ResourceGroups_Get, ResourceGroups_CreateOrUpdate (synchronous) and
ResourceGroups_Delete (long-running: the group and every registry, cluster and identity in it)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm import creation
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.arm.operations import start_deletion
from bootstrap.azure_arm.state import GroupSeed, Seed

_GROUP_NAME = re.compile(r"^[-\w._()]{1,90}$")


def _group_body(seed: Seed, group: GroupSeed) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{seed.subscription_id}/resourceGroups/{group.name}",
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": dict(group.tags),
        "properties": {"provisioningState": "Succeeded"},
    }


def _existing(ctx: Context) -> GroupSeed:
    group = ctx.seed.group(ctx.group)
    if group is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{ctx.group}' could not be found.")
    return group


async def resource_groups_get(ctx: Context) -> web.StreamResponse:
    return json_response(_group_body(ctx.seed, _existing(ctx)))


async def resource_groups_delete(ctx: Context) -> web.StreamResponse:
    """202 + `Location` (ForceDeleteVMsInResourceGroup.json); the group and what it holds go when it ends. An absent
    group is 404 ResourceGroupNotFound, as ResourceGroups_Get answers."""
    group = _existing(ctx)

    def remove(seed: Seed) -> None:
        name = group.name.lower()
        seed.registries = [r for r in seed.registries if seed.group_of(r).lower() != name]
        seed.clusters = [c for c in seed.clusters if seed.group_of(c).lower() != name]
        seed.identities = [i for i in seed.identities if i.resource_group.lower() != name]
        seed.groups = [g for g in seed.groups if g.name.lower() != name]

    location = f"{ctx.base_url}/subscriptions/{ctx.seed.subscription_id}/operationresults"
    return start_deletion(ctx, kind="group", name=group.name, operation="ResourceGroups_Delete", location=location, remove=remove)


async def resource_groups_create_or_update(ctx: Context) -> web.StreamResponse:
    """Synchronous: 201 new, 200 existing (tags replaced); moving a group to another location is 409."""
    if not _GROUP_NAME.match(ctx.group) or ctx.group.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The provided resource group name '{ctx.group}' has these invalid characters: the name may hold 1-90 "
            "letters, digits, underscores, parentheses, hyphens and periods, and may not end in a period.",
        )
    body = await read_body(ctx)
    location = creation.known_location(body.get("location"), "resourceGroups")
    existing = ctx.seed.group(ctx.group)
    if existing is not None:
        if creation.normal_location(existing.location) != location:
            raise ArmError(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{body.get('location')}'. "
                f"The Resource group already exists in location '{existing.location}'.",
            )
        existing.tags = creation.tags(body)
        ctx.save()
        return json_response(_group_body(ctx.seed, existing))
    group = GroupSeed(ctx.group, location, creation.tags(body))
    ctx.seed.groups.append(group)
    ctx.save()
    return json_response(_group_body(ctx.seed, group), status=201)
