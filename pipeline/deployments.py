"""The client side of deployments: start, follow, inspect, roll back, list.

What the CLI does through Temporal lives here, so that tests and the
bootstrap can do the same without going through click. Every function that
starts or touches a workflow returns (or prints) its Web UI URL.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, TerminatedError, TimeoutError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from pipeline import search_attributes as sa
from pipeline.contract import (
    OUTCOME_MEMO,
    ROLLBACK_UPDATE,
    STATUS_QUERY,
    WORKFLOW_TYPE,
    RollbackAnswer,
    RollbackRequest,
    deployment_workflow_id,
)

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    DeploymentAlreadyRunning as DeploymentAlreadyRunning,
    NoDeployment as NoDeployment,
    PipelineError as PipelineError,
    RollbackRefused as RollbackRefused,
)
from pipeline.models import DeploymentResult, DeploymentStatus, DeployRequest


def workflow_url(ui_url: str, namespace: str, workflow_id: str, run_id: str | None = None) -> str:
    base = f"{ui_url.rstrip('/')}/namespaces/{urllib.parse.quote(namespace)}/workflows/{urllib.parse.quote(workflow_id)}"
    return f"{base}/{run_id}/history" if run_id else base


async def start(client: Client, request: DeployRequest, *, task_queue: str) -> WorkflowHandle[Any, DeploymentResult]:
    """Start the deployment; a running one for the same app and environment is refused, not raced."""
    workflow_id = deployment_workflow_id(request.environment, request.app.name)
    what = request.image or (f"{request.app.build.repository}" if request.app.build else request.app.name)
    try:
        return await client.start_workflow(
            WORKFLOW_TYPE,
            request,
            result_type=DeploymentResult,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.DEPLOYMENT_APP, request.app.name),
                    SearchAttributePair(sa.DEPLOYMENT_ENVIRONMENT, request.environment),
                    SearchAttributePair(sa.DEPLOYMENT_OUTCOME, "running"),
                ]
            ),
            static_summary=(
                f"Roll back {request.app.name} in {request.environment} to {request.restore}"
                if request.restore
                else f"Deploy {request.app.name} to {request.environment} ({request.app.replicas} replicas)"
            ),
            static_details=(
                f"**App** {request.app.name} on task queue `{request.app.task_queue}`  \n"
                + (f"**Restore** {request.restore} (a verified revision; no build)  \n" if request.restore else "")
                + (f"**Reason** {request.reason}  \n" if request.reason else "")
                + f"**Image** {request.restore or what}  \n"
                f"**Cluster namespace** {request.app.namespace}  \n"
                f"**Requested by** {request.requested_by or 'unknown'}"
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        raise DeploymentAlreadyRunning(
            f"a deployment of {request.app.name} to {request.environment} is already running "
            f"(workflow {workflow_id}, run {exc.run_id}); follow it with `pipeline status {request.app.name}` "
            f"or stop it with `pipeline rollback {request.app.name}`"
        ) from exc


@dataclass(frozen=True)
class Progress:
    """One observation of a running deployment, for `--follow` and `status`."""

    status: DeploymentStatus
    activity: str  # the pending activity's type, if any
    heartbeat: Any  # its last heartbeat details (decoded), if any
    attempt: int
    last_failure: str


async def observe(client: Client, handle: WorkflowHandle[Any, Any]) -> Progress:
    status: DeploymentStatus = await handle.query(STATUS_QUERY, result_type=DeploymentStatus)
    description = await handle.describe()
    pending = description.raw_description.pending_activities
    activity, heartbeat, attempt, failure = "", None, 0, ""
    if pending:
        info = pending[0]
        activity = info.activity_type.name
        attempt = info.attempt
        if info.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED and info.last_failure.message:
            failure = info.last_failure.message
        if info.heartbeat_details.payloads:
            values = await client.data_converter.decode(info.heartbeat_details.payloads)
            heartbeat = values[0] if values else None
    return Progress(status, activity, heartbeat, attempt, failure)


async def follow(
    client: Client,
    handle: WorkflowHandle[Any, DeploymentResult],
    *,
    say: Callable[[str], None],
    interval: float = 0.5,
) -> DeploymentResult:
    """Print each step and its heartbeat progress as it changes, then return the result."""
    result_task = asyncio.ensure_future(handle.result())
    printed, last_detail = 0, ""
    while True:
        finished = result_task.done()
        try:
            progress: Progress | None = await observe(client, handle)
        except RPCError:
            progress = None  # a query during a worker restart can fail; the next one will answer
        if progress is not None:
            for step in progress.status.steps[printed:]:
                say(f"-> {step}")
            printed = max(printed, len(progress.status.steps))
            detail = format_detail(progress)
            if detail and detail != last_detail and not finished:
                say(f"     {detail}")
                last_detail = detail
        if finished:
            if not result_task.cancelled():
                result_task.exception()  # seen; result_of asks again, and survives a server restart in between
            return await result_of(handle)
        await asyncio.wait([result_task], timeout=interval)


def format_detail(p: Progress) -> str:
    """The live part of a step: heartbeat progress, retries, a pending rollback."""
    extra = ""
    if isinstance(p.heartbeat, dict):
        if "replicas" in p.heartbeat:
            hb = p.heartbeat
            extra = (
                f" updated {hb.get('updated', 0)}/{hb.get('replicas', 0)},"
                f" ready {hb.get('ready', 0)}, available {hb.get('available', 0)}"
                + (f" ({hb['message']})" if hb.get("message") else "")
            )
        elif "detail" in p.heartbeat:
            extra = f" {p.heartbeat['detail']}"
    elif isinstance(p.heartbeat, str) and p.heartbeat:
        extra = f" {p.heartbeat[:100]}"
    if p.attempt > 1:
        extra += f" (attempt {p.attempt}: {p.last_failure})" if p.last_failure else f" (attempt {p.attempt})"
    if p.status.rollback_requested and not p.status.step.startswith("rollback"):
        extra += f" [rollback requested: {p.status.rollback_reason}]"
    return extra.strip()


async def latest(client: Client, *, environment: str, app: str) -> WorkflowHandle[Any, DeploymentResult]:
    handle = client.get_workflow_handle(deployment_workflow_id(environment, app), result_type=DeploymentResult)
    try:
        await handle.describe()
    except RPCError as exc:
        raise NoDeployment(f"no deployment of {app} to {environment} found in Temporal") from exc
    return handle


async def running(client: Client, *, environment: str, app: str) -> WorkflowHandle[Any, DeploymentResult] | None:
    """The running deployment of the app, or None when none runs (or none ever ran)."""
    handle = client.get_workflow_handle(deployment_workflow_id(environment, app), result_type=DeploymentResult)
    try:
        description = await handle.describe()
    except RPCError:
        return None
    return handle if description.status == WorkflowExecutionStatus.RUNNING else None


async def request_rollback(handle: WorkflowHandle[Any, Any], *, app: str, reason: str, requested_by: str) -> RollbackAnswer:
    """Ask the running deployment to roll back (the `rollback` update): what it restores, or RollbackRefused saying why not."""
    try:
        answer: RollbackAnswer = await handle.execute_update(
            ROLLBACK_UPDATE, RollbackRequest(reason=reason, requested_by=requested_by), result_type=RollbackAnswer
        )
        return answer
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise RollbackRefused(f"rollback of {app} refused: {getattr(cause, 'message', None) or cause}") from exc
    except RPCError as exc:  # it ended between our look and the update
        raise RollbackRefused(f"rollback of {app} refused: {exc.message}") from exc


async def result_of(handle: WorkflowHandle[Any, DeploymentResult]) -> DeploymentResult:
    """The deployment's result; a canceled, terminated or timed-out one becomes a result saying so (no exception)."""
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        ended = {CancelledError: "canceled", TerminatedError: "terminated", TimeoutError: "timed_out"}
        outcome = next((name for kind, name in ended.items() if isinstance(exc.cause, kind)), "")
        if not outcome:
            raise PipelineError(f"deployment workflow {handle.id} failed: {exc.cause}") from exc
        return await _ended_result(handle, outcome, str(exc.cause))


async def _ended_result(handle: WorkflowHandle[Any, Any], outcome: str, why: str) -> DeploymentResult:
    description = await handle.describe()
    app = description.typed_search_attributes.get(sa.DEPLOYMENT_APP) or handle.id
    image = description.typed_search_attributes.get(sa.DEPLOYMENT_IMAGE) or ""
    if outcome == "canceled":
        memo = (await description.memo()).get(OUTCOME_MEMO) or {}
        return DeploymentResult(
            app=app,
            outcome="canceled",
            image=str(memo.get("image", image)),
            reason=str(memo.get("detail") or "canceled before it could restore anything"),
            previous_image=str(memo.get("previous_image", "")),
            restored_image=str(memo.get("restored_image", "")) if memo.get("verified") else "",
        )
    what = "terminated" if outcome == "terminated" else "timed out"
    return DeploymentResult(
        app=app,
        outcome=outcome,
        image=image,
        reason=f"the deployment workflow was {what}{': ' + why if why and why != what else ''}; no rollback ran",
    )


@dataclass(frozen=True)
class HistoryRow:
    workflow_id: str
    run_id: str
    app: str
    started: datetime
    closed: datetime | None
    image: str
    outcome: str
    status: str

    @property
    def duration(self) -> timedelta | None:
        return self.closed - self.started if self.closed else None

    @property
    def shown_outcome(self) -> str:
        """The recorded outcome; a workflow that ended without recording one (terminated, timed out) shows how it ended."""
        if not self.outcome or (self.outcome == "running" and self.status not in ("", "running")):
            return self.status.replace("timed_out", "timed out")
        return self.outcome


async def history(client: Client, *, app: str | None, environment: str | None, limit: int = 20) -> list[HistoryRow]:
    """Past deployments from Temporal visibility, newest first."""
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if app:
        clauses.append(f"DeploymentApp = '{app}'")
    if environment:
        clauses.append(f"DeploymentEnvironment = '{environment}'")
    rows: list[HistoryRow] = []
    async for execution in client.list_workflows(" AND ".join(clauses), limit=limit):
        rows.append(_row(execution))
    return rows


def _row(e: WorkflowExecution) -> HistoryRow:
    attrs = e.typed_search_attributes
    return HistoryRow(
        workflow_id=e.id,
        run_id=e.run_id,
        app=attrs.get(sa.DEPLOYMENT_APP) or "",
        started=e.start_time,
        closed=e.close_time,
        image=attrs.get(sa.DEPLOYMENT_IMAGE) or "",
        outcome=attrs.get(sa.DEPLOYMENT_OUTCOME) or "",
        status=e.status.name.lower() if e.status else "",
    )
