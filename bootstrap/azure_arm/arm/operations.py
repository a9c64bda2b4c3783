"""ARM's long-running operations (Registries_Create, ManagedClusters_CreateOrUpdate, and the deletes): start, finish, status.

A creating PUT answers 201/200 with `Azure-AsyncOperation` (the status URL) and `Retry-After: 1`; the
operation says `InProgress` for OPERATION_SECONDS of its kind, then `Succeeded` (or `Failed`, when a
`failOperation` fault for its ARM operation was pending), and the resource's provisioningState follows.

A delete (ResourceGroups_Delete, Registries_Delete, ManagedClusters_Delete) answers 202 with a `Location`
header, as Microsoft's examples show (ForceDeleteVMsInResourceGroup.json, RegistryDelete.json,
ManagedClustersDelete.json): the resource says provisioningState `Deleting` for OPERATION_SECONDS of its
kind, then is gone. Polling `Location` answers 202 (with `Retry-After`) while it runs, then 200 with no body
(`start_deletion`, `operation_result`).
Operations live in memory (`app["operations"]`); `finish_interrupted` settles what a stopped imitation left.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm.context import ArmError, Context, json_response
from bootstrap.azure_arm.builds import now_iso
from bootstrap.azure_arm.state import ClusterSeed, Operation, RegistrySeed, Seed

# How long a created registry / cluster stays provisioningState "Creating" (real ones take ~10 s / ~5 min).
OPERATION_SECONDS = {"registry": 1.0, "cluster": 2.0, "group": 1.0}


def start_operation(ctx: Context, *, kind: str, name: str, operation: str) -> tuple[Operation, dict[str, str]]:
    """Register a running asynchronous operation; it ends after OPERATION_SECONDS[kind] (or fails, if a
    `failOperation` fault for `operation` is pending). Returns it and the headers of the 201/200 answer."""
    app = ctx.request.app
    op = Operation(
        id=str(uuid.uuid4()),
        operation=operation,
        resource_kind=kind,
        resource_group=ctx.group,
        resource_name=name,
        start_time=now_iso(),
    )
    app["operations"][op.id] = op
    fault = app["faults"].take_operation(operation)
    asyncio.get_running_loop().call_later(app["operation_seconds"][kind], _finish_operation, app, op, fault)
    return op, {"Azure-AsyncOperation": _status_url(ctx, kind=kind, name=name, op=op), "Retry-After": "1"}


def _status_url(ctx: Context, *, kind: str, name: str, op: Operation) -> str:
    """Where the operation's status is read: under the registry (ACR), or under the cluster's location (AKS)."""
    version = ctx.request.query["api-version"]
    sub = ctx.seed.subscription_id
    if kind == "registry":
        return (
            f"{ctx.base_url}/subscriptions/{sub}/resourceGroups/{ctx.group}/providers/Microsoft.ContainerRegistry"
            f"/registries/{name}/operationStatuses/registries-{op.id}?api-version={version}"
        )
    location = ctx.seed.cluster(name, ctx.group).location  # type: ignore[union-attr]
    return (
        f"{ctx.base_url}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}"
        f"/operationStatus/{op.id}?api-version={version}"
    )


def _finish_operation(app: web.Application, op: Operation, fault: dict[str, Any] | None) -> None:
    seed: Seed = app["seed"]
    resource = (
        seed.registry(op.resource_name, op.resource_group)
        if op.resource_kind == "registry"
        else seed.cluster(op.resource_name, op.resource_group)
    )
    op.end_time = now_iso()
    if fault is not None:
        op.status = "Failed"
        op.error = {
            "code": str(fault.get("code") or "InternalOperationError"),
            "message": str(fault.get("message") or f"The operation {op.operation} on '{op.resource_name}' failed."),
        }
    else:
        op.status = "Succeeded"
    if resource is not None:
        resource.provisioning_state = op.status
        seed.save(app["state_dir"] / "seed.json")


def start_deletion(
    ctx: Context, *, kind: str, name: str, operation: str, location: str, remove: Callable[[Seed], None]
) -> web.StreamResponse:
    """A long-running delete: 202 with `Location` (`location` + the operation id + the request's api-version) and
    `Retry-After: 1`; after OPERATION_SECONDS[kind] `remove(seed)` runs, the seed is saved and the operation
    has Succeeded."""
    app = ctx.request.app
    op = Operation(
        id=str(uuid.uuid4()),
        operation=operation,
        resource_kind=kind,
        resource_group=ctx.group if "resourceGroupName" in ctx.params else "",
        resource_name=name,
        start_time=now_iso(),
    )
    app["operations"][op.id] = op

    def finish() -> None:
        remove(app["seed"])
        op.status, op.end_time = "Succeeded", now_iso()
        app["seed"].save(app["state_dir"] / "seed.json")

    asyncio.get_running_loop().call_later(app["operation_seconds"].get(kind, 1.0), finish)
    version = ctx.request.query["api-version"]
    prefix = "registries-" if kind == "registry" else ""
    response = web.Response(status=202)
    response.headers.update({"Location": f"{location}/{prefix}{op.id}?api-version={version}", "Retry-After": "1"})
    return response


def delete_settled(
    ctx: Context, resource: RegistrySeed | ClusterSeed, *, kind: str, operation: str, location: str
) -> web.StreamResponse:
    """Registries_Delete / ManagedClusters_Delete of an existing resource: 409 while its create or update still
    runs; else provisioningState Deleting, and `start_deletion` (the resource leaves the seed at the end)."""
    if resource.provisioning_state in ("Creating", "Updating"):
        raise in_progress("registry" if kind == "registry" else "managed cluster", resource.name)
    resource.provisioning_state = "Deleting"
    ctx.save()

    def remove(seed: Seed) -> None:
        for collection in (seed.registries, seed.clusters):
            if resource in collection:
                collection.remove(resource)  # type: ignore[arg-type]

    return start_deletion(ctx, kind=kind, name=resource.name, operation=operation, location=location, remove=remove)


def _deleting(op: Operation) -> bool:
    return op.operation.endswith("_Delete")


def finish_interrupted(seed: Seed) -> bool:
    """At start-up: resources left Creating/Updating by a stopped imitation have finished meanwhile; those
    left Deleting are gone."""
    changed = False
    resources: list[RegistrySeed | ClusterSeed] = [*seed.registries, *seed.clusters]
    for resource in resources:
        if resource.provisioning_state in ("Creating", "Updating"):
            resource.provisioning_state = "Succeeded"
            changed = True
    for registry in [r for r in seed.registries if r.provisioning_state == "Deleting"]:
        seed.registries.remove(registry)
        changed = True
    for cluster in [c for c in seed.clusters if c.provisioning_state == "Deleting"]:
        seed.clusters.remove(cluster)
        changed = True
    return changed


def in_progress(kind: str, name: str) -> ArmError:
    """ARM's answer to a PUT while the resource's previous operation still runs."""
    return ArmError(
        409,
        "OperationNotAllowed",
        f"Operation is not allowed because there's an in progress operation on {kind} '{name}'. "
        "Please wait for it to finish before starting a new operation.",
    )


async def operation_status(ctx: Context) -> web.StreamResponse:
    """Registries_GetOperationStatus and ManagedClusters_GetOperationStatus; a Registries_Delete's `Location`
    (the same URL) answers as `operation_result` does."""
    op = _operation(ctx)
    if _deleting(op):
        return await operation_result(ctx)
    body: dict[str, Any] = {
        "id": ctx.request.path,
        "name": ctx.params["operationId"],
        "status": op.status,
        "startTime": op.start_time,
    }
    if op.end_time:
        body["endTime"] = op.end_time
    if op.error:
        body["error"] = dict(op.error)
    response = json_response(body)
    if op.status == "InProgress":
        response.headers["Retry-After"] = "1"
    return response


def _operation(ctx: Context) -> Operation:
    op_id = ctx.params["operationId"].removeprefix("registries-")
    op: Operation | None = ctx.request.app["operations"].get(op_id)
    if op is None:
        raise ArmError(404, "NotFound", f"The operation '{ctx.params['operationId']}' was not found.")
    return op


async def operation_result(ctx: Context) -> web.StreamResponse:
    """A delete's `Location`: 202 (Retry-After: 1) while it runs, then 200 with no body."""
    op = _operation(ctx)
    if op.status == "InProgress":
        response = web.Response(status=202)
        response.headers["Retry-After"] = "1"
        return response
    return web.Response(status=200)
