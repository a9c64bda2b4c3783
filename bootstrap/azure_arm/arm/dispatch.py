"""The entry of every request under `/subscriptions/`: ARM's checks in ARM's order, then the handler.

route (404) -> bearer token (401) -> `api-version` for that operation (400) -> subscription (404) -> role
check (403) -> injected faults (429/500/4xx) -> resource group (404) -> the handler (which answers 404 for a
missing resource). Every answer carries ARM's headers and is counted for `/_imitation/requests`.
"""

from __future__ import annotations

import datetime
import uuid

from aiohttp import web

from bootstrap.azure_arm.arm.auth import authenticate, authorize
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response
from bootstrap.azure_arm.arm.injected_faults import fault_error
from bootstrap.azure_arm.arm.routing import ROUTES, Route, match
from bootstrap.azure_arm.faults import Faults
from bootstrap.azure_arm.state import Seed


def _arm_headers(request: web.Request) -> dict[str, str]:
    """The headers ARM puts on every answer (request ids, caching, rate-limit counters)."""
    headers = {
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Expires": "-1",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
    }
    headers["x-ms-routing-request-id"] = (
        f"WESTEUROPE:{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}:{headers['x-ms-correlation-request-id']}"
    )
    if request.method == "GET":
        headers["x-ms-ratelimit-remaining-subscription-reads"] = "11999"
    else:
        headers["x-ms-ratelimit-remaining-subscription-writes"] = "1199"
    if "x-ms-client-request-id" in request.headers:
        headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
    return headers


def _routed(request: web.Request, matched: tuple[Route, dict[str, str]] | None) -> tuple[Route, dict[str, str]]:
    if matched is None:
        raise ArmError(
            404,
            "NotFound",
            f"No HTTP resource was found that matches the request URI '{request.path}' (the imitation implements: {', '.join(r.operation for r in ROUTES)}).",
        )
    return matched


def _check_api_version(request: web.Request, route: Route, seed: Seed) -> None:
    version = request.query.get("api-version")
    if not version:
        raise ArmError(
            400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."
        )
    if version not in route.api_versions:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location '{seed.location}' and API version '{version}' for type "
            f"'{route.resource_type.split('/', 1)[1]}' (operation {route.operation}). The supported api-versions are "
            f"'{', '.join(sorted(route.api_versions))}'.",
        )


def _check_subscription(params: dict[str, str], seed: Seed) -> None:
    if params["subscriptionId"].lower() != seed.subscription_id.lower():
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{params['subscriptionId']}' could not be found.")


def _check_group(route: Route, params: dict[str, str], seed: Seed) -> None:
    if route.in_group and seed.group(params["resourceGroupName"]) is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{params['resourceGroupName']}' could not be found.")


def _error_response(err: ArmError) -> web.Response:
    response = json_response({"error": {"code": err.code, "message": err.message}}, status=err.status)
    response.headers.update(err.headers)
    response.headers["x-ms-failure-cause"] = "gateway" if err.status in (401, 403, 429) else "service"
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    seed: Seed = app["seed"]
    faults: Faults = app["faults"]
    matched = match(request.method, request.path)
    operation = matched[0].operation if matched else "Unknown"
    client_id: str | None = None
    headers = _arm_headers(request)
    try:
        route, params = _routed(request, matched)
        claims = authenticate(request, seed)
        client_id = claims.client_id
        _check_api_version(request, route, seed)
        _check_subscription(params, seed)
        authorize(request, route, seed, claims)
        if fault := faults.take_http(route.operation):
            raise fault_error(fault, request, seed, headers)
        _check_group(route, params, seed)
        response: web.StreamResponse = await route.handler(Context(request, params, seed, claims, app["base_url"]))
    except ArmError as err:
        response = _error_response(err)
    response.headers.update(headers)
    faults.record(operation=operation, method=request.method, path=request.path, status=response.status, client_id=client_id)
    return response
