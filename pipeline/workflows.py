"""DeploymentWorkflow: one execution per deployment of one app to one environment.

The workflow only decides; activities do. Its history is the deployment's
audit trail: what was built (by digest), what was applied, how the rollout
went, who polls, and, if it came to that, why and to what it rolled back.

    read previous revision ─▶ build ─▶ render ─▶ apply ─▶ rollout ─▶ verify ─▶ record
                                   ╲        ╲        ╲        ╲         ╲
                                    rollback signal, or a failure with auto_rollback:
                                    re-apply the previous revision ─▶ rollout ─▶ verify

A `rollback` signal is accepted at any step: the running activity is
cancelled and the previous verified revision is restored and verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pipeline import activities, search_attributes
    from pipeline.contract import ROLLBACK_SIGNAL, STATUS_QUERY, WORKFLOW_TYPE, RollbackRequest
    from pipeline.models import (
        ApplyInput,
        ApplyResult,
        BuildImageInput,
        BuiltImage,
        DeploymentResult,
        DeploymentStatus,
        DeployRequest,
        Manifests,
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

T = TypeVar("T")

# Bad input and definitive verdicts are not worth retrying; everything else (a 429, a 5xx,
# a dropped connection, a registry hiccup) is, with back-off.
NON_RETRYABLE = [
    "ConfigError",
    "KubeInvalid",
    "KubeForbidden",
    "KubeUnauthorized",
    "KubeNotFound",
    "RolloutFailed",
    "VerificationFailed",
    "BuildError",
    "RenderError",
    # Azure (target aks): a refused credential, a missing role or resource, a bad request, a failed ACR run.
    "AzureUnauthorized",
    "AzureForbidden",
    "AzureNotFound",
    "AzureBadRequest",
    "AcrRunFailed",
]
ROLLBACK_VERIFY_SECONDS = 60
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE,
)


class _RollbackRequested(Exception):
    """Raised inside the workflow when the rollback signal interrupts a step."""


@workflow.defn(name=WORKFLOW_TYPE)
class DeploymentWorkflow:
    @workflow.init
    def __init__(self, request: DeployRequest) -> None:
        self._request = request
        self._status = DeploymentStatus(app=request.app.name, step="starting")
        self._rollback: RollbackRequest | None = None
        self._steps: list[str] = []

    @workflow.signal(name=ROLLBACK_SIGNAL)
    def rollback(self, request: RollbackRequest) -> None:
        """Stop forward progress and restore the previous verified revision (accepted at any step)."""
        if self._rollback is None:
            self._rollback = request
            self._status = replace(self._status, rollback_requested=True, rollback_reason=request.reason)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DeploymentStatus:
        return self._status

    @workflow.run
    async def run(self, request: DeployRequest) -> DeploymentResult:
        app = request.app
        self._set_outcome("running")
        try:
            read = await self._step("read previous revision", lambda: self._read_revision(request), interruptible=False)
        except ActivityError as err:  # e.g. the cluster is unreachable: nothing was changed
            return self._finish("failed", request.image, f"read previous revision failed: {_cause(err)}", None)
        previous = read.revision
        self._status = replace(self._status, previous_image=previous.image if previous else "")
        image = request.image
        build_id = ""
        try:
            if not image:
                built = await self._step("build", lambda: self._build(request))
                image, build_id = built.reference, built.digest
            else:
                build_id = _build_id_of(image)
            self._status = replace(self._status, image=image)
            workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_IMAGE.value_set(image)])
            manifests = await self._step("render", lambda: self._render(request, image, build_id))
            applied = await self._step("apply", lambda: self._apply(request, manifests))
            rollout = await self._step("rollout", lambda: self._wait_rollout(request, applied.deployment_generation))
            self._status = replace(
                self._status,
                replicas=rollout.replicas,
                updated_replicas=rollout.replicas,
                ready_replicas=rollout.ready_replicas,
                available_replicas=rollout.available_replicas,
            )
            verified = await self._step("verify", lambda: self._verify(request, build_id, rollout))
        except _RollbackRequested:
            reason = f"rollback requested: {self._rollback.reason if self._rollback else ''}".rstrip(": ")
            return await self._roll_back(request, previous, image, reason)
        except ActivityError as err:
            reason = f"{self._status.step} failed: {_cause(err)}"
            if app.rollout.auto_rollback and self._status.step in ("apply", "rollout", "verify"):
                return await self._roll_back(request, previous, image, reason)
            return self._finish("failed", image, reason, previous)
        revision = Revision(
            image=image,
            build_id=build_id,
            manifests=manifests,
            deployed_at=workflow.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            workflow_id=workflow.info().workflow_id,
        )
        await self._step("record", lambda: self._record(request, revision), interruptible=False)
        if self._rollback is not None:  # the signal came while the verified revision was being recorded
            return await self._roll_back(request, previous, image, f"rollback requested: {self._rollback.reason}".rstrip(": "))
        self._status = replace(self._status, pollers=sorted({p.identity for p in verified.pollers}))
        return self._finish("succeeded", image, "", previous, pollers=verified)

    # ----- rollback -----

    async def _roll_back(self, request: DeployRequest, previous: Revision | None, image: str, reason: str) -> DeploymentResult:
        if previous is None:
            return self._finish("failed", image, f"{reason}; no previous verified revision to roll back to", None)
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

    # ----- steps -----

    async def _step(self, name: str, start: Callable[[], Awaitable[T]], *, interruptible: bool = True) -> T:
        """Run one step; with `interruptible`, a rollback signal cancels it and raises _RollbackRequested."""
        if interruptible and self._rollback is not None:
            raise _RollbackRequested()
        self._status = replace(self._status, step=name, detail="")
        self._steps.append(name)
        self._status = replace(self._status, steps=list(self._steps))
        if not interruptible:
            return await start()
        task = asyncio.ensure_future(start())
        await workflow.wait_condition(lambda: task.done() or self._rollback is not None)
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, ActivityError, CancelledError):
            pass
        raise _RollbackRequested()

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
        return workflow.execute_activity(
            activities.build_image,
            BuildImageInput(app=r.app.name, target=r.target, build=r.app.build, tag=r.tag),
            start_to_close_timeout=timedelta(minutes=30),
            # Heartbeats come every few seconds even through silent build steps (pipeline/keepalive.py).
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=replace(RETRY, maximum_attempts=3),
            summary=f"Build and push {r.app.build.repository}" + (f":{r.tag}" if r.tag else ""),
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
                app=r.app.name, namespace=r.app.namespace, cluster=r.cluster, generation=generation, timeout_seconds=timeout
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
        self._status = replace(self._status, step=outcome, detail=reason)
        return DeploymentResult(
            app=self._request.app.name,
            outcome=outcome,
            image=image,
            reason=reason,
            previous_image=previous.image if previous else "",
            restored_image=restored,
            pollers=list(pollers.pollers) if pollers else [],
            steps=list(self._steps),
        )


def _build_id_of(image: str) -> str:
    """An existing image's build id: its digest, or its tag when given by tag."""
    if "@" in image:
        return image.split("@", 1)[1]
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else image


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
