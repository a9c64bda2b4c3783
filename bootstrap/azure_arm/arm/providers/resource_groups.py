"""Microsoft.Resources/resourceGroups: ResourceGroups_Get and ResourceGroups_CreateOrUpdate (synchronous)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm import creation
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
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


async def resource_groups_get(ctx: Context) -> web.StreamResponse:
    group = ctx.seed.group(ctx.group)
    if group is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{ctx.group}' could not be found.")
    return json_response(_group_body(ctx.seed, group))


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
