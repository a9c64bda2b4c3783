"""`pipeline doctor`'s judgments and `pipeline.diagnose.where_seen`'s matching, without any service.

`where_seen` is given a stand-in for the client's workflow service that answers
ListNamespaces, ListWorkers and DescribeTaskQueue (per partition) from tables,
and fails or hangs where a test says; the doctor's lines for a bad config are
checked through the real CLI (it connects to nothing then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.namespace.v1 import NamespaceInfo
from temporalio.api.taskqueue.v1 import PollerInfo
from temporalio.api.worker.v1 import WorkerHeartbeat, WorkerHostInfo, WorkerInfo, WorkerListInfo
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceResponse,
    DescribeTaskQueueRequest,
    DescribeTaskQueueResponse,
    ListNamespacesRequest,
    ListNamespacesResponse,
    ListWorkersRequest,
    ListWorkersResponse,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pipeline import diagnose, doctor
from pipeline.diagnose import Sighting, format_sightings, where_seen
from pipeline.doctor import FAIL, NAMES, OK, SKIP, Check, crash_of, format_check, live_pollers, pollers_of, short
from pipeline.errors import ConfigError
from pipeline.kube import ContainerState, KubeClient, KubeForbidden, KubeNotFound, PodInfo
from pipeline.models import Poller
from tests.helpers.cli import run
from tests.helpers.config import APP, shipped_config, write_config

pytestmark = pytest.mark.unit

POD = "sample-worker-5dc9d99b75-p57mf"
DIGEST = "sha256:" + "81ad0e1e" * 8
TYPES = {TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW: "workflow", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY: "activity"}


class FakeService:
    """ListNamespaces, ListWorkers and DescribeTaskQueue answered from tables.

    `workers`: namespace -> pages of (identity, task queue, host name); `pollers`: (namespace, partition
    name, "workflow"/"activity") -> identities; `failing`: namespace -> the RPC status its ListWorkers fails
    with; `hanging`: namespaces whose ListWorkers never answers.
    """

    def __init__(
        self,
        *,
        namespaces: Sequence[str] = ("default",),
        workers: Mapping[str, Sequence[Sequence[tuple[str, str, str]]]] | None = None,
        pollers: Mapping[tuple[str, str, str], Sequence[str]] | None = None,
        failing: Mapping[str, RPCStatusCode] | None = None,
        hanging: Sequence[str] = (),
    ) -> None:
        self.namespaces = list(namespaces)
        self.workers = workers or {}
        self.pollers = pollers or {}
        self.failing = failing or {}
        self.hanging = set(hanging)
        self.asked_workers: list[str] = []

    async def list_namespaces(self, req: ListNamespacesRequest, **_: Any) -> ListNamespacesResponse:
        assert req.page_size == diagnose.LISTED_NAMESPACES
        return ListNamespacesResponse(
            namespaces=[DescribeNamespaceResponse(namespace_info=NamespaceInfo(name=n)) for n in self.namespaces]
        )

    async def list_workers(self, req: ListWorkersRequest, **_: Any) -> ListWorkersResponse:
        self.asked_workers.append(req.namespace)
        if req.namespace in self.hanging:
            await asyncio.sleep(3600)
        if req.namespace in self.failing:
            raise RPCError("no", self.failing[req.namespace], b"")
        pages = self.workers.get(req.namespace, [[]])
        index = int(req.next_page_token or b"0")
        beats = [
            WorkerInfo(
                worker_heartbeat=WorkerHeartbeat(
                    worker_identity=identity, task_queue=queue, host_info=WorkerHostInfo(host_name=host)
                )
            )
            for identity, queue, host in pages[index]
        ]
        listed = [
            WorkerListInfo(worker_identity=identity, task_queue=queue, host_name=host) for identity, queue, host in pages[index]
        ]
        token = str(index + 1).encode() if index + 1 < len(pages) else b""
        return ListWorkersResponse(workers_info=beats, workers=listed, next_page_token=token)

    async def describe_task_queue(self, req: DescribeTaskQueueRequest, **_: Any) -> DescribeTaskQueueResponse:
        identities = self.pollers.get((req.namespace, req.task_queue.name, TYPES[req.task_queue_type]), [])
        seen = Timestamp()
        seen.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
        return DescribeTaskQueueResponse(pollers=[PollerInfo(identity=i, last_access_time=seen) for i in identities])


def client_of(service: FakeService) -> Client:
    class Stand:
        workflow_service = service

    return cast(Client, Stand())


# ----- where_seen -----


async def test_where_seen_finds_the_pods_workers_by_identity_and_host_name_deduplicated_and_sorted() -> None:
    service = FakeService(
        namespaces=["default", "other"],
        workers={
            "default": [
                [(f"{POD}@{DIGEST}", "elsewhere", "node-1"), ("another-pod@x", "elsewhere", "node-1")],
                [("42@node-1", "zz-by-host", POD)],  # the SDK's default identity; the heartbeat names the host
            ],
            "other": [[(f"{POD}@{DIGEST}", "sample-worker", "node-1")]],
        },
        pollers={
            ("default", "sample-worker", "workflow"): [f"{POD}@{DIGEST}"],
            ("default", "/_sys/sample-worker/3", "activity"): [f"7@{POD}", "stranger@x"],
            ("default", "/_sys/sample-worker/4", "activity"): [f"{POD}@beyond-the-partitions"],
        },
    )
    found = await where_seen(client_of(service), pods=[POD], namespaces=["default"], task_queues=["sample-worker"])
    assert found == [
        Sighting("default", "elsewhere", "", f"{POD}@{DIGEST}", "workers"),
        Sighting("default", "sample-worker", "activity", f"7@{POD}", "pollers"),
        Sighting("default", "sample-worker", "workflow", f"{POD}@{DIGEST}", "pollers"),
        Sighting("default", "zz-by-host", "", "42@node-1", "workers"),
        Sighting("other", "sample-worker", "", f"{POD}@{DIGEST}", "workers"),
    ]
    assert sorted(service.asked_workers) == ["default", "default", "other"]  # two pages of default


async def test_where_seen_skips_namespaces_that_refuse_list_workers() -> None:
    service = FakeService(
        namespaces=["default", "old", "locked"],
        workers={"default": [[(f"{POD}@b", "elsewhere", "")]]},
        failing={"old": RPCStatusCode.UNIMPLEMENTED, "locked": RPCStatusCode.PERMISSION_DENIED},
    )
    found = await where_seen(client_of(service), pods=[POD], namespaces=["given"])
    assert found == [Sighting("default", "elsewhere", "", f"{POD}@b", "workers")]
    assert sorted(service.asked_workers) == ["default", "given", "locked", "old"]


async def test_where_seen_returns_what_it_found_when_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose, "WHERE_SEEN_TIMEOUT", 0.3)
    service = FakeService(
        namespaces=["default", "slow"], workers={"default": [[(f"{POD}@b", "elsewhere", "")]]}, hanging=["slow"]
    )
    started = asyncio.get_running_loop().time()
    found = await where_seen(client_of(service), pods=[POD])
    assert asyncio.get_running_loop().time() - started < 2
    assert found == [Sighting("default", "elsewhere", "", f"{POD}@b", "workers")]


async def test_where_seen_without_pods_asks_nothing() -> None:
    service = FakeService()
    assert await where_seen(client_of(service), pods=[], namespaces=["default"], task_queues=["q"]) == []
    assert service.asked_workers == []


def test_an_identity_names_its_pod_exactly() -> None:
    assert diagnose.names_pod(f"{POD}@{DIGEST}", [POD])
    assert diagnose.names_pod(f"1@{POD}", [POD])
    assert diagnose.names_pod("1@node", [POD], host_name=POD)
    assert not diagnose.names_pod(f"{POD}x@{DIGEST}", [POD])
    assert not diagnose.names_pod(f"{POD[:-1]}@{DIGEST}", [POD])
    assert not diagnose.names_pod("1@node", [POD], host_name="node")


# ----- format_sightings -----


def test_format_sightings() -> None:
    assert format_sightings([]) == "seen nowhere Temporal lists workers"
    both = [
        Sighting("default", "x", "activity", "p@b", "pollers"),
        Sighting("default", "x", "workflow", "p@b", "pollers"),
        Sighting("default", "x", "", "p@b", "workers"),
    ]
    assert format_sightings(both) == "seen instead on task queue 'x' (namespace default, workflow+activity)"
    assert format_sightings([Sighting("prod", "y", "", "p@b", "workers")]) == "seen instead on task queue 'y' (namespace prod)"
    assert format_sightings([*both, Sighting("default", "a", "workflow", "p@b", "pollers")]) == (
        "seen instead on task queue 'a' (namespace default, workflow); task queue 'x' (namespace default, workflow+activity)"
    )


# ----- the doctor's judgments -----


def pod(*containers: ContainerState, ready: bool = True, start: str = "2026-01-01T00:00:10Z") -> PodInfo:
    return PodInfo(
        name=POD, phase="Running", ready=ready, terminating=False, pod_template_hash="5dc9d99b75", start_time=start,
        containers=list(containers),
    )  # fmt: skip


def test_crashing_is_a_crash_loop_an_error_exit_or_a_restart_after_one() -> None:
    assert crash_of(pod(ContainerState("worker", "waiting", "CrashLoopBackOff", restart_count=3, last_exit_code=3))) == (
        "container worker CrashLoopBackOff, 3 restarts, last exit 3"
    )
    assert crash_of(pod(ContainerState("worker", "terminated", "Error", exit_code=3))) == "container worker exited 3 (Error)"
    assert crash_of(pod(ContainerState("worker", "running", restart_count=1, last_exit_code=137))) == (
        "container worker restarted 1 time, last exit 137"
    )
    assert crash_of(pod(ContainerState("worker", "waiting", "ImagePullBackOff", message="not found"))) == (
        "container worker cannot start: ImagePullBackOff: not found"
    )


def test_not_crashing_a_clean_restart_or_a_pod_that_is_only_not_ready() -> None:
    assert crash_of(pod(ContainerState("worker", "running", ready=True, restart_count=2, last_exit_code=0))) == ""
    assert crash_of(pod(ContainerState("worker", "running", ready=True), ready=False)) == ""  # e.g. ReadinessGatesNotReady
    assert crash_of(pod(ContainerState("worker", "waiting", "ContainerCreating"))) == ""


def poller(identity: str, at: str, queue_type: str = "workflow") -> Poller:
    return Poller(identity=identity, task_queue_type=queue_type, build_id=DIGEST, last_access_time=at)


def test_a_pod_polls_when_an_identity_names_it_after_it_started() -> None:
    pollers = [
        poller(f"{POD}@{DIGEST}", "2026-01-01T00:00:20Z"),
        poller(f"{POD}@old", "2026-01-01T00:00:01Z"),  # before the pod started (and beyond the clock skew)
        poller(f"{POD}-other@{DIGEST}", "2026-01-01T00:00:20Z"),
    ]
    assert [p.identity for p in pollers_of(pod(), pollers)] == [f"{POD}@{DIGEST}"]


def test_live_pollers_are_those_seen_within_the_window() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    recent = (now - timedelta(seconds=30)).replace(tzinfo=None).isoformat() + "Z"
    stale = (now - timedelta(minutes=4)).replace(tzinfo=None).isoformat() + "Z"
    assert [p.identity for p in live_pollers([poller("a@1", recent), poller("b@1", stale)], now=now)] == ["a@1"]


def test_format_check_lines() -> None:
    assert format_check(Check("pods", FAIL, "1 pod; crashing: p", fix="look", extra_lines=("p: why", "  | boom"))) == [
        "FAIL  pods             1 pod; crashing: p — fix: look",
        "      p: why",
        "        | boom",
    ]
    assert format_check(Check("tls/api key", OK, "no API key configured (TLS off)", fix="unused")) == [
        "ok    tls/api key      no API key configured (TLS off)"
    ]
    assert short(f"{POD}@{DIGEST}") == f"{POD}@sha256:81ad0e1e81ad…"


async def test_a_config_error_fails_the_first_check_and_skips_the_others() -> None:
    checks = await doctor.run_checks(ConfigError(["config.toml: a", "config.toml: b"]), None)
    assert [c.name for c in checks] == list(NAMES)
    assert (checks[0].status, checks[0].detail) == (FAIL, "config.toml: a; config.toml: b")
    assert {c.status for c in checks[1:]} == {SKIP}


def test_the_cli_with_a_bad_config_prints_one_fail_line_and_nine_skips(tmp_path: Path) -> None:
    write_config(tmp_path, (APP, "replicas", "0"))
    result = run(tmp_path, "doctor")
    assert (result.returncode, result.stderr) == (1, ""), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "FAIL  config           config.toml: [apps.sample-worker].replicas: must be an integer from 1 to 100, got 0"
        " — fix: correct the config file as said (`pipeline config` shows what the pipeline reads)"
    )
    assert lines[1:] == [f"skip  {name:<15}  the config is not valid" for name in NAMES[1:]]


def test_the_cli_with_an_unknown_app_fails_the_config_check(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = run(tmp_path, "doctor", "nope")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith('FAIL  config           config.toml: no app named "nope"; known apps: '), (
        result.stdout
    )
    assert OK not in {line[:4].strip() for line in result.stdout.splitlines()}


# ----- the cluster check's answers to a refusing or empty cluster (a stand-in for the API) -----


class RefusingKube(KubeClient):
    """Answers like an API server where the user may not `verb` `resource` (403) and `namespace` may be absent."""

    def __init__(self, *, refuse: tuple[str, str] = ("", ""), namespace_exists: bool = True) -> None:
        self.refuse = refuse
        self.namespace_exists = namespace_exists
        self.calls: list[tuple[str, str]] = []

    @property
    def host(self) -> str:
        return "https://cluster.test"

    def request(self, *, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        verb = {"PATCH": "patch", "GET": "list" if kwargs.get("query") else "get"}[method]
        resource = path.rstrip("/").split("/")[-2 if verb in ("patch", "get") else -1]
        if (verb, resource) == self.refuse:
            message = (
                f'{resource} is forbidden: User "doctor" cannot {verb} resource "{resource}" in the namespace "temporal-workers"'
            )
            raise KubeForbidden(f"{what}: 403 Forbidden: {message}; {KubeForbidden.hint}", status=403, reason="Forbidden")
        if (method, path) == ("GET", "/api/v1/namespaces/temporal-workers") and not self.namespace_exists:
            raise KubeNotFound(f"{what}: 404 NotFound: not found; {KubeNotFound.hint}", status=404, reason="NotFound")
        return {"items": []} if verb == "list" else dict(kwargs.get("body") or {})

    def close(self) -> None:
        pass


def cluster_check(kc: RefusingKube) -> Check:
    state = doctor._State(config=shipped_config(), app=shipped_config().app(None), kc=kc, kube_tried=True)
    return doctor._cluster_check(state)


def test_the_cluster_check_names_the_refused_verb_and_resource() -> None:
    check = cluster_check(RefusingKube(refuse=("patch", "deployments")))
    assert format_check(check) == [
        "FAIL  cluster          https://cluster.test: patch deployments (server-side apply of Deployment sample-worker, dry run) "
        'refused (403): Deployment temporal-workers/sample-worker: 403 Forbidden: deployments is forbidden: User "doctor" '
        'cannot patch resource "deployments" in the namespace "temporal-workers" — fix: grant the kubeconfig\'s user `patch` '
        "on deployments in namespace temporal-workers (a Role and RoleBinding; render.PIPELINE_RULES lists every verb the pipeline uses)"
    ]
    listing = cluster_check(RefusingKube(refuse=("list", "replicasets")))
    assert listing.status == FAIL and listing.detail.startswith("https://cluster.test: list replicasets refused (403): ")
    assert "`list` on replicasets in namespace temporal-workers" in listing.fix


def test_the_cluster_check_dry_runs_every_object_and_lists_what_the_pipeline_lists() -> None:
    kc = RefusingKube()
    check = cluster_check(kc)
    assert (check.status, check.detail) == (
        OK,
        "https://cluster.test: dry-run apply of 4 objects and list pods, deployments, replicasets allowed in temporal-workers",
    )
    assert [c for c in kc.calls if c[0] == "PATCH"] == [
        ("PATCH", "/api/v1/namespaces/temporal-workers"),
        ("PATCH", "/api/v1/namespaces/temporal-workers/serviceaccounts/sample-worker"),
        ("PATCH", "/api/v1/namespaces/temporal-workers/configmaps/sample-worker-temporal"),
        ("PATCH", "/apis/apps/v1/namespaces/temporal-workers/deployments/sample-worker"),
    ]


def test_a_missing_kubernetes_namespace_says_bootstrap_creates_it() -> None:
    check = cluster_check(RefusingKube(namespace_exists=False))
    assert format_check(check) == [
        "FAIL  cluster          https://cluster.test: namespace temporal-workers does not exist — fix: `pipeline bootstrap` "
        "creates it (with the pipeline worker; `pipeline deploy --app sample-worker` also would)"
    ]
