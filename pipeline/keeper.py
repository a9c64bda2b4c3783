"""VersionKeeperWorkflow: one per versioned app and environment, owning the sunset of its older versions.

Why a workflow of its own: a version drains for as long as its pinned workflows run (hours or
months), far beyond the deployment that made its successor current, and several deployments
may leave versions behind. The deployment workflow stays short (one rollout, then it ends
and the next deployment may start); each successful versioned deployment signals-with-start
this workflow (`versions-<environment>-<app>`), which

    survey (Temporal + Kubernetes) ─▶ plan (pipeline/sunset.py, pure) ─▶ retire ─▶ sleep until
    the next rule can fire, or until poked

and ends once no older version is left to watch. Every scale-down and delete is an activity
in its history with the reason, so "why was v3 deleted" is answered in the Web UI.
It continues as new every ROUNDS_PER_RUN rounds to keep its history short.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pipeline import sunset
    from pipeline.errors import non_retryable_types
    from pipeline.models import KeeperInput, RetireInput, VersionsInput, VersionsReport
    from pipeline.version_activities import KEEPER_POKE_SIGNAL, KEEPER_WORKFLOW_TYPE, retire_version, survey_versions

ROUNDS_PER_RUN = 200
HOLD_WHILE_BUSY = "keeper-holds-while-busy"
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=non_retryable_types(),
)


@workflow.defn(name=KEEPER_WORKFLOW_TYPE)
class VersionKeeperWorkflow:
    def __init__(self) -> None:
        self._poked = False
        self._last: VersionsReport | None = None
        self._retired: list[str] = []

    @workflow.signal(name=KEEPER_POKE_SIGNAL, description="A versioned deployment ended: survey again now.")
    def poke(self) -> None:
        self._poked = True

    @workflow.query(name="versions")
    def versions(self) -> VersionsReport | None:
        return self._last

    @workflow.run
    async def run(self, request: KeeperInput) -> list[str]:
        app = request.app
        survey_input = VersionsInput(app=app, environment=request.environment, temporal=request.temporal, cluster=request.cluster)
        rounds = request.rounds
        while True:
            self._poked = False
            report = await workflow.execute_activity(
                survey_versions,
                survey_input,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RETRY,
                summary=f"Survey the versions of {app.name}",
            )
            self._last = report
            # Released keepers retired versions while a deployment ran; since this patch they wait (pipeline/sunset.py).
            hold = workflow.patched(HOLD_WHILE_BUSY)
            actions, wait = sunset.plan(report, app.rollout, now=workflow.now().timestamp(), hold_while_busy=hold)
            for action in actions:
                try:
                    await workflow.execute_activity(
                        retire_version,
                        RetireInput(app=app, temporal=request.temporal, cluster=request.cluster, action=action),
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=non_retryable_types()),
                        summary=f"{'Scale' if action.action == 'scale' else 'Delete'} version {action.build_id.replace('sha256:', '')[:12]}"
                        + (f" to {action.replicas}" if action.action == "scale" else "")
                        + f": {action.reason}",
                    )
                    self._retired.append(f"{action.action} {action.build_id}: {action.reason}")
                except Exception as err:  # refused for now (e.g. the server still remembers its pollers): next round
                    workflow.logger.info("sunset of %s postponed: %s", action.build_id, err)
                    wait = min(wait or sunset.MAX_WAIT, 10.0)
            if wait is None and not actions:
                return self._retired
            rounds += 1
            if rounds % ROUNDS_PER_RUN == 0:
                workflow.continue_as_new(KeeperInput(**{**request.__dict__, "rounds": rounds}))
            try:
                await workflow.wait_condition(lambda: self._poked, timeout=timedelta(seconds=wait or sunset.MIN_WAIT))
            except TimeoutError:
                pass
