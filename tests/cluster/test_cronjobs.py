"""batch/v1 CronJobs: the schedule parser, the controller on a clock the test drives, and the API through the
real kubectl and the `kubernetes` client (the API-only session cluster; one test waits for the real clock).

The controller tests run `CronJobController.sync` on an in-memory store with the cluster's own defaulting
and validation, at times the test chooses (no waiting): names, annotation, owner, status, the three
concurrency policies, suspend, startingDeadlineSeconds, history limits and time zones.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time as dt_time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bootstrap.cluster import cron, registry
from bootstrap.cluster.controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController
from bootstrap.cluster.controllers.job import JobController
from bootstrap.cluster.defaults import apply_defaults
from bootstrap.cluster.resources import CRONJOBS, EVENTS, JOBS, NAMESPACES
from bootstrap.cluster.store import Store
from bootstrap.cluster.validation import validate
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

Obj = dict[str, Any]
T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)  # a Monday, on the hour
# The controller tests' start: 10:00 UTC tomorrow, after the CronJobs' (real) creation time.
C0 = (datetime.now(UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)


# ----- the schedule parser (robfig/cron's ParseStandard) -----


@pytest.mark.unit
@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("* * * * *", "2026-03-02T10:00:00", "2026-03-02T10:01:00"),
        ("*/15 * * * *", "2026-03-02T10:07:30", "2026-03-02T10:15:00"),
        ("5 4 * * sun", "2026-03-02T10:00:00", "2026-03-08T04:05:00"),
        ("0 9 * * MON-FRI", "2026-03-06T09:00:00", "2026-03-09T09:00:00"),
        ("0 0 13 * 5", "2026-03-02T00:00:00", "2026-03-06T00:00:00"),  # day of month OR day of week
        ("0 0 1 jan,jul *", "2026-03-02T00:00:00", "2026-07-01T00:00:00"),
        ("30 2/6 * * *", "2026-03-02T10:00:00", "2026-03-02T14:30:00"),
        ("@hourly", "2026-03-02T10:00:00", "2026-03-02T11:00:00"),
        ("@daily", "2026-03-02T10:00:00", "2026-03-03T00:00:00"),
        ("@weekly", "2026-03-02T10:00:00", "2026-03-08T00:00:00"),
        ("@monthly", "2026-03-02T10:00:00", "2026-04-01T00:00:00"),
        ("@yearly", "2026-03-02T10:00:00", "2027-01-01T00:00:00"),
        ("@every 90s", "2026-03-02T10:00:00", "2026-03-02T10:01:30"),
        ("TZ=Europe/Berlin 0 9 * * *", "2026-03-02T10:00:00", "2026-03-03T08:00:00"),  # 09:00 CET
    ],
)
def test_next_activation(schedule: str, after: str, expected: str) -> None:
    found = cron.parse_standard(schedule).next(datetime.fromisoformat(after).replace(tzinfo=UTC))
    assert found is not None and found.astimezone(UTC) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.unit
def test_a_schedule_that_never_fires_has_no_next() -> None:
    assert cron.parse_standard("0 0 30 2 *").next(T0) is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("1/2/3 * * * *", "too many slashes: 1/2/3"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("@often", "unrecognized descriptor: @often"),
    ],
)
def test_schedule_errors_are_robfig_crons(schedule: str, message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse_standard(schedule)
    assert str(caught.value) == message


# ----- the controller, on a clock the test drives -----


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()  # the work queue's timers need one; nothing waits on them here
    yield loop
    loop.close()


def make_cronjob(store: Store, name: str = "tick", **spec: Any) -> Obj:
    """A CronJob created as the API creates one (defaults, validation, status)."""
    obj: Obj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "schedule": "* * * * *",
            **spec,
            "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}},
            },
        },
    }
    apply_defaults(CRONJOBS, obj)
    validate(CRONJOBS, obj)
    registry.prepare_for_create(CRONJOBS, obj, store)
    return store.create(CRONJOBS, obj)


@pytest.fixture
def env(loop: asyncio.AbstractEventLoop) -> tuple[Store, Clock, Callable[[str], Obj]]:
    """(store, clock, sync(name) -> the CronJob after one sync at the clock's time)."""
    store = Store(None)
    store.create(NAMESPACES, {"metadata": {"name": "ns"}})
    clock = Clock(C0)
    controller = CronJobController(store, clock=clock)

    def sync(name: str) -> Obj:
        async def once() -> None:
            controller.sync(("ns", name))

        loop.run_until_complete(once())
        return store.get(CRONJOBS, "ns", name)

    return store, clock, sync


def jobs(store: Store) -> list[Obj]:
    return sorted(store.list(JOBS, "ns"), key=lambda j: j["metadata"]["name"])


def reasons(store: Store) -> list[str]:
    return [e["reason"] for e in store.list(EVENTS, "ns")]


def finish(store: Store, job: Obj, outcome: str, at: datetime) -> None:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    job = store.get(JOBS, "ns", job["metadata"]["name"])
    job["status"] = {"startTime": stamp, "conditions": [{"type": outcome, "status": "True"}]}
    if outcome == "Complete":
        job["status"]["completionTime"] = stamp
    store.update(JOBS, job, subresource="status")


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def minutes(t: datetime) -> int:
    return int(t.timestamp()) // 60


@pytest.mark.unit
def test_a_due_schedule_makes_one_job_named_by_its_minute(env: Any) -> None:
    store, clock, sync = env
    cj = make_cronjob(store)
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["suspend"] is False
    assert (cj["spec"]["successfulJobsHistoryLimit"], cj["spec"]["failedJobsHistoryLimit"]) == (3, 1)

    clock.at = C0 + timedelta(seconds=2)  # many activations since the creation: the most recent one only
    cj = sync("tick")
    [job] = jobs(store)
    assert job["metadata"]["name"] == f"tick-{minutes(C0)}"
    assert job["metadata"]["annotations"] == {"note": "x", SCHEDULED_TIMESTAMP: stamp(C0)}
    assert job["metadata"]["labels"]["team"] == "a"
    [owner] = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "tick",
        "uid": cj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["spec"]["backoffLimit"] == 6 and job["spec"]["selector"]["matchLabels"]  # created as the API would
    assert cj["status"]["lastScheduleTime"] == stamp(C0)
    [ref] = cj["status"]["active"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Job", job["metadata"]["name"], job["metadata"]["uid"])
    assert "SuccessfulCreate" in reasons(store)

    clock.at = C0 + timedelta(seconds=50)  # the same minute again: no second Job
    sync("tick")
    assert len(jobs(store)) == 1
    clock.at = C0 + timedelta(minutes=1, seconds=1)  # the next minute: another (concurrencyPolicy Allow)
    assert len(sync("tick")["status"]["active"]) == 2


@pytest.mark.unit
def test_forbid_skips_while_a_job_runs_and_replace_replaces_it(env: Any) -> None:
    store, clock, sync = env
    make_cronjob(store, "forbid", concurrencyPolicy="Forbid")
    make_cronjob(store, "replace", concurrencyPolicy="Replace")
    make_cronjob(store, "allow")
    for minute in (1, 2):
        clock.at = C0 + timedelta(minutes=minute, seconds=1)
        for name in ("forbid", "replace", "allow"):
            sync(name)
    names = [j["metadata"]["name"] for j in jobs(store)]
    first, second = minutes(C0 + timedelta(minutes=1)), minutes(C0 + timedelta(minutes=2))
    assert names == sorted([f"allow-{first}", f"allow-{second}", f"forbid-{first}", f"replace-{second}"])
    assert len(store.get(CRONJOBS, "ns", "allow")["status"]["active"]) == 2
    assert [r["name"] for r in store.get(CRONJOBS, "ns", "replace")["status"]["active"]] == [f"replace-{second}"]
    assert "JobAlreadyActive" in reasons(store) and "SuccessfulDelete" in reasons(store)
    assert store.get(CRONJOBS, "ns", "forbid")["status"]["lastScheduleTime"] == stamp(C0 + timedelta(minutes=1))


@pytest.mark.unit
def test_suspend_and_the_starting_deadline_hold_back_jobs(env: Any) -> None:
    store, clock, sync = env
    make_cronjob(store, "paused", suspend=True)
    make_cronjob(store, "late", startingDeadlineSeconds=10)
    clock.at = C0 + timedelta(minutes=1, seconds=30)  # 30 s after the activation: past the 10 s deadline
    sync("paused")
    sync("late")
    assert jobs(store) == []
    clock.at = C0 + timedelta(minutes=2, seconds=5)  # within the deadline of the next one
    sync("late")
    assert [j["metadata"]["name"] for j in jobs(store)] == [f"late-{minutes(C0 + timedelta(minutes=2))}"]


@pytest.mark.unit
def test_finished_jobs_leave_active_and_history_limits_prune_them(env: Any) -> None:
    store, clock, sync = env
    make_cronjob(store, successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    made = []
    for minute in (1, 2, 3):
        clock.at = C0 + timedelta(minutes=minute, seconds=1)
        sync("tick")
        made.append(jobs(store)[-1])
    finish(store, made[0], "Complete", C0 + timedelta(minutes=3, seconds=10))
    finish(store, made[1], "Complete", C0 + timedelta(minutes=3, seconds=20))
    finish(store, made[2], "Failed", C0 + timedelta(minutes=3, seconds=30))
    clock.at = C0 + timedelta(minutes=3, seconds=40)
    sync("tick")
    cj = sync("tick")  # the second sync sees them as finished outside `active`: lastSuccessfulTime
    assert "active" not in cj["status"]
    assert cj["status"]["lastSuccessfulTime"] == stamp(C0 + timedelta(minutes=3, seconds=20))
    # successful history 1: the older success goes; failed history 0: the failure goes
    assert [j["metadata"]["name"] for j in jobs(store)] == [made[1]["metadata"]["name"]]
    assert "SawCompletedJob" in reasons(store)


@pytest.mark.unit
def test_time_zone_sets_the_schedule_and_the_annotation(env: Any) -> None:
    store, clock, sync = env
    make_cronjob(store, "berlin", schedule="30 11 * * *", timeZone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    today = datetime.now(berlin).date()
    due = datetime.combine(today, dt_time(11, 30), berlin)
    if due <= datetime.now(UTC) + timedelta(minutes=2):
        due = datetime.combine(today + timedelta(days=1), dt_time(11, 30), berlin)  # the first 11:30 after creation
    clock.at = due - timedelta(minutes=1)  # 11:29 in Berlin: not yet, whatever the UTC hour
    sync("berlin")
    assert jobs(store) == []
    clock.at = due + timedelta(seconds=1)
    sync("berlin")
    [job] = jobs(store)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == due.isoformat()  # e.g. ...T11:30:00+01:00
    assert job["metadata"]["name"] == f"berlin-{minutes(due)}"


@pytest.mark.unit
def test_a_job_made_by_hand_for_the_cronjob_is_reported_not_adopted(env: Any) -> None:
    store, clock, sync = env
    cj = make_cronjob(store, suspend=True)
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": cj["metadata"]["uid"], "controller": True}
    manual = {
        "metadata": {"name": "tick-manual", "namespace": "ns", "ownerReferences": [owner]},
        "spec": cj["spec"]["jobTemplate"]["spec"],
    }
    apply_defaults(JOBS, manual)
    registry.prepare_for_create(JOBS, manual, store)
    store.create(JOBS, manual)
    assert "active" not in sync("tick")["status"]
    assert "UnexpectedJob" in reasons(store)


@pytest.mark.unit
def test_the_job_controller_runs_the_cronjobs_job(env: Any, loop: asyncio.AbstractEventLoop) -> None:
    """The Job is an ordinary Job: the Job controller makes its pod (its template's labels, the job-name label)."""
    store, clock, sync = env
    make_cronjob(store)
    clock.at = C0 + timedelta(minutes=1, seconds=1)
    sync("tick")
    [job] = jobs(store)

    async def once() -> None:
        JobController(store).sync(("ns", job["metadata"]["name"]))

    loop.run_until_complete(once())
    [pod] = [p for p in store.list(registry.PODS, "ns")]
    assert pod["metadata"]["labels"]["job-name"] == job["metadata"]["name"]


# ----- the API, kubectl and the kubernetes client -----


def cronjob_body(name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "*/5 * * * *",
            **spec,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}],
                        }
                    }
                }
            },
        },
    }


def test_kubectl_create_cronjob_get_and_create_job_from_it(cluster: ClusterProcess, namespace: str) -> None:
    kc = cluster.kubeconfig
    kubectl(kc, "-n", namespace, "create", "cronjob", "nightly", "--image=busybox:1.36", "--schedule=0 3 * * *", "--", "true")
    cj = json.loads(kubectl(kc, "-n", namespace, "get", "cronjob", "nightly", "-o", "json").stdout)
    spec = cj["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"], spec["suspend"]) == ("0 3 * * *", "Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "OnFailure" and pod_spec["terminationGracePeriodSeconds"] == 30

    table = kubectl(kc, "-n", namespace, "get", "cronjobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert table[1].split()[:6] == ["nightly", "0", "3", "*", "*", "*"]
    assert table[1].split()[6:10] == ["<none>", "False", "0", "<none>"]
    wide = kubectl(kc, "-n", namespace, "get", "cj", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and "busybox:1.36" in wide[1]

    kubectl(kc, "-n", namespace, "create", "job", "by-hand", "--from=cronjob/nightly")
    job = json.loads(kubectl(kc, "-n", namespace, "get", "job", "by-hand", "-o", "json").stdout)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "nightly", cj["metadata"]["uid"])

    described = kubectl(kc, "-n", namespace, "describe", "cronjob", "nightly").stdout
    assert "Schedule:" in described and "0 3 * * *" in described and "Concurrency Policy:" in described

    kubectl(kc, "-n", namespace, "patch", "cronjob", "nightly", "-p", '{"spec":{"suspend":true}}')
    assert kubectl(kc, "-n", namespace, "get", "cronjob", "nightly").stdout.splitlines()[1].split()[7] == "True"
    assert "cronjobs" in kubectl(kc, "api-resources", "--api-group=batch").stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"schedule": "61 * * * *"},
            'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
        ),
        ({"schedule": ""}, "spec.schedule: Required value"),
        (
            {"schedule": "TZ=UTC * * * * *"},
            'spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead',
        ),
        ({"timeZone": "Mars/Olympus"}, 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
        (
            {"concurrencyPolicy": "Sometimes"},
            'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
        ),
        ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"),
        (
            {"successfulJobsHistoryLimit": -2},
            "spec.successfulJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
        ),
    ],
)
def test_invalid_cronjobs_are_refused_as_kubernetes_refuses_them(
    api: client.ApiClient, namespace: str, spec: Obj, message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        client.BatchV1Api(api).create_namespaced_cron_job(namespace, cronjob_body("bad", **spec))
    assert caught.value.status == 422
    body = json.loads(caught.value.body)
    assert body["reason"] == "Invalid" and message in body["message"], body["message"]
    assert body["message"].startswith('CronJob.batch "bad" is invalid: ')


def test_a_long_name_and_a_restart_policy_of_always_are_refused(api: client.ApiClient, namespace: str) -> None:
    body = cronjob_body("n" * 53)
    body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as caught:
        client.BatchV1Api(api).create_namespaced_cron_job(namespace, body)
    message = json.loads(caught.value.body)["message"]
    assert "metadata.name: Invalid value:" in message and "must be no more than 52 characters" in message
    assert 'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always"' in message


def test_the_controller_schedules_a_job_every_minute(api: client.ApiClient, namespace: str) -> None:
    """The one real-clock test: `* * * * *` makes its first Job within a minute, with the name, annotation,
    owner and status Kubernetes gives it."""
    batch = client.BatchV1Api(api)
    created = batch.create_namespaced_cron_job(namespace, cronjob_body("minutely", schedule="* * * * *"))
    started = time.time()

    def scheduled() -> client.V1CronJob | None:
        cj = batch.read_namespaced_cron_job("minutely", namespace)
        return cj if cj.status and cj.status.active else None

    cj = poll_until(scheduled, timeout=75, what="the CronJob's first Job")
    assert time.time() - started < 75
    [ref] = cj.status.active
    job = batch.read_namespaced_job(ref.name, namespace)
    minute = int(cj.status.last_schedule_time.timestamp()) // 60
    assert job.metadata.name == f"minutely-{minute}"
    assert job.metadata.annotations[SCHEDULED_TIMESTAMP] == cj.status.last_schedule_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    [owner] = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("CronJob", "minutely", created.metadata.uid, True)
