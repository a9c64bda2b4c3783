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
from datetime import timedelta
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pipeline import activities, revisions, search_attributes
    from pipeline.contract import (
        OUTCOME_MEMO,
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
        ApplyInput,
        ApplyResult,
        BuildImageInput,
        BuildPlatformInput,
        BuiltImage,
        DeploymentResult,
        DeploymentStatus,
        DeployRequest,
        Manifests,
        PlatformImage,
        PushIndexInput,
        ReadRevisionInput,
        ReadRevisionResult,
        RecordRevisionInput,
        RenderInput,
        Revision,
        RolloutInput,
        RolloutResult,
        VerifyInput,
        VerifyResult,
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
_NO_INPUT = RawValue(Payload())


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
            self._manifests = manifests
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
        except _Interrupted:
            return await self._roll_back(request, previous, image, self._interruption())
        except ActivityError as err:
            reason = f"{self._status.step} failed: {_cause(err)}"
            if restored_from:
                reason = f"rollback to {restored_from.image} failed at {reason}"
            if app.rollout.auto_rollback and self._status.step in ("apply", "rollout", "verify"):
                return await self._roll_back(request, previous, image, reason)
            return self._finish("failed", image, reason, previous)
        revision = Revision(
            image=image,
            build_id=build_id,
            manifests=manifests,
            deployed_at=workflow.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            workflow_id=workflow.info().workflow_id,
            platforms=self._platforms,
        )
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

    def _interruption(self) -> str:
        if self._cancel_requested:
            return f"canceled: {workflow.cancellation_reason() or 'a cancellation was requested'}"
        return f"rollback requested: {self._rollback.reason if self._rollback else ''}".rstrip(": ")

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

    def _wait_rollout(self, r: DeployRequest, generation: int) -> Awaitable[RolloutResult]:
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
            ),
            start_to_close_timeout=timedelta(seconds=timeout + 30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RETRY,
            summary=f"Wait for rollout of {r.app.name} ({r.app.replicas} replicas, generation {generation})",
        )

    def _verify(self, r: DeployRequest, build_id: str, rollout: RolloutResult, *, at_least: int = 0) -> Awaitable[VerifyResult]:
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
