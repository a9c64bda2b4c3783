"""The CronJob controller (batch/v1), as kube-controller-manager 1.32's cronjob_controllerv2.go runs it.

One sync of a CronJob (syncCronJob, then cleanupFinishedJobs):

- Its Jobs are those whose controller reference names it. A finished Job still in `status.active` leaves it
  (event `SawCompletedJob`); an unfinished one not in it is reported (`UnexpectedJob`, e.g. one made by
  `kubectl create job --from=cronjob/x`); a succeeded one moves `status.lastSuccessfulTime` to its
  completionTime; an active reference whose Job is gone is dropped (`MissingJob`).
- Nothing more for a CronJob being deleted, with an unknown `timeZone` (`UnknownTimeZone`), `suspend`ed, or
  whose schedule does not parse (`UnparseableSchedule`). The schedule is `TZ=<timeZone> <schedule>` (cron.py).
- The most recent unmet schedule time after `status.lastScheduleTime` (else the creation time, or now minus
  `startingDeadlineSeconds` if later) and not after now; none: wait for the next. Later than
  `startingDeadlineSeconds` after it: `MissSchedule`, no Job. Already made (the Job name in `active`, or
  `lastScheduleTime` equal to it): nothing. `concurrencyPolicy` Forbid with an active Job: `JobAlreadyActive`,
  skipped; Replace: the active Jobs are deleted first (background propagation, `SuccessfulDelete`).
- The Job (getJobFromTemplate2): named `<cronjob>-<scheduled time in Unix minutes>`, the template's labels and
  annotations plus `batch.kubernetes.io/cronjob-scheduled-timestamp` (RFC 3339 in the CronJob's zone), a
  controller ownerReference, the template's spec; `SuccessfulCreate`, then `active` gets its reference and
  `lastScheduleTime` the scheduled time. An existing Job of that name owned by the CronJob is adopted into
  `active`; one owned by someone else is left alone.
- Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are deleted, oldest (by
  startTime) first.
- The CronJob is synced again 100 ms after its next schedule time (nextScheduleTimeDuration).

The clock is a constructor argument, so that tests drive it (tests/cluster/test_cronjobs.py).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from bootstrap.cluster import cron, registry
from bootstrap.cluster.controllers._base import Controller, Key
from bootstrap.cluster.controllers._util import controller_ref, now, owner_reference, parse_time
from bootstrap.cluster.defaults import apply_defaults
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.events import WARNING, EventRecorder
from bootstrap.cluster.resources import CRONJOBS, JOBS
from bootstrap.cluster.store import Obj, Store, WatchEvent
from bootstrap.cluster.validation import validate

log = logging.getLogger(__name__)

COMPONENT = "cronjob-controller"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1  # seconds after the schedule time the controller wakes (nextScheduleDelta)
MISSED_SCHEDULES_WARNING = 100


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finished_condition(job: Obj) -> str | None:
    """ "Complete" or "Failed" when the Job has finished (jobutil.FinishedCondition), else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """getJobName: `<cronjob>-<scheduled time in minutes since the epoch>`."""
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def schedule_of(cronjob: Obj) -> cron.Schedule:
    """formatSchedule + cron.ParseStandard: the spec's schedule in its timeZone (raises CronError)."""
    spec = cronjob.get("spec") or {}
    text = str(spec.get("schedule") or "")
    if spec.get("timeZone") is not None and "TZ" not in text:
        text = f"TZ={spec['timeZone']} {text}"
    return cron.parse_standard(text)


def job_from_template(cronjob: Obj, scheduled: datetime) -> Obj:
    """getJobFromTemplate2."""
    spec = cronjob.get("spec") or {}
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    zone = cron.load_zone(str(spec.get("timeZone") or ""))
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = scheduled.astimezone(zone).isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(cronjob, scheduled),
            "namespace": cronjob["metadata"]["namespace"],
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [owner_reference(cronjob)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def most_recent_schedule_time(
    cronjob: Obj, at: datetime, schedule: cron.Schedule, *, with_deadline: bool
) -> tuple[datetime | None, int]:
    """mostRecentScheduleTime: the latest schedule time after the last one (or the creation, or the starting
    deadline) and not after `at`, and how many were missed; (None, 0) when the next is still to come."""
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cronjob["metadata"].get("creationTimestamp")) or at
    deadline = spec.get("startingDeadlineSeconds")
    if with_deadline and deadline is not None:
        earliest = max(earliest, at - timedelta(seconds=int(deadline)))
    first = schedule.next(earliest)
    if first is None or first > at:
        return None, 0
    second = schedule.next(first)
    if second is None or second > at:
        return first, 1
    interval = (second - first).total_seconds()
    missed = int((at - first).total_seconds() // interval) + 1 if interval >= 1 else 0
    # From about two intervals before `at` on (the walk stays short), as the controller's potentialEarliest.
    t: datetime | None = max(first, at - timedelta(seconds=2 * interval)) if missed > 2 else first
    latest = first
    while t is not None and t <= at:
        latest = t
        t = schedule.next(t)
    return latest, missed


class CronJobController(Controller):
    resource = CRONJOBS

    def __init__(self, store: Store, *, events: EventRecorder | None = None, clock: Callable[[], datetime] = now) -> None:
        super().__init__(store)
        self._events = events or EventRecorder(store)
        self._clock = clock

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object
        meta = obj["metadata"]
        if event.resource is CRONJOBS and event.type != "DELETED":
            self._queue.add((meta["namespace"], meta["name"]))
        elif event.resource is JOBS:
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "CronJob" and ref.get("apiVersion") == "batch/v1":
                self._queue.add((meta["namespace"], ref["name"]))

    def _record(self, cronjob: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        self._events.record(cronjob, reason=reason, message=message, component=COMPONENT, type=WARNING if warning else "Normal")

    # ----- reconcile -----

    def sync(self, key: Key) -> None:
        namespace, name = key
        cronjob = self._store.try_get(CRONJOBS, namespace, name)
        if cronjob is None:
            return
        jobs = [
            j
            for j in self._store.list(JOBS, namespace)
            if (ref := controller_ref(j)) is not None and ref.get("kind") == "CronJob" and ref.get("name") == name
        ]
        old_status = copy.deepcopy(cronjob.get("status") or {})
        cronjob["status"] = status = copy.deepcopy(old_status)
        requeue = self._sync_cronjob(cronjob, jobs)
        self._cleanup_finished(cronjob, jobs)
        if not status.get("active"):
            status.pop("active", None)
        if status != old_status:
            self._store.update(CRONJOBS, cronjob, subresource="status")
        if requeue is not None:
            self._queue.add_after(key, max(0.0, requeue))

    def _sync_cronjob(self, cronjob: Obj, jobs: list[Obj]) -> float | None:
        """syncCronJob on `cronjob` (its status edited in place); seconds until the next sync, or None."""
        spec, status = cronjob.get("spec") or {}, cronjob["status"]
        active: list[Obj] = status.setdefault("active", [])
        at = self._clock()
        children = set()
        for job in jobs:
            uid = job["metadata"]["uid"]
            children.add(uid)
            listed = any(ref.get("uid") == uid for ref in active)
            finished = finished_condition(job)
            if not listed and finished is None:
                self._record(
                    cronjob,
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {job['metadata']['name']}",
                    warning=True,
                )
            elif listed and finished is not None:
                active[:] = [ref for ref in active if ref.get("uid") != uid]
                self._record(cronjob, "SawCompletedJob", f"Saw completed job: {job['metadata']['name']}, condition: {finished}")
            elif finished == "Complete":
                completed = (job.get("status") or {}).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                done = parse_time(completed)
                if done is not None and (last is None or done > last):
                    status["lastSuccessfulTime"] = completed
        for ref in list(active):
            if ref.get("uid") in children:
                continue
            found = self._store.try_get(JOBS, cronjob["metadata"]["namespace"], str(ref.get("name") or ""))
            if found is None or found["metadata"]["uid"] != ref.get("uid"):
                active.remove(ref)
                self._record(cronjob, "MissingJob", f"Active job went missing: {ref.get('name')}")

        if cronjob["metadata"].get("deletionTimestamp"):
            return None
        zone = spec.get("timeZone")
        if zone is not None:
            try:
                cron.load_zone(str(zone))
            except cron.CronError as err:
                self._record(cronjob, "UnknownTimeZone", f'invalid timeZone: "{zone}": {err}', warning=True)
                return None
        if spec.get("suspend"):
            return None
        try:
            schedule = schedule_of(cronjob)
        except cron.CronError as err:
            self._record(cronjob, "UnparseableSchedule", f'unparseable schedule: "{spec.get("schedule")}" : {err}', warning=True)
            return None
        scheduled, missed = most_recent_schedule_time(cronjob, at, schedule, with_deadline=True)
        if scheduled is None:
            return self._next_sync(cronjob, at, schedule)
        if missed > MISSED_SCHEDULES_WARNING:
            self._record(
                cronjob,
                "TooManyMissedTimes",
                f"too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                warning=True,
            )
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < at:
            when = format_datetime(scheduled.astimezone(UTC))
            self._record(cronjob, "MissSchedule", f"Missed scheduled time to start a job: {when}", warning=True)
            return self._next_sync(cronjob, at, schedule)
        name = job_name(cronjob, scheduled)
        if any(ref.get("name") == name for ref in active) or parse_time(status.get("lastScheduleTime")) == scheduled:
            return self._next_sync(cronjob, at, schedule)
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self._record(
                cronjob,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return self._next_sync(cronjob, at, schedule)
        if policy == "Replace":
            for ref in list(active):
                running = self._store.try_get(JOBS, cronjob["metadata"]["namespace"], str(ref.get("name") or ""))
                if running is not None:
                    self._delete_job(cronjob, running)
                else:
                    active.remove(ref)
        made = self._create_job(cronjob, scheduled)
        if made is None:
            return None
        active.append(
            {
                "kind": "Job",
                "namespace": made["metadata"]["namespace"],
                "name": made["metadata"]["name"],
                "uid": made["metadata"]["uid"],
                "apiVersion": "batch/v1",
                "resourceVersion": made["metadata"]["resourceVersion"],
            }
        )
        status["lastScheduleTime"] = _fmt(scheduled)
        return self._next_sync(cronjob, at, schedule)

    def _create_job(self, cronjob: Obj, scheduled: datetime) -> Obj | None:
        """The Job for `scheduled`, created as the API creates one (defaults, validation, generated selector);
        an existing one of that name if the CronJob controls it and has not listed it yet; else None."""
        job = job_from_template(cronjob, scheduled)
        try:
            apply_defaults(JOBS, job)
            validate(JOBS, job)
            registry.prepare_for_create(JOBS, job, self._store)
            created = self._store.create(JOBS, job)
        except ApiError as err:
            if err.code == 409:
                existing = self._store.try_get(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])
                ref = controller_ref(existing) if existing is not None else None
                if existing is None or ref is None or ref.get("uid") != cronjob["metadata"]["uid"]:
                    return None
                if any(a.get("uid") == existing["metadata"]["uid"] for a in cronjob["status"].get("active") or []):
                    return None
                return existing
            self._record(cronjob, "FailedCreate", f"Error creating job: {err.message}", warning=True)
            return None
        self._record(cronjob, "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        return created

    def _delete_job(self, cronjob: Obj, job: Obj) -> bool:
        """deleteJob: background propagation; the reference leaves `active`."""
        meta = job["metadata"]
        try:
            self._store.delete(JOBS, meta["namespace"], meta["name"], propagation="Background")
        except ApiError as err:
            if err.code != 404:
                self._record(cronjob, "FailedDelete", f"Deleted job: {err.message}", warning=True)
                return False
        active = cronjob["status"].get("active") or []
        active[:] = [ref for ref in active if ref.get("uid") != meta["uid"]]
        self._record(cronjob, "SuccessfulDelete", f"Deleted job {meta['name']}")
        return True

    def _cleanup_finished(self, cronjob: Obj, jobs: list[Obj]) -> None:
        """cleanupFinishedJobs: the oldest finished Jobs beyond the history limits are deleted."""
        spec = cronjob.get("spec") or {}
        for outcome, key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(key)
            if limit is None:
                continue
            finished = [j for j in jobs if finished_condition(j) == outcome]
            excess = len(finished) - int(limit)
            if excess <= 0:
                continue
            finished.sort(key=_start_key)
            for job in finished[:excess]:
                self._delete_job(cronjob, job)

    @staticmethod
    def _next_sync(cronjob: Obj, at: datetime, schedule: cron.Schedule) -> float | None:
        """nextScheduleTimeDuration: seconds until just after the schedule time following the most recent one
        (or the last schedule time, or the creation)."""
        latest, _ = most_recent_schedule_time(cronjob, at, schedule, with_deadline=False)
        if latest is None:
            status = cronjob.get("status") or {}
            latest = parse_time(status.get("lastScheduleTime")) or parse_time(cronjob["metadata"].get("creationTimestamp"))
        following = schedule.next(latest or at)
        if following is None:
            return None
        return (following - at).total_seconds() + NEXT_SCHEDULE_DELTA


def _start_key(job: Obj) -> tuple[int, str, str]:
    """byJobStartTime: Jobs without a startTime last, then by startTime, then by name."""
    start = (job.get("status") or {}).get("startTime")
    return (0 if start else 1, str(start or ""), str(job["metadata"]["name"]))
