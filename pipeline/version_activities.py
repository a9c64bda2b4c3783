"""The activities of the versioned strategy: Temporal's Worker Deployment routing and the versions' Deployments.

    wait_version_registered   the new version is on every queue type of the app's task queue
    set_version_routing       ramp, make current, or stop ramping, as the manager, with conflict tokens,
                              returning once the change has propagated (COMPLETED)
    survey_versions           every version of the app: Temporal's status and routing, open pinned
                              workflows, its Kubernetes Deployment and pods (also `pipeline versions`)
    retire_version            scale a version's Deployment, or delete it with its ConfigMap and Version
    ensure_keeper             start (or wake) the app's keeper workflow, which owns the sunset

Each is idempotent: routing changes compare with what is live before writing; a scale sets a
number; a delete of what is gone is a no-op.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from pipeline import clusters, kube, render, versioning
from pipeline.contract import STATUS_QUERY, deployment_workflow_id
from pipeline.errors import PipelineError, VersioningError
from pipeline.models import (
    ClusterRef,
    KeeperInput,
    RetireInput,
    RoutingInput,
    RoutingResult,
    RoutingView,
    TemporalTarget,
    VersionCheckInput,
    VersionReady,
    VersionReadyInput,
    VersionRow,
    VersionsInput,
    VersionsReport,
)
from pipeline.references import build_id_of
from pipeline.temporal_client import connect as temporal_connect

KEEPER_WORKFLOW_TYPE = "VersionKeeperWorkflow"
KEEPER_POKE_SIGNAL = "poke"
T = TypeVar("T")


def keeper_workflow_id(environment: str, app: str) -> str:
    """One keeper per app and environment, next to its `deploy-<environment>-<app>` deployments."""
    return f"versions-{environment}-{app}"


def _application_error(exc: PipelineError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


async def _guarded(make: Callable[[], Awaitable[T]]) -> T:
    """Pipeline errors as typed ApplicationErrors; a server error from a Worker Deployment call is retryable."""
    try:
        return await make()
    except PipelineError as exc:
        raise _application_error(exc) from exc
    except RPCError as exc:
        raise _application_error(VersioningError(f"Temporal refused a Worker Deployment call: {exc.message}")) from exc


async def _client(temporal: TemporalTarget) -> Client:
    return await temporal_connect(temporal, identity=versioning.MANAGER_IDENTITY)


def view(routing: versioning.Routing) -> RoutingView:
    return RoutingView(current=routing.current, ramping=routing.ramping, percentage=routing.percentage)


@activity.defn
async def wait_version_registered(request: VersionCheckInput) -> None:
    async def run() -> None:
        client = await _client(request.temporal)
        await versioning.wait_registered(
            client,
            namespace=request.temporal.namespace,
            deployment=request.deployment_name,
            build_id=request.build_id,
            task_queue=request.task_queue,
            queue_types=request.queue_types,
            timeout=float(request.timeout_seconds),
            on_wait=lambda missing: activity.heartbeat({"missing": missing}),
        )

    await _guarded(run)


@activity.defn
async def set_version_routing(request: RoutingInput) -> RoutingResult:
    async def run() -> RoutingResult:
        client = await _client(request.temporal)
        expected = (
            versioning.Routing(request.expected.current, request.expected.ramping, request.expected.percentage)
            if request.expected is not None
            else None
        )
        state, seconds, before = await versioning.set_routing(
            client,
            namespace=request.temporal.namespace,
            deployment=request.deployment_name,
            build_id=request.build_id,
            percentage=request.percentage,
            expected=expected,
            timeout=float(request.timeout_seconds),
            on_wait=lambda routing: activity.heartbeat({"propagating": routing}),
        )
        return RoutingResult(
            routing=view(state.routing), propagation_seconds=round(seconds, 3), manager=state.manager, before=view(before)
        )

    return await _guarded(run)


def _version_deployments(cluster: ClusterRef, app_name: str, namespace: str) -> list[dict[str, Any]]:
    with clusters.connect(cluster) as kc:
        return kube.list_objects(
            kc,
            api_version="apps/v1",
            kind="Deployment",
            namespace=namespace,
            selector={"app.kubernetes.io/name": app_name, render.VERSION_LABEL: ""},
        )


async def _deploying_build(client: Client, environment: str, app: str) -> str:
    """The build the app's running deployment is rolling out ("" when none runs or it is not known yet)."""
    handle = client.get_workflow_handle(deployment_workflow_id(environment, app))
    try:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            return ""
        status = await handle.query(STATUS_QUERY)
    except RPCError:
        return ""
    image = str(status.get("image", "")) if isinstance(status, dict) else ""
    return build_id_of(image) if image else ""


async def survey(request: VersionsInput) -> VersionsReport:
    """Every version of the app, from both sides (what `pipeline versions` prints and the keeper plans from)."""
    client = await _client(request.temporal)
    name = render.deployment_name(request.app)
    namespace = request.temporal.namespace
    state, objects, deploying = await asyncio.gather(
        versioning.describe(client, namespace=namespace, deployment=name),
        asyncio.to_thread(_version_deployments, request.cluster, request.app.name, request.app.namespace),
        _deploying_build(client, request.environment, request.app.name),
    )
    by_build: dict[str, dict[str, Any]] = {}
    for obj in objects:
        annotations = obj.get("metadata", {}).get("annotations") or {}
        build = str(annotations.get(render.BUILD_ID_ANNOTATION, ""))
        if build:
            by_build[build] = obj
    builds = list(dict.fromkeys([v.build_id for v in state.versions] + list(by_build)))
    pinned = await asyncio.gather(
        *(versioning.open_pinned(client, namespace=namespace, deployment=name, build_id=b) for b in builds)
    )
    rows: list[VersionRow] = []
    for build, open_pinned in zip(builds, pinned, strict=True):
        summary = state.version(build)
        obj = by_build.get(build, {})
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        rows.append(
            VersionRow(
                build_id=build,
                deployment=str(obj.get("metadata", {}).get("name", "")),
                image=str(containers[0].get("image", "")),
                status=summary.status if summary else "",
                ramp_percentage=state.routing.percentage if build == state.routing.ramping else 0.0,
                drainage_since=summary.drainage_changed_at if summary else 0.0,
                created_at=summary.created_at if summary else _created(obj),
                open_pinned=open_pinned,
                replicas=int(spec.get("replicas") or 0),
                ready_replicas=int(status.get("readyReplicas") or 0),
                deploying=build == deploying,
            )
        )
    rows.sort(key=lambda r: r.created_at or float("inf"))
    return VersionsReport(
        deployment_name=name,
        routing=view(state.routing),
        manager=state.manager,
        versions=rows,
        surveyed_at=time.time(),
        routing_completed=state.completed,
    )


def _created(obj: dict[str, Any]) -> float:
    """A Deployment's creationTimestamp as Unix seconds (0 when absent)."""
    stamp = str(obj.get("metadata", {}).get("creationTimestamp") or "")
    if not stamp:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@activity.defn
async def survey_versions(request: VersionsInput) -> VersionsReport:
    return await _guarded(lambda: survey(request))


@activity.defn
async def retire_version(request: RetireInput) -> None:
    """One sunset action, idempotent: scale a version's Deployment, or delete its objects and its Version."""
    action = request.action

    def kube_side() -> None:
        with clusters.connect(request.cluster) as kc:
            if action.action == "scale":
                if kube.get_deployment(kc, namespace=request.app.namespace, name=action.deployment) is not None:
                    kube.scale_deployment(kc, namespace=request.app.namespace, name=action.deployment, replicas=action.replicas)
                return
            kube.delete_object(
                kc, api_version="apps/v1", kind="Deployment", namespace=request.app.namespace, name=action.deployment
            )
            kube.delete_object(
                kc, api_version="v1", kind="ConfigMap", namespace=request.app.namespace, name=f"{action.deployment}-temporal"
            )

    async def run() -> None:
        if action.deployment:
            await asyncio.to_thread(kube_side)
        if action.action == "delete":
            client = await _client(request.temporal)
            try:
                await versioning.delete_version(
                    client,
                    namespace=request.temporal.namespace,
                    deployment=render.deployment_name(request.app),
                    build_id=action.build_id,
                )
            except RPCError as exc:  # e.g. "version has pollers" until the server forgets its stopped pods
                raise _application_error(VersioningError(f"version {action.build_id} not deleted yet: {exc.message}")) from exc

    await _guarded(run)


@activity.defn
async def version_ready(request: VersionReadyInput) -> VersionReady:
    """Whether a retained version can take traffic at once: its Deployment runs the image with every replica
    ready, and Temporal has it registered on every queue type (a rollback then only moves routing)."""

    async def run() -> VersionReady:
        name = render.version_name(request.app, request.build_id)

        def read() -> dict[str, Any] | None:
            with clusters.connect(request.cluster) as kc:
                return kube.get_deployment(kc, namespace=request.app.namespace, name=name)

        deployment = await asyncio.to_thread(read)
        if deployment is None:
            return VersionReady(False, f"its Deployment {name} is gone")
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        replicas, ready = int(spec.get("replicas") or 0), int(status.get("readyReplicas") or 0)
        if containers[0].get("image") != request.image:
            return VersionReady(False, f"{name} runs {containers[0].get('image')}, not {request.image}", ready)
        if (
            replicas == 0
            or ready < replicas
            or int(status.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation") or 0)
        ):
            return VersionReady(False, f"{name} has {ready}/{replicas} pods ready", ready)
        client = await _client(request.temporal)
        have = await versioning.registered_queues(
            client,
            namespace=request.temporal.namespace,
            deployment=render.deployment_name(request.app),
            build_id=request.build_id,
        )
        missing = {(request.app.task_queue, t) for t in request.app.queue_types} - have
        if missing:
            return VersionReady(False, f"not registered on {', '.join(f'{t} queue {q!r}' for q, t in sorted(missing))}", ready)
        return VersionReady(True, f"{name}: {ready}/{replicas} pods ready and registered", ready)

    return await _guarded(run)


@activity.defn
async def ensure_keeper(request: KeeperInput) -> str:
    """Start the app's keeper workflow, or wake it if it runs (signal-with-start): it owns the sunset."""

    async def run() -> str:
        client = await _client(request.temporal)
        workflow_id = keeper_workflow_id(request.environment, request.app.name)
        await client.start_workflow(
            KEEPER_WORKFLOW_TYPE,
            request,
            id=workflow_id,
            task_queue=activity.info().task_queue,
            start_signal=KEEPER_POKE_SIGNAL,
        )
        return workflow_id

    return await _guarded(run)


ALL: list[Callable[..., object]] = [
    wait_version_registered,
    set_version_routing,
    survey_versions,
    retire_version,
    version_ready,
    ensure_keeper,
]
