"""Registry names are global: `<name>.azurecr.io` belongs to one registry in all of Azure.

Registries_CheckNameAvailability (POST `/subscriptions/{s}/providers/Microsoft.ContainerRegistry/checkNameAvailability`,
body `{"name", "type": "Microsoft.ContainerRegistry/registries"}`; RegistryCheckNameAvailable.json /
RegistryCheckNameNotAvailable.json, 2025-11-01; synchronous, `ArmProviderActionSync` in Registry.tsp) answers
`{"nameAvailable": true}` or `{"nameAvailable": false, "reason": "AlreadyExists", "message": "The registry <name> is
already in use."}`. A name is taken when a registry of this imitation has it (any group, case-insensitive) or it is
in `TAKEN_ELSEWHERE`, the imitation's stand-in for the registries of every other Azure customer (names short and
obvious enough that someone surely has them, `temporalworkers` among them). Registries_Create refuses a taken name
with ACR's 400 AlreadyInUse (registries.py). A name that breaks the 5-50 letters-and-digits rule answers
`nameAvailable: false` with reason `Invalid` (the enum's other value; the message is the imitation's).
"""

from __future__ import annotations

import re

from aiohttp import web

from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.state import Seed

TAKEN_ELSEWHERE = frozenset(
    {"temporalworkers", "temporal", "myregistry", "myacr", "registry", "containers",
     "workers", "docker", "images", "production", "staging", "acrdemo", "testregistry"}
)  # fmt: skip
REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"
_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")


def taken(seed: Seed, name: str) -> bool:
    """Whether `<name>.azurecr.io` belongs to some registry: this imitation's, or another customer's."""
    return name.lower() in TAKEN_ELSEWHERE or seed.registry(name) is not None


def in_use_error(name: str) -> ArmError:
    """Registries_Create's answer for a name someone else has."""
    return ArmError(
        400,
        "AlreadyInUse",
        f"The registry DNS name {name.lower()}.azurecr.io is already in use. You can check if the name is already "
        "claimed using following API: https://docs.microsoft.com/en-us/rest/api/containerregistry/registries/checknameavailability",
    )


async def registries_check_name_availability(ctx: Context) -> web.StreamResponse:
    body = await read_body(ctx)
    name, kind = str(body.get("name") or ""), str(body.get("type") or "")
    if kind.lower() != REGISTRY_TYPE.lower():
        raise ArmError(400, "InvalidParameter", f"The type '{kind}' is invalid: it must be '{REGISTRY_TYPE}'.")
    if not _NAME.match(name):
        return json_response(
            {
                "nameAvailable": False,
                "reason": "Invalid",
                "message": f"The registry name '{name}' is invalid: it must be 5-50 characters long and contain only letters and digits.",
            }
        )
    if taken(ctx.seed, name):
        return json_response(
            {"nameAvailable": False, "reason": "AlreadyExists", "message": f"The registry {name} is already in use."}
        )
    return json_response({"nameAvailable": True})
