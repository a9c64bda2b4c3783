"""Temporal's Worker Deployments, as the versioned strategy drives them: read routing, move it, wait for it.

A versioned app's builds are Versions of one Worker Deployment, `<k8s namespace>/<app>`
(render.deployment_name); the server routes new workflows to the current version and a share
to the ramping one, and a PINNED workflow stays on the version that started it.

    client = await temporal_client.connect(target, identity=MANAGER_IDENTITY)
    state = await describe(client, namespace="default", deployment="workers/orders")
    state = await set_routing(client, namespace=..., deployment=..., build_id="sha256:...", percentage=10.0,
                              expected=state.routing)   # ramp 10 %
    state = await set_routing(client, ..., build_id="sha256:...", percentage=None, expected=state.routing)  # current

Every change is made as the pipeline: it claims the deployment's manager identity
(SetWorkerDeploymentManager) the first time, and passes the conflict token of the state it
read, so two writers never interleave. Before each change the routing the server has is
compared with the routing the pipeline last set (`expected`): if someone else (another
identity) changed it, RoutingChangedElsewhere names who and what, and nothing is written.
A change counts as done only once `routing_config_update_state` is COMPLETED (propagated to
every task queue of the version), which `set_routing` waits for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import RoutingConfigUpdateState, TaskQueueType, WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DeleteWorkerDeploymentVersionRequest,
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentManagerRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pipeline.errors import RoutingChangedElsewhere, RoutingNotPropagated, VersioningError, VersionNotRegistered

T = TypeVar("T")

# The identity the pipeline's changes carry, and the Worker Deployment's manager once claimed.
MANAGER_IDENTITY = "temporal-deploy-pipeline"
UNVERSIONED = ""  # the routing's current "version" before any build was made current (`__unversioned__`)
_UNVERSIONED_WIRE = "__unversioned__"

_STATUS = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
}
QUEUE_TYPES = {"workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}


@dataclass(frozen=True)
class Routing:
    """Where new work goes: the current build ("" = unversioned workers) and the ramping one with its share."""

    current: str = UNVERSIONED
    ramping: str = ""
    percentage: float = 0.0

    def describe(self) -> str:
        current = self.current or "unversioned workers"
        return f"current {current}" + (f", ramping {self.ramping} at {self.percentage:g}%" if self.ramping else "")


@dataclass(frozen=True)
class VersionSummary:
    build_id: str
    status: str  # inactive | current | ramping | draining | drained
    created_at: float = 0.0  # Unix seconds
    drainage_changed_at: float = 0.0  # when it became draining or drained (0 = never)


@dataclass(frozen=True)
class DeploymentState:
    """DescribeWorkerDeployment, as the pipeline needs it. `exists` False: no worker of it ever polled."""

    name: str
    exists: bool
    routing: Routing = field(default_factory=Routing)
    completed: bool = True  # routing_config_update_state COMPLETED (or nothing to propagate)
    manager: str = ""
    last_modifier: str = ""
    conflict_token: bytes = b""
    versions: tuple[VersionSummary, ...] = ()

    def version(self, build_id: str) -> VersionSummary | None:
        return next((v for v in self.versions if v.build_id == build_id), None)


def _seconds(ts: object) -> float:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    return float(seconds) + float(nanos) / 1e9


# The server answers a Worker Deployment's reads and writes through one entity workflow per
# deployment and refuses a burst with RESOURCE_EXHAUSTED ("too many requests issued to Worker
# Deployment"): every call here backs off and tries again (at most BUSY_TRIES times).
BUSY_TRIES = 8


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    delay = 0.2
    for attempt in range(BUSY_TRIES):
        try:
            return await call()
        except RPCError as err:
            if err.status != RPCStatusCode.RESOURCE_EXHAUSTED or attempt == BUSY_TRIES - 1:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


async def describe(client: Client, *, namespace: str, deployment: str) -> DeploymentState:
    try:
        resp = await _patiently(
            lambda: client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(namespace=namespace, deployment_name=deployment)
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return DeploymentState(name=deployment, exists=False)
        raise
    info = resp.worker_deployment_info
    rc = info.routing_config
    current = rc.current_deployment_version.build_id if rc.HasField("current_deployment_version") else ""
    if not current and rc.current_version and rc.current_version != _UNVERSIONED_WIRE:
        current = rc.current_version.split(".", 1)[-1]
    ramping = rc.ramping_deployment_version.build_id if rc.HasField("ramping_deployment_version") else ""
    versions = tuple(
        VersionSummary(
            build_id=s.deployment_version.build_id,
            status=_STATUS.get(s.status, "inactive"),
            created_at=_seconds(s.create_time),
            drainage_changed_at=_seconds(s.drainage_info.last_changed_time) if s.HasField("drainage_info") else 0.0,
        )
        for s in info.version_summaries
    )
    return DeploymentState(
        name=deployment,
        exists=True,
        routing=Routing(current=current, ramping=ramping, percentage=float(rc.ramping_version_percentage) if ramping else 0.0),
        completed=info.routing_config_update_state
        in (
            RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED,
            RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_UNSPECIFIED,
        ),
        manager=info.manager_identity,
        last_modifier=info.last_modifier_identity,
        conflict_token=resp.conflict_token,
        versions=versions,
    )


async def registered_queues(client: Client, *, namespace: str, deployment: str, build_id: str) -> set[tuple[str, str]]:
    """The (task queue, type) pairs whose pollers registered this version ({} before any did)."""
    try:
        resp = await _patiently(
            lambda: client.workflow_service.describe_worker_deployment_version(
                DescribeWorkerDeploymentVersionRequest(
                    namespace=namespace,
                    deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
                )
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return set()
        raise
    names = {v: k for k, v in QUEUE_TYPES.items()}
    return {(q.name, names.get(q.type, str(q.type))) for q in resp.worker_deployment_version_info.task_queue_infos}


async def wait_registered(
    client: Client,
    *,
    namespace: str,
    deployment: str,
    build_id: str,
    task_queue: str,
    queue_types: tuple[str, ...],
    timeout: float,
    on_wait: object = None,
) -> None:
    """Until the version is registered on every (task queue, type) the app serves; VersionNotRegistered after `timeout`."""
    wanted = {(task_queue, t) for t in queue_types}
    deadline = time.monotonic() + timeout
    while True:
        have = await registered_queues(client, namespace=namespace, deployment=deployment, build_id=build_id)
        missing = wanted - have
        if not missing:
            return
        if callable(on_wait):
            on_wait(sorted(f"{q}/{t}" for q, t in missing))
        if time.monotonic() >= deadline:
            listed = ", ".join(f"{t} queue {q!r}" for q, t in sorted(missing))
            raise VersionNotRegistered(
                f"version {build_id} of Worker Deployment {deployment!r} is not registered on the {listed} after "
                f"{timeout:g}s: its pods poll, but not as this version (does the worker set WorkerDeploymentConfig "
                "from TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID with use_worker_versioning?)"
            )
        await asyncio.sleep(0.2)


def _changed_by_other(state: DeploymentState, expected: Routing | None) -> str:
    """Why the live routing is not the pipeline's to change ("" when it is)."""
    if state.manager and state.manager != MANAGER_IDENTITY:
        return f"its manager identity is {state.manager!r}, not the pipeline's ({MANAGER_IDENTITY!r})"
    if expected is not None and state.routing != expected and state.last_modifier != MANAGER_IDENTITY:
        who = state.last_modifier or "another client"
        return f"{who} changed its routing to {state.routing.describe()} (the pipeline had set {expected.describe()})"
    return ""


async def set_routing(
    client: Client,
    *,
    namespace: str,
    deployment: str,
    build_id: str,
    percentage: float | None,
    expected: Routing | None,
    timeout: float = 60.0,
    on_wait: object = None,
) -> tuple[DeploymentState, float, Routing]:
    """Make `build_id` ramping at `percentage` (0 with build_id "" = no ramp), or current (percentage None).

    `build_id` "" with percentage None makes unversioned workers current again. Returns the state
    once the change has propagated (COMPLETED) and the seconds that took from the request.
    """
    for _attempt in range(5):
        state = await describe(client, namespace=namespace, deployment=deployment)
        if not state.exists:
            raise VersioningError(
                f"Worker Deployment {deployment!r} does not exist in namespace {namespace!r}: no worker of it polls"
            )
        if why := _changed_by_other(state, expected):
            raise RoutingChangedElsewhere(
                f"Worker Deployment {deployment!r}: {why}; the pipeline changes nothing it did not set itself. "
                f"To hand it back: temporal worker deployment manager-identity set --deployment-name '{deployment}' "
                f"--manager-identity {MANAGER_IDENTITY}"
            )
        token = state.conflict_token
        try:
            if not state.manager:
                manager_request = SetWorkerDeploymentManagerRequest(
                    namespace=namespace, deployment_name=deployment, self=True, identity=MANAGER_IDENTITY, conflict_token=token
                )
                resp = await _patiently(partial(client.workflow_service.set_worker_deployment_manager, manager_request))
                token = resp.conflict_token
            started = time.monotonic()
            if percentage is None:
                current_request = SetWorkerDeploymentCurrentVersionRequest(
                    namespace=namespace,
                    deployment_name=deployment,
                    build_id=build_id,
                    conflict_token=token,
                    identity=MANAGER_IDENTITY,
                    ignore_missing_task_queues=False,
                )
                await _patiently(partial(client.workflow_service.set_worker_deployment_current_version, current_request))
            else:
                ramp_request = SetWorkerDeploymentRampingVersionRequest(
                    namespace=namespace,
                    deployment_name=deployment,
                    build_id=build_id,
                    percentage=percentage if build_id else 0.0,
                    conflict_token=token,
                    identity=MANAGER_IDENTITY,
                )
                await _patiently(partial(client.workflow_service.set_worker_deployment_ramping_version, ramp_request))
        except RPCError as err:
            if (
                "conflict token" in err.message.lower()
                or err.status == RPCStatusCode.FAILED_PRECONDITION
                and "conflict" in err.message
            ):
                continue  # someone wrote between our read and our write: read again, and judge again
            raise
        done = await wait_completed(client, namespace=namespace, deployment=deployment, timeout=timeout, on_wait=on_wait)
        return done, time.monotonic() - started, state.routing
    raise VersioningError(f"Worker Deployment {deployment!r}: its routing kept changing under the pipeline (5 conflicts)")


async def wait_completed(
    client: Client, *, namespace: str, deployment: str, timeout: float, on_wait: object = None
) -> DeploymentState:
    """Until routing_config_update_state is COMPLETED (the change reached every task queue)."""
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        state = await describe(client, namespace=namespace, deployment=deployment)
        if state.completed:
            return state
        if callable(on_wait):
            on_wait(state.routing.describe())
        if time.monotonic() >= deadline:
            raise RoutingNotPropagated(
                f"Worker Deployment {deployment!r}: routing ({state.routing.describe()}) did not propagate within "
                f"{timeout:g}s (routing_config_update_state stays IN_PROGRESS on the server)"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 1.3, 0.3)  # propagation takes about a second: notice it soon after


async def open_pinned(client: Client, *, namespace: str, deployment: str, build_id: str) -> int:
    """Open workflows pinned to this version (visibility: TemporalWorkerDeploymentVersion and the PINNED behaviour)."""
    version = f"{deployment}:{build_id}"
    query = (
        f"TemporalWorkerDeploymentVersion = '{_quote(version)}' AND TemporalWorkflowVersioningBehavior = 'Pinned' "
        "AND ExecutionStatus = 'Running'"
    )
    resp = await client.workflow_service.count_workflow_executions(
        CountWorkflowExecutionsRequest(namespace=namespace, query=query)
    )
    return int(resp.count)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


async def delete_version(client: Client, *, namespace: str, deployment: str, build_id: str) -> bool:
    """Delete the Version from the Worker Deployment (False when it is already gone). The server refuses while
    it is current or ramping, has pollers, or (without skip_drainage) is still draining."""
    try:
        await client.workflow_service.delete_worker_deployment_version(
            DeleteWorkerDeploymentVersionRequest(
                namespace=namespace,
                deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
                identity=MANAGER_IDENTITY,
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def web_ui_url(ui_url: str, namespace: str, deployment: str) -> str:
    """The Web UI's page of the Worker Deployment."""
    from urllib.parse import quote

    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace)}/worker-deployments/{quote(deployment, safe='')}"
