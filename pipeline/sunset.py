"""The sunset of a versioned app's older versions, planned from a survey: a pure function (plan, then execute).

    actions, wait = plan(report, rollout, now=time)

Rules, per version (`VersionRow`), in this order:

- the current version, the ramping one, and the build a running deployment is rolling out
  are never touched;
- a version with open PINNED workflows is never scaled down, whatever Temporal's drainage
  says (draining means new pinned work may still arrive; the count is the visibility query);
- a DRAINED version (no pinned workflow left, and the server's grace period passed) is scaled
  to `drained_replicas` once `scaledown_delay_seconds` have passed since it drained, and
  deleted (Deployment, ConfigMap, Version) once `delete_delay_seconds` have;
- a version that never became current (INACTIVE: a failed or rolled-back ramp) counts from
  its creation instead, with the same two delays;
- beyond `retained_versions` (current included), the oldest deletable versions go at once,
  so the Worker Deployment stays below the server's cap on versions;
- a Version whose Deployment is gone is deleted from Temporal (the server refuses while its
  pollers are remembered: the keeper tries again next round);
- nothing at all while a routing change propagates or a deployment of the app runs: a Version
  deleted while a routing update propagated left that update IN_PROGRESS for good on the dev
  server (1.32), which wedged the next deployment.

`wait` is how long until the next rule can fire (None: nothing left to watch).
"""

from __future__ import annotations

from pipeline.models import RetireAction, RolloutSpec, VersionRow, VersionsReport

MIN_WAIT = 2.0
MAX_WAIT = 300.0


def _protected(row: VersionRow, report: VersionsReport) -> bool:
    return (
        row.build_id in (report.routing.current, report.routing.ramping) or row.deploying or row.status in ("current", "ramping")
    )


def _since(row: VersionRow) -> float:
    """When the version's sunset clock started: drained (or draining) time, else creation."""
    return row.drainage_since or row.created_at


def _deletable(row: VersionRow, report: VersionsReport) -> bool:
    return not _protected(row, report) and row.open_pinned == 0 and row.status in ("drained", "inactive", "")


def plan(
    report: VersionsReport, rollout: RolloutSpec, *, now: float, hold_while_busy: bool = True
) -> tuple[list[RetireAction], float | None]:
    actions: list[RetireAction] = []
    waits: list[float] = []
    if hold_while_busy and (not report.routing_completed or any(r.deploying for r in report.versions)):
        # Never change the set of versions while routing propagates or a deployment is rolling one out: a
        # Version deleted mid-propagation wedged the server's routing update (seen on the dev server 1.32).
        return [], MIN_WAIT * 5
    deletable = [r for r in report.versions if _deletable(r, report)]
    excess = max(0, len(report.versions) - rollout.retained_versions)
    forced = {r.build_id for r in sorted(deletable, key=_since)[:excess]}
    for row in report.versions:
        if _protected(row, report):
            continue
        if row.status == "draining" or row.open_pinned > 0:
            waits.append(MAX_WAIT if row.status != "draining" else 10.0)  # drainage is re-checked by the server
            continue
        if not _deletable(row, report):
            continue
        age = now - _since(row) if _since(row) else float("inf")
        if row.build_id in forced or age >= rollout.delete_delay_seconds or (not row.deployment and row.status):
            why = (
                f"beyond the {rollout.retained_versions} retained versions"
                if row.build_id in forced
                else ("its Deployment is gone" if not row.deployment else f"{_word(row)} {int(age)}s ago")
            )
            actions.append(RetireAction("delete", row.build_id, row.deployment, reason=why))
            continue
        if row.deployment and age >= rollout.scaledown_delay_seconds and row.replicas > rollout.drained_replicas:
            actions.append(
                RetireAction(
                    "scale",
                    row.build_id,
                    row.deployment,
                    replicas=rollout.drained_replicas,
                    reason=f"{_word(row)} {int(age)}s ago",
                )
            )
        for delay in (rollout.scaledown_delay_seconds, rollout.delete_delay_seconds):
            if age < delay:
                waits.append(delay - age)
        waits.append(MAX_WAIT)  # still to delete (the next round retries a refused delete)
    if not waits and not actions:
        return actions, None
    wait = min(waits) if waits else MIN_WAIT
    return actions, max(MIN_WAIT, min(MAX_WAIT, wait))


def _word(row: VersionRow) -> str:
    return "drained" if row.status == "drained" else "created and never current"
