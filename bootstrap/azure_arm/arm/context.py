"""What every ARM handler works with: the request's `Context`, `ArmError` (ARM's error answer), JSON in and out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bootstrap.azure_arm import identity
from bootstrap.azure_arm.state import ClusterSeed, RegistrySeed, Seed


class ArmError(Exception):
    """An ARM error answer: `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass(frozen=True)
class Context:
    request: web.Request
    params: dict[str, str]
    seed: Seed
    claims: identity.TokenClaims
    base_url: str

    @property
    def group(self) -> str:
        return self.params["resourceGroupName"]

    def registry(self) -> RegistrySeed:
        name = self.params["registryName"]
        found = self.seed.registry(name, self.group)
        if found is None:
            raise not_found("Microsoft.ContainerRegistry/registries", name, self.group)
        return found

    def cluster(self) -> ClusterSeed:
        name = self.params["resourceName"]
        found = self.seed.cluster(name, self.group)
        if found is None:
            raise not_found("Microsoft.ContainerService/managedClusters", name, self.group)
        return found

    def save(self) -> None:
        """Persist the seed (created or changed resources) to DIR/seed.json."""
        self.seed.save(self.request.app["state_dir"] / "seed.json")


Handler = Callable[[Context], Awaitable[web.StreamResponse]]


def not_found(resource_type: str, name: str, group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", charset="utf-8")


async def read_body(ctx: Context) -> dict[str, Any]:
    """The request's JSON object ({} when empty); 400 InvalidRequestContent otherwise."""
    raw = await ctx.request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {exc}"
        ) from exc
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body
