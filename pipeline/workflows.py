"""DeploymentWorkflow: one execution per deployment of one app to one environment.

The workflow only decides; activities do. Its history is the deployment's
audit trail: what was built (by digest), what was applied, how the rollout
went, who polls, and, if it came to that, why and to what it rolled back.

    read previous revision ─▶ build ─▶ render ─▶ apply ─▶ rollout ─▶ verify ─▶ record
                                   ╲        ╲        ╲        ╲         ╲
                                    rollback (signal or update), a cancellation request, or a
                                    failure with auto_rollback: re-apply the previous verified
                                    revision ─▶ rollout ─▶ verify ─▶ record

Every way a person stops a deployment ends in a verified state:
- the `rollback` signal (any input or none, as the Web UI's "Send a Signal" sends it) or the
  `rollback` update (which answers: accepted and to what, or why not) interrupts the running
  step and restores the previous verified revision;
- a cancellation request (the Web UI's "Request Cancellation", `temporal workflow cancel`)
  does the same and only then ends the workflow as Canceled; its memo says what was restored;
- a termination cannot be caught: `pipeline status` then names the drift between what runs
  and what was verified (pipeline/revisions.py).

With `DeployRequest.restore` (`pipeline rollback APP [--to IMAGE]` when no deployment runs)
the build and render steps give way to a verified revision from the app's history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pipeline import activities, gates, render, revisions, search_attributes, version_activities
    from pipeline.contract import (
        OUTCOME_MEMO,
        PAUSE_UPDATE,
        PROMOTE_UPDATE,
        RESUME_UPDATE,
        ROLLBACK_SIGNAL,
        ROLLBACK_UPDATE,
        STATUS_QUERY,
        WORKFLOW_TYPE,
        RollbackAnswer,
        RollbackRequest,
        read_rollback_request,
    )
    from pipeline.errors import non_retryable_types
    from pipeline.models import (
        AnalysisInput,
        ApplyInput,
        ApplyResult,
        BuildImageInput,
        BuildPlatformInput,
        BuiltImage,
        DeploymentResult,
        DeploymentStatus,
        DeployRequest,
        GateResult,
        GateSpec,
        GateWorkflowInput,
        KeeperInput,
        Manifests,
        PlatformImage,
        PushIndexInput,
        ReadRevisionInput,
        ReadRevisionResult,
        RecordRevisionInput,
        RenderInput,
        ReplayJobInput,
        ReplayTarget,
        ReplayTargetsInput,
        RetireAction,
        RetireInput,
        Revision,
        RolloutInput,
        RolloutResult,
        RoutingInput,
        RoutingResult,
        RoutingView,
        VerifyInput,
        VerifyResult,
        VersionCheckInput,
        VersionReady,
        VersionReadyInput,
    )
    from pipeline.references import build_id_of

T = TypeVar("T")

# Bad input and definitive verdicts are not worth retrying; everything else (a 429, a 5xx,
# a dropped connection, a registry hiccup) is, with back-off. Which is which is said once,
# by each error class in pipeline/errors.py.
NON_RETRYABLE = non_retryable_types()
ROLLBACK_VERIFY_SECONDS = 60
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE,
)
# Released workflows took a cancellation request as "stop now" and ended Canceled with the
# new version half rolled out; since this patch a cancellation restores the previous
# verified revision first. Histories without the marker replay the old way.
CANCEL_RESTORES = "cancel-restores-previous"
# Released workflows built every image in one activity. Since this patch a build of more than one
# platform on target aks runs one ACR build per platform in parallel, then pushes their image index.
MULTI_PLATFORM_BUILDS = "multi-platform-builds"
# Released versioned restores applied, rolled out and verified the retained version before moving routing;
# since this patch a version whose pods still serve gets routing at once.
RESTORE_SERVING_VERSION = "restore-serving-version"
_NO_INPUT = RawValue(Payload())


class _GateRefused(Exception):
    """A gate said no (its GateResult is in the history): the deployment stops or rolls back."""


class _Interrupted(Exception):
    """Raised inside the workflow when a rollback request or a cancellation request stops forward progress."""


def _decode(raw: RawValue) -> tuple[RollbackRequest, bool]:
    """The rollback's input as a RollbackRequest, and whether it could be read as one (never raises)."""
    if not raw.payload.data and not raw.payload.metadata:
        return RollbackRequest(), True
    try:
        value = workflow.payload_converter().from_payload(raw.payload) if raw.payload.data else None
    except Exception as err:  # not JSON, an unknown encoding: still a rollback, its reason says so
        return read_rollback_request(None, unreadable=f"{type(err).__name__}: {err}")
    return read_rollback_request(value)


@workflow.defn(name=WORKFLOW_TYPE)
class DeploymentWorkflow:
    @workflow.init
    def __init__(self, request: DeployRequest) -> None:
        self._request = request
        self._status = DeploymentStatus(app=request.app.name, step="starting")
        self._rollback: RollbackRequest | None = None
        self._cancel_requested = False
        self._steps: list[str] = []
        self._previous: Revision | None = None
        self._previous_known = False  # the read step has answered (or the deployment ended without it)
        self._rolling_back = False
        self._finished = False
        self._manifests: Manifests | None = None  # what this deployment applies (once it is known)
        self._apply_started = False
        self._platforms: tuple[PlatformImage, ...] = ()  # the image is an index of these (multi-platform builds)
        # strategy "versioned" (pipeline/versioning.py): the routing as last set, the operator's verbs
        self._routing: RoutingView | None = None
        self._routing_before: RoutingView | None = None
        self._ramping = False
        self._made_current = False
        self._paused = False
        self._promote = ""  # "" | "step" | "full"

    @workflow.signal(
        name=ROLLBACK_SIGNAL,
        description='Stop and restore the previous verified revision. Input optional: {"reason": "...", "requested_by": "..."}.',
    )
    def rollback(self, request: RawValue = _NO_INPUT) -> None:
        """Stop forward progress and restore the previous verified revision (accepted at any step, with any input)."""
        self._request_rollback(_decode(request)[0])

    @workflow.update(
        name=ROLLBACK_UPDATE,
        description="Like the rollback signal, but answers: the image being restored, or why there is nothing to roll back.",
    )
    async def rollback_update(self, request: RawValue = _NO_INPUT) -> RollbackAnswer:
        interrupted = self._status.step
        wanted, _ = _decode(request)
        await workflow.wait_condition(lambda: self._previous_known)
        if self._previous is None:
            raise ApplicationError(self._nothing_to_roll_back_to(), type="NothingToRollBackTo", non_retryable=True)
        self._request_rollback(wanted)
        return RollbackAnswer(restoring=self._previous.image, interrupted_step=interrupted)

    @rollback_update.validator
    def _validate_rollback(self, request: RawValue = _NO_INPUT) -> None:
        app = self._request.app.name
        if self._finished:
            raise ValueError(f"the deployment of {app} has already ended ({self._status.step}); nothing to interrupt")
        if self._rollback is not None or self._rolling_back or self._cancel_requested:
            raise ValueError(f"the deployment of {app} is already rolling back to its previous verified revision")
        if self._previous_known and self._previous is None:
            raise ValueError(self._nothing_to_roll_back_to())
        _, readable = _decode(request)
        if not readable:
            raise ValueError('the rollback\'s input could not be read: send nothing, or {"reason": "...", "requested_by": "..."}')

    def _request_rollback(self, request: RollbackRequest) -> None:
        if self._rollback is None:
            self._rollback = request
            self._status = replace(self._status, rollback_requested=True, rollback_reason=request.reason)

    def _nothing_to_roll_back_to(self) -> str:
        return f"nothing to roll back to: {self._request.app.name} has no previous verified revision in this environment"

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DeploymentStatus:
        return self._status

    # ----- operator verbs of a versioned deployment -----

    @workflow.update(name=PROMOTE_UPDATE, description="Ramp to the next step now (full: make the new version current now).")
    async def promote(self, full: bool = False) -> DeploymentStatus:
        self._promote = "full" if full else "step"
        self._paused = False
        self._status = replace(self._status, paused=False)
        return self._status

    @promote.validator
    def _validate_promote(self, full: bool = False) -> None:
        self._check_verb("promote")

    @workflow.update(name=PAUSE_UPDATE, description="Hold the ramp at its current step until resume or promote.")
    async def pause(self) -> DeploymentStatus:
        self._paused = True
        self._status = replace(self._status, paused=True)
        return self._status

    @pause.validator
    def _validate_pause(self) -> None:
        self._check_verb("pause")
        if self._paused:
            raise ValueError(f"the rollout of {self._request.app.name} is already paused")

    @workflow.update(name=RESUME_UPDATE, description="Go on with the ramp after a pause.")
    async def resume(self) -> DeploymentStatus:
        self._paused = False
        self._status = replace(self._status, paused=False)
        return self._status

    @resume.validator
    def _validate_resume(self) -> None:
        self._check_verb("resume")
        if not self._paused:
            raise ValueError(f"the rollout of {self._request.app.name} is not paused")

    def _check_verb(self, verb: str) -> None:
        app = self._request.app
        if not app.rollout.versioned:
            raise ValueError(
                f'{verb} needs a versioned app; {app.name} rolls out in place (rollout.strategy = "{app.rollout.strategy}")'
            )
        if self._finished:
            raise ValueError(f"the deployment of {app.name} has already ended ({self._status.step})")
        if self._rollback is not None or self._rolling_back or self._cancel_requested:
            raise ValueError(f"the deployment of {app.name} is rolling back")
        if self._made_current:
            raise ValueError(f"the new version of {app.name} is already current; nothing to {verb}")

    @workflow.run
    async def run(self, request: DeployRequest) -> DeploymentResult:
        result = await self._deploy(request)
        if self._cancel_requested:
            self._end_canceled(result)
        return result

    async def _deploy(self, request: DeployRequest) -> DeploymentResult:
        app = request.app
        self._set_outcome("running")
        try:
            read = await self._step("read previous revision", lambda: self._read_revision(request), interruptible=False)
        except ActivityError as err:  # e.g. the cluster is unreachable: nothing was changed
            return self._finish("failed", request.image, f"read previous revision failed: {_cause(err)}", None)
        previous = read.revision
        self._previous, self._previous_known = previous, True
        self._status = replace(self._status, previous_image=previous.image if previous else "")
        image = request.image
        build_id = ""
        restored_from: Revision | None = None
        try:
            if request.restore:
                target = revisions.pick(revisions.RevisionLog(read.revision, list(read.history)), request.restore)
                if target is None:
                    known = ", ".join(r.image for r in read.history) or "none"
                    return self._finish(
                        "failed",
                        "",
                        f"nothing to roll back to: no verified revision {request.restore!r} of {app.name} (known: {known})",
                        previous,
                    )
                image, build_id, manifests, restored_from = target.image, target.build_id, target.manifests, target
                self._platforms = tuple(target.platforms)
                self._status = replace(self._status, image=image, platforms=list(self._platforms))
                workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_IMAGE.value_set(image)])
            else:
                if not image:
                    built = await self._step("build", lambda: self._build(request))
                    image, build_id, self._platforms = built.reference, built.digest, tuple(built.platforms)
                else:
                    build_id = build_id_of(image)
                self._status = replace(self._status, image=image, platforms=list(self._platforms))
                workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_IMAGE.value_set(image)])
                manifests = await self._step("render", lambda: self._render(request, image, build_id))
                await self._gates(request, "replay", image, build_id)  # before anything is applied
            self._manifests = manifests
            if app.rollout.versioned:
                return await self._deploy_version(request, previous, image, build_id, manifests, restored_from)
            applied = await self._step("apply", lambda: self._apply(request, manifests))
            rollout = await self._step("rollout", lambda: self._wait_rollout(request, applied.deployment_generation))
            self._status = replace(
                self._status,
                replicas=rollout.replicas,
                updated_replicas=rollout.replicas,
                ready_replicas=rollout.ready_replicas,
                available_replicas=rollout.available_replicas,
            )
            window = ROLLBACK_VERIFY_SECONDS if restored_from else 0  # the version being replaced must be gone too
            verified = await self._step("verify", lambda: self._verify(request, build_id, rollout, at_least=window))
            if not restored_from:
                await self._gates(request, "workflow", image, build_id)  # every pod is new: before it is recorded
                await self._gates(request, "analysis", image, build_id, window_start=_rfc3339(workflow.now()))
        except _GateRefused as refused:
            if app.rollout.auto_rollback and self._apply_started:
                return await self._roll_back(request, previous, image, str(refused))
            return self._finish("failed", image, str(refused), previous)
        except _Interrupted:
            return await self._roll_back(request, previous, image, self._interruption())
        except ActivityError as err:
            reason = f"{self._status.step} failed: {_cause(err)}"
            if restored_from:
                reason = f"rollback to {restored_from.image} failed at {reason}"
            if app.rollout.auto_rollback and self._status.step in ("apply", "rollout", "verify"):
                return await self._roll_back(request, previous, image, reason)
            return self._finish("failed", image, reason, previous)
        revision = self._revision(image, build_id, manifests)
        await self._step("record", lambda: self._record(request, revision), interruptible=False)
        if self._rollback is not None or self._cancel_requested:  # it came while the verified revision was being recorded
            return await self._roll_back(request, previous, image, self._interruption())
        self._status = replace(self._status, pollers=sorted({p.identity for p in verified.pollers}))
        if restored_from:
            why = f"rollback to the verified revision of {restored_from.deployed_at or 'an earlier deployment'}"
            reason = f"{why} requested{' by ' + request.requested_by if request.requested_by else ''}"
            if request.reason:
                reason += f": {request.reason}"
            return self._finish("rolled_back", image, reason, previous, restored=image, pollers=verified)
        return self._finish("succeeded", image, "", previous, pollers=verified)

    def _revision(self, image: str, build_id: str, manifests: Manifests) -> Revision:
        """What this deployment records once verified."""
        return Revision(
            image=image,
            build_id=build_id,
            manifests=manifests,
            deployed_at=workflow.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            workflow_id=workflow.info().workflow_id,
            platforms=self._platforms,
        )

    def _interruption(self) -> str:
        if self._cancel_requested:
            return f"canceled: {workflow.cancellation_reason() or 'a cancellation was requested'}"
        return f"rollback requested: {self._rollback.reason if self._rollback else ''}".rstrip(": ")

    # ----- strategy "versioned": one Deployment per build, traffic moved by Temporal's routing -----

    async def _deploy_version(
        self,
        request: DeployRequest,
        previous: Revision | None,
        image: str,
        build_id: str,
        manifests: Manifests,
        restored_from: Revision | None,
    ) -> DeploymentResult:
        """apply the version's Deployment ─▶ rollout ─▶ verify its pods poll ─▶ registered on every queue
        ─▶ ramp through the steps ─▶ current ─▶ record ─▶ hand the older versions to the keeper.

        Older versions' Deployments are never touched here; a rollback moves routing back
        (instant: their pods still run) and leaves the sunset to the keeper (pipeline/keeper.py).
        """
        app = request.app
        name, label = render.version_name(app, build_id), render.version_suffix(build_id)
        steps = [] if restored_from else list(app.rollout.steps)
        verified: VerifyResult | None = None
        try:
            # A retained version whose pods still serve takes traffic at once (routing only); else it is
            # applied (scaled back up), rolled out and verified first, as a new version is.
            serving = restored_from is not None and workflow.patched(RESTORE_SERVING_VERSION)
            if serving:
                serving = (
                    await self._step("check the version's pods", lambda: self._version_ready(request, build_id, image))
                ).ready
            if not serving:
                applied = await self._step("apply", lambda: self._apply(request, manifests))
                rollout = await self._step(
                    "rollout", lambda: self._wait_rollout(request, applied.deployment_generation, deployment=name)
                )
                self._status = replace(
                    self._status,
                    replicas=rollout.replicas,
                    updated_replicas=rollout.replicas,
                    ready_replicas=rollout.ready_replicas,
                )
                verified = await self._step("verify", lambda: self._verify(request, build_id, rollout, version_label=label))
                await self._step("register", lambda: self._wait_registered(request, build_id))
            if not restored_from:
                await self._gates(request, "workflow", image, build_id, pinned=True, label="before any traffic")
            index = 0
            while index < len(steps) and self._promote != "full":
                await self._hold()
                if self._promote == "full":
                    break
                percent = steps[index]
                await self._route(request, f"ramp {percent}%", build_id, float(percent))
                await self._gates(
                    request,
                    "workflow",
                    image,
                    build_id,
                    pinned=True,
                    label=f"at {percent}%",
                    each_step=True,
                    percent=float(percent),
                )
                self._promote = "" if self._promote == "step" else self._promote
                step_started = _rfc3339(workflow.now())
                await self._hold(pause_seconds=app.rollout.step_pause_seconds)
                await self._gates(
                    request, "analysis", image, build_id, label=f"at {percent}%", window_start=step_started, pinned=True
                )
                index += 1
            await self._hold()
            await self._route(request, "make current", build_id, None)
            self._made_current = True
        except _GateRefused as refused:
            if app.rollout.auto_rollback or self._routing is None:
                return await self._route_back(request, previous, image, build_id, name, str(refused))
            return self._finish("failed", image, f"{refused} (auto_rollback = false: left as it is)", previous)
        except _Interrupted:
            return await self._route_back(request, previous, image, build_id, name, self._interruption())
        except ActivityError as err:
            reason = f"{self._status.step} failed: {_cause(err)}"
            if app.rollout.auto_rollback or self._routing is None:
                return await self._route_back(request, previous, image, build_id, name, reason)
            return self._finish("failed", image, reason, previous)
        revision = self._revision(image, build_id, manifests)
        await self._step("record", lambda: self._record(request, revision), interruptible=False)
        if self._rollback is not None or self._cancel_requested:
            return await self._route_back(request, previous, image, build_id, name, self._interruption())
        await self._step("hand older versions to the keeper", lambda: self._ensure_keeper(request), interruptible=False)
        if verified is not None:
            self._status = replace(self._status, pollers=sorted({p.identity for p in verified.pollers}))
        if restored_from:
            reason = (
                f"rollback to version {_short(build_id)} requested{' by ' + request.requested_by if request.requested_by else ''}"
            )
            if request.reason:
                reason += f": {request.reason}"
            return self._finish("rolled_back", image, reason, previous, restored=image, pollers=verified)
        return self._finish("succeeded", image, "", previous, pollers=verified)

    async def _hold(self, *, pause_seconds: int = 0) -> None:
        """Wait out a step's pause (cut short by promote), then any operator pause; raise _Interrupted on rollback."""
        if pause_seconds > 0 and not self._promote:
            await self._wait_for(lambda: bool(self._promote) or self._interrupted(), timeout=pause_seconds)
        await self._wait_for(lambda: not self._paused or bool(self._promote) or self._interrupted())
        if self._interrupted():
            raise _Interrupted()

    async def _wait_for(self, condition: Callable[[], bool], *, timeout: int | None = None) -> None:
        try:
            await workflow.wait_condition(
                condition, timeout=timedelta(seconds=timeout) if timeout else None, timeout_summary="ramp step pause"
            )
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if not self._hear_cancel():
                raise
        if self._interrupted():
            raise _Interrupted()

    async def _route(self, request: DeployRequest, step: str, build_id: str, percentage: float | None) -> RoutingResult:
        result = await self._step(step, lambda: self._set_routing(request, build_id, percentage, self._routing))
        if self._routing_before is None:
            self._routing_before = result.before
        self._routing = result.routing
        self._ramping = bool(result.routing.ramping)
        self._status = replace(
            self._status,
            ramp_percentage=100.0 if percentage is None else result.routing.percentage,
            current_build=result.routing.current,
            detail=f"routing propagated in {result.propagation_seconds:.2f}s",
        )
        return result

    async def _route_back(
        self, request: DeployRequest, previous: Revision | None, image: str, build_id: str, name: str, reason: str
    ) -> DeploymentResult:
        """Routing as it was before this deployment (instant: the older version's pods still run); a version that
        never got traffic is scaled to zero; the rest of the sunset is the keeper's."""
        self._rolling_back = True
        before = self._routing_before
        restored = previous.image if previous else ""
        try:
            if self._routing is not None and before is not None:
                if self._made_current or self._routing.current == build_id:
                    await self._step(
                        "rollback: make previous current",
                        lambda: self._set_routing(request, before.current, None, self._routing),
                        interruptible=False,
                    )
                elif self._routing.ramping == build_id:
                    await self._step(
                        "rollback: stop ramping", lambda: self._set_routing(request, "", 0.0, self._routing), interruptible=False
                    )
                self._status = replace(self._status, ramp_percentage=0.0, current_build=before.current)
            elif self._apply_started:  # no traffic ever reached it: nothing can be pinned to it
                await self._step(
                    "rollback: scale the new version to 0",
                    lambda: self._retire(request, RetireAction("scale", build_id, name, 0, "rolled back before any traffic")),
                    interruptible=False,
                )
            if self._apply_started:
                await self._step("hand older versions to the keeper", lambda: self._ensure_keeper(request), interruptible=False)
        except ActivityError as err:
            cause = _cause(err)
            if cause.startswith("RoutingChangedElsewhere") and "RoutingChangedElsewhere" in reason:
                cause = "the same refusal"  # said once is enough
            return self._finish("failed", image, f"{reason}; rollback failed at {self._status.step}: {cause}", previous)
        if previous is None and not self._apply_started:
            return self._finish("failed", image, f"{reason}; nothing was applied: the cluster is unchanged", None)
        return self._finish("rolled_back", image, reason, previous, restored=restored)

    def _version_ready(self, r: DeployRequest, build_id: str, image: str) -> Awaitable[VersionReady]:
        return workflow.execute_activity(
            version_activities.version_ready,
            VersionReadyInput(app=r.app, temporal=r.temporal, cluster=r.cluster, build_id=build_id, image=image),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"Check whether version {_short(build_id)} still serves (then only routing moves)",
        )

    def _wait_registered(self, r: DeployRequest, build_id: str) -> Awaitable[None]:
        return workflow.execute_activity(
            version_activities.wait_version_registered,
            VersionCheckInput(
                temporal=r.temporal,
                deployment_name=render.deployment_name(r.app),
                build_id=build_id,
                task_queue=r.app.task_queue,
                queue_types=tuple(r.app.queue_types),
                timeout_seconds=r.app.rollout.verification_timeout_seconds,
            ),
            start_to_close_timeout=timedelta(seconds=r.app.rollout.verification_timeout_seconds + 30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=f"Check version {_short(build_id)} is registered on {r.app.task_queue!r} ({', '.join(r.app.queue_types)})",
        )

    def _set_routing(
        self, r: DeployRequest, build_id: str, percentage: float | None, expected: RoutingView | None
    ) -> Awaitable[RoutingResult]:
        deployment = render.deployment_name(r.app)
        if percentage is None:
            summary = f"Make {'version ' + _short(build_id) if build_id else 'unversioned workers'} current in {deployment}"
        elif build_id:
            summary = f"Ramp version {_short(build_id)} to {percentage:g}% of new workflows in {deployment}"
        else:
            summary = f"Stop ramping in {deployment} (the current version keeps all new workflows)"
        return workflow.execute_activity(
            version_activities.set_version_routing,
            RoutingInput(
                temporal=r.temporal, deployment_name=deployment, build_id=build_id, percentage=percentage, expected=expected
            ),
            start_to_close_timeout=timedelta(seconds=90),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=summary,
        )

    def _retire(self, r: DeployRequest, action: RetireAction) -> Awaitable[None]:
        return workflow.execute_activity(
            version_activities.retire_version,
            RetireInput(app=r.app, temporal=r.temporal, cluster=r.cluster, action=action),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
            summary=f"Scale version {_short(action.build_id)} to {action.replicas}: {action.reason}",
        )

    def _ensure_keeper(self, r: DeployRequest) -> Awaitable[str]:
        return workflow.execute_activity(
            version_activities.ensure_keeper,
            KeeperInput(app=r.app, environment=r.environment, temporal=r.temporal, cluster=r.cluster),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"Start (or wake) the keeper of {r.app.name}'s older versions",
        )

    # ----- gates (pipeline/gates.py) -----

    async def _gates(
        self,
        request: DeployRequest,
        kind: str,
        image: str,
        build_id: str,
        *,
        pinned: bool = False,
        label: str = "",
        each_step: bool = False,
        percent: float = -1.0,
        window_start: str = "",
    ) -> None:
        """Run the app's gates of `kind` (each a step); raise _GateRefused with the first refusal's summary."""
        skipped = {s.name: s for s in request.skip_gates}
        for gate in request.app.gates:
            if gate.kind != kind or (each_step and not gate.each_step):
                continue
            if gate.name in skipped:
                if not each_step:
                    s = skipped[gate.name]
                    self._steps.append(f"gate {gate.name}: skipped by {s.requested_by or 'someone'}: {s.reason}")
                    self._status = replace(self._status, steps=list(self._steps))
                continue
            step = f"gate {gate.name}" + (f" ({label})" if label else "")
            result = await self._step(
                step,
                partial(
                    self._gate,
                    request,
                    gate,
                    image,
                    build_id,
                    pinned=pinned,
                    label=label,
                    percent=percent,
                    window_start=window_start,
                ),
            )
            self._status = replace(self._status, detail=result.summary)
            if not result.ok:
                raise _GateRefused(f"gate {gate.name} refused {_short(build_id)}: {result.summary}")

    async def _gate(
        self,
        r: DeployRequest,
        gate: GateSpec,
        image: str,
        build_id: str,
        *,
        pinned: bool,
        label: str,
        percent: float,
        window_start: str,
    ) -> GateResult:
        if gate.kind == "analysis":
            started = workflow.info().start_time
            baseline = max(600, gate.soak_seconds)
            return await workflow.execute_activity(
                gates.run_analysis_gate,
                AnalysisInput(
                    temporal=r.temporal,
                    task_queue=r.app.task_queue,
                    gate=gate,
                    window_start=window_start,
                    soak_seconds=0 if pinned else gate.soak_seconds,
                    deployment_name=render.deployment_name(r.app) if pinned else "",
                    new_build=build_id if pinned else "",
                    baseline_build=(self._routing.current if self._routing else "") if pinned else "",
                    baseline_start=_rfc3339(started - timedelta(seconds=baseline)),
                    baseline_end=_rfc3339(started),
                ),
                start_to_close_timeout=timedelta(seconds=gate.soak_seconds + 120),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RETRY,
                summary=f"Gate {gate.name}: failures of {_short(build_id)} vs the baseline"
                + (f" {label}" if label else f" after a {gate.soak_seconds}s soak"),
            )
        if gate.kind == "replay":
            targets = await workflow.execute_activity(
                gates.collect_replay_targets,
                ReplayTargetsInput(
                    temporal=r.temporal,
                    task_queue=r.app.task_queue,
                    closed_histories=gate.closed_histories,
                    exclude_pinned=r.app.rollout.versioned,
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
                summary=f"Gate {gate.name}: find the workflows the new code would run on {r.app.task_queue!r}",
            )
            return await workflow.execute_activity(
                gates.run_replay_gate,
                ReplayJobInput(
                    app=r.app,
                    temporal=r.temporal,
                    cluster=r.cluster,
                    image=image,
                    build_id=build_id,
                    gate=gate,
                    targets=tuple(ReplayTarget(t.workflow_id, t.run_id, t.workflow_type) for t in targets),
                ),
                start_to_close_timeout=timedelta(seconds=gate.timeout_seconds + 120),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=replace(RETRY, maximum_attempts=2),
                summary=f"Gate {gate.name}: replay {len(targets)} workflows against {_short(build_id)} in a Job of the new image",
            )
        workflow_id = f"gate-{r.app.name}-{gate.name}-{_short(build_id)}" + (
            f"-{label.replace('at ', '').replace('%', 'pct').replace(' ', '-')}" if label else ""
        )
        return await workflow.execute_activity(
            gates.run_gate_workflow,
            GateWorkflowInput(
                temporal=r.temporal,
                app=r.app.name,
                task_queue=r.app.task_queue,
                gate=gate,
                workflow_id=f"{workflow_id}-{workflow.info().run_id[:8]}",
                pinned_deployment=render.deployment_name(r.app) if pinned else "",
                pinned_build=build_id if pinned else "",
                ramp_percent=percent,
            ),
            start_to_close_timeout=timedelta(seconds=gate.timeout_seconds + 30),
            retry_policy=RETRY,
            summary=f"Gate {gate.name}: {gate.workflow_type} must succeed on {_short(build_id)}" + (f" {label}" if label else ""),
        )

    # ----- rollback -----

    async def _roll_back(self, request: DeployRequest, previous: Revision | None, image: str, reason: str) -> DeploymentResult:
        self._rolling_back = True
        if previous is None:
            return self._finish("failed", image, f"{reason}; {self._left_behind(request, image)}", None)
        workflow.logger.info("rolling back %s to %s: %s", request.app.name, previous.image, reason)
        try:
            applied = await self._step("rollback: apply", lambda: self._apply(request, previous.manifests), interruptible=False)
            rollout = await self._step(
                "rollback: rollout", lambda: self._wait_rollout(request, applied.deployment_generation), interruptible=False
            )
            # The safety net gets at least ROLLBACK_VERIFY_SECONDS: the failed version's pods must be
            # gone before "no old pod runs" holds, and a busy node can take a while to stop them.
            window = ROLLBACK_VERIFY_SECONDS if workflow.patched("rollback-verify-window") else 0
            verified = await self._step(
                "rollback: verify",
                lambda: self._verify(request, previous.build_id, rollout, at_least=window),
                interruptible=False,
            )
            await self._step("rollback: record", lambda: self._record(request, previous), interruptible=False)
        except ActivityError as err:
            return self._finish("failed", image, f"{reason}; rollback failed at {self._status.step}: {_cause(err)}", previous)
        self._status = replace(self._status, pollers=sorted({p.identity for p in verified.pollers}))
        return self._finish("rolled_back", image, reason, previous, restored=previous.image, pollers=verified)

    def _left_behind(self, request: DeployRequest, image: str) -> str:
        """Exactly what a deployment with nothing to roll back to leaves in the cluster."""
        if not self._apply_started or self._manifests is None:
            return "no previous verified revision to roll back to, and nothing was applied: the cluster is unchanged"
        objects = ", ".join(
            f"{o.get('kind')} {o.get('metadata', {}).get('namespace', '') + '/' if o.get('metadata', {}).get('namespace') else ''}"
            f"{o.get('metadata', {}).get('name', '?')}"
            for o in self._manifests.objects
        )
        return (
            f"no previous verified revision to roll back to; left in the cluster, unverified: {objects} "
            f"(image {image}); remove them or deploy a working version of {request.app.name}"
        )

    def _end_canceled(self, result: DeploymentResult) -> NoReturn:
        """After a cancellation request: say what was restored (memo, status, search attribute), then end Canceled."""
        if result.outcome == "rolled_back":
            detail = f"canceled: restored {result.restored_image}, verified polling"
        else:
            detail = result.reason
        self._set_outcome("canceled")
        workflow.upsert_memo(
            {
                OUTCOME_MEMO: {
                    "outcome": "canceled",
                    "detail": detail,
                    "image": result.image,
                    "restored_image": result.restored_image,
                    "verified": result.outcome == "rolled_back",
                    "previous_image": result.previous_image,
                }
            }
        )
        self._status = replace(self._status, step="canceled", detail=detail)
        raise asyncio.CancelledError(detail)

    # ----- steps -----

    async def _step(self, name: str, start: Callable[[], Awaitable[T]], *, interruptible: bool = True) -> T:
        """Run one step.

        Interruptible: a rollback request or a cancellation request cancels the step's activity,
        waits until it has settled, and raises _Interrupted. Not interruptible (reading and
        recording revisions, every rollback step): the step runs to its end whatever comes; a
        cancellation request is noted and acted on afterwards.
        """
        if interruptible and self._interrupted():
            raise _Interrupted()
        self._status = replace(self._status, step=name, detail="")
        self._steps.append(name)
        self._status = replace(self._status, steps=list(self._steps))
        if name == "apply":
            self._apply_started = True
        task = asyncio.ensure_future(start())
        if not interruptible:
            return await self._to_the_end(task)
        try:
            await workflow.wait_condition(lambda: task.done() or self._interrupted())
        except asyncio.CancelledError:
            if not self._hear_cancel():
                raise  # a history from before CANCEL_RESTORES: the workflow ended Canceled here
        if task.done():
            return task.result()
        await self._settle(task)
        raise _Interrupted()

    def _interrupted(self) -> bool:
        return self._rollback is not None or self._cancel_requested

    def _hear_cancel(self) -> bool:
        """A cancellation request reached the workflow: restore first, end Canceled after (False on old histories)."""
        if not workflow.patched(CANCEL_RESTORES):
            return False
        if not self._cancel_requested:
            self._cancel_requested = True
            self._status = replace(self._status, rollback_requested=True, rollback_reason="cancellation requested")
        return True

    async def _to_the_end(self, task: asyncio.Future[T]) -> T:
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise  # the activity itself was cancelled
                if not self._hear_cancel():
                    task.cancel()  # as released: the cancellation reached the activity
                    raise
                if task.done():
                    return task.result()

    async def _settle(self, task: asyncio.Future[T]) -> None:
        """Cancel the step's activity and wait until it has ended (an apply ends only when its PATCH can no longer land)."""
        task.cancel()
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done() and not self._hear_cancel():
                    return  # as released: stop waiting
            except (ActivityError, CancelledError):
                return
        if not task.cancelled():
            task.exception()  # seen: it was cancelled, ended, or failed; the rollback follows either way

    def _read_revision(self, r: DeployRequest) -> Awaitable[ReadRevisionResult]:
        return workflow.execute_activity(
            activities.read_revision,
            ReadRevisionInput(app=r.app.name, namespace=r.app.namespace, cluster=r.cluster),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"Read the last verified revision of {r.app.name}",
        )

    def _build(self, r: DeployRequest) -> Awaitable[BuiltImage]:
        assert r.app.build is not None, "the CLI sends a build spec whenever it sends no image"
        if r.environment == "aks" and len(r.app.build.platforms) > 1 and workflow.patched(MULTI_PLATFORM_BUILDS):
            return self._build_platforms(r)
        return workflow.execute_activity(
            activities.build_image,
            BuildImageInput(app=r.app.name, target=r.environment, build=r.app.build, tag=r.tag),
            start_to_close_timeout=timedelta(minutes=30),
            # Heartbeats come every few seconds even through silent build steps (pipeline/keepalive.py).
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=replace(RETRY, maximum_attempts=3),
            summary=f"Build and push {r.app.build.repository}"
            + (f":{r.tag}" if r.tag else "")
            + (f" for {', '.join(r.app.build.platforms)}" if len(r.app.build.platforms) > 1 else ""),
        )

    async def _build_platforms(self, r: DeployRequest) -> BuiltImage:
        """Target aks, several platforms: one ACR build per platform, all at once, then their image index."""
        assert r.app.build is not None
        build = BuildImageInput(app=r.app.name, target=r.environment, build=r.app.build, tag=r.tag)
        platforms = r.app.build.platforms
        tasks = [
            asyncio.ensure_future(
                workflow.execute_activity(
                    activities.build_platform_image,
                    BuildPlatformInput(build=build, platform=platform),
                    start_to_close_timeout=timedelta(minutes=30),
                    # Each heartbeats its ACR run id: a retry follows that run, never schedules a second.
                    heartbeat_timeout=timedelta(seconds=20),
                    retry_policy=replace(RETRY, maximum_attempts=3),
                    summary=f"Build and push {r.app.build.repository} for {platform}" + (f" ({r.tag})" if r.tag else ""),
                )
            )
            for platform in platforms
        ]
        try:
            built = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one failed (or the step was interrupted): the others' runs are not needed
                task.cancel()
            raise
        images = tuple(
            b.platforms[0] if b.platforms else PlatformImage(p, b.digest, b.tag) for p, b in zip(platforms, built, strict=True)
        )
        listed = ", ".join(f"{i.platform} {_short(i.digest)}" for i in images)
        return await workflow.execute_activity(
            activities.push_image_index,
            PushIndexInput(build=build, images=images),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
            summary=f"Push the image index of {r.app.build.repository} ({listed})",
        )

    def _render(self, r: DeployRequest, image: str, build_id: str) -> Awaitable[Manifests]:
        return workflow.execute_activity(
            activities.render_manifests,
            RenderInput(app=r.app, temporal=r.temporal, image=image, build_id=build_id),
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=f"Render manifests for {r.app.name} ({_short(build_id)})",
        )

    def _apply(self, r: DeployRequest, manifests: Manifests) -> Awaitable[ApplyResult]:
        kinds = ", ".join(str(o.get("kind")) for o in manifests.objects)
        if workflow.patched("apply-settles-before-rollback"):
            # A rollback must not start while this apply's PATCH may still land (it would
            # land after the rollback's own apply and leave the new version running): on
            # cancellation wait until the attempt has ended. It heartbeats, so a dead
            # worker's attempt ends within the heartbeat timeout.
            return workflow.execute_activity(
                activities.apply_manifests,
                ApplyInput(app=r.app.name, cluster=r.cluster, manifests=manifests),
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=20),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=RETRY,
                summary=f"Server-side apply to {r.app.namespace}: {kinds}",
            )
        return workflow.execute_activity(
            activities.apply_manifests,
            ApplyInput(app=r.app.name, cluster=r.cluster, manifests=manifests),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
            summary=f"Server-side apply to {r.app.namespace}: {kinds}",
        )

    def _wait_rollout(self, r: DeployRequest, generation: int, *, deployment: str = "") -> Awaitable[RolloutResult]:
        timeout = r.app.rollout.progress_deadline_seconds + 60
        return workflow.execute_activity(
            activities.wait_for_rollout,
            RolloutInput(
                app=r.app.name,
                namespace=r.app.namespace,
                cluster=r.cluster,
                generation=generation,
                timeout_seconds=timeout,
                unready_seconds=r.app.rollout.verification_timeout_seconds,
                temporal=r.temporal,
                deployment=deployment,
            ),
            start_to_close_timeout=timedelta(seconds=timeout + 30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=f"Wait for rollout of {deployment or r.app.name} ({r.app.replicas} replicas, generation {generation})",
        )

    def _verify(
        self, r: DeployRequest, build_id: str, rollout: RolloutResult, *, at_least: int = 0, version_label: str = ""
    ) -> Awaitable[VerifyResult]:
        timeout = max(r.app.rollout.verification_timeout_seconds, at_least)
        return workflow.execute_activity(
            activities.verify_polling,
            VerifyInput(
                app=r.app.name,
                namespace=r.app.namespace,
                cluster=r.cluster,
                temporal=r.temporal,
                task_queue=r.app.task_queue,
                build_id=build_id,
                pod_template_hash=rollout.pod_template_hash,
                timeout_seconds=timeout,
                queue_types=tuple(r.app.queue_types),
                graceful_shutdown=r.app.graceful_shutdown,
                version_label=version_label,
            ),
            start_to_close_timeout=timedelta(seconds=timeout + 30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=f"Verify {len(rollout.pods)} pods poll {r.app.task_queue!r} with build {_short(build_id)}",
        )

    def _record(self, r: DeployRequest, revision: Revision) -> Awaitable[None]:
        return workflow.execute_activity(
            activities.record_revision,
            RecordRevisionInput(app=r.app.name, namespace=r.app.namespace, cluster=r.cluster, revision=revision),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"Record {_short(revision.build_id)} as the last verified revision",
        )

    # ----- outcome -----

    def _set_outcome(self, outcome: str) -> None:
        workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_OUTCOME.value_set(outcome)])

    def _finish(
        self,
        outcome: str,
        image: str,
        reason: str,
        previous: Revision | None,
        *,
        restored: str = "",
        pollers: VerifyResult | None = None,
    ) -> DeploymentResult:
        self._set_outcome(outcome)
        self._status = replace(self._status, step=outcome, detail=reason, restored_image=restored)
        self._finished = self._previous_known = True
        return DeploymentResult(
            app=self._request.app.name,
            outcome=outcome,
            image=image,
            reason=reason,
            previous_image=previous.image if previous else "",
            restored_image=restored,
            pollers=list(pollers.pollers) if pollers else [],
            steps=list(self._steps),
            platforms=list(self._platforms),
        )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(build_id: str) -> str:
    return build_id.replace("sha256:", "")[:12] if build_id else "?"


def _cause(err: BaseException) -> str:
    """The failure message of what went wrong, not the wrapping.

    The first typed ApplicationError down the chain is the pipeline's own translated error (an
    activity raises it `from` the library exception it translated, e.g. a KubeForbidden from the
    kubernetes client's multi-line ForbiddenException), so the walk stops there.
    """
    cause: BaseException = err
    while cause.__cause__ is not None and not (isinstance(cause, ApplicationError) and cause.type):
        cause = cause.__cause__
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"
    return str(cause)
