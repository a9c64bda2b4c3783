"""What the end-to-end tests share: the stack's addresses, an app's names and configs, CLI runs, histories.

`E2eApp` is one isolated app (see conftest.py): `config(version, command=...,
rollout=...)` writes the shipped config.toml renamed to it, `cli(...)` runs the
real `pipeline` console script with `PIPELINE_CONFIG` set to one of those, and
`Run.expect(code)` checks the exit code, printing the output (and pod logs)
when it differs. `activity_spans` reads what a deployment did, and when, from
its Temporal history; `readable_text` decodes a history for secret scans.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory

from bootstrap.process import stop_child
from pipeline import kube
from pipeline.config import to_toml
from pipeline.contract import STATUS_QUERY
from pipeline.models import DeploymentStatus
from pipeline.verify import partition_pollers
from tests.helpers import REPO_ROOT, eventually, temporal_cli_path
from tests.helpers.histories import failed_workflow_tasks as failed_workflow_tasks

TEMPORAL_ADDRESS = "127.0.0.1:7233"
TEMPORAL_NAMESPACE = "default"
UI_URL = "http://127.0.0.1:8233"
REGISTRY = "127.0.0.1:5000"
KUBECONFIG = REPO_ROOT / ".stack" / "cluster" / "kubeconfig"
SHIPPED_CONFIG = REPO_ROOT / "config.toml"
PIPELINE = str(Path(sys.executable).parent / "pipeline")
# Set in the environment of every pipeline process: no history may ever contain it.
CANARY_SECRET = "e2e-canary-" + uuid.uuid4().hex
# The CLI's exit codes (pipeline/cli.py).
EXIT_VERIFIED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ROLLED_BACK, EXIT_CANCELED, EXIT_TERMINATED = 0, 1, 2, 3, 4, 5
# Replicas of every e2e app (the shipped config's).
REPLICAS = 2

_WEB_UI = re.compile(r"^Web UI: (\S+)$", re.MULTILINE)


# ----- the stack -----


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


async def pollers_of(client: Client, task_queue: str, queue_type: str = "workflow") -> list[Any]:
    """Temporal's PollerInfo of one queue type, over every partition (see pipeline/verify.py)."""
    return await partition_pollers(client, namespace=TEMPORAL_NAMESPACE, task_queue=task_queue, queue_type=queue_type)


async def start_pipeline_worker(app: E2eApp, config: Path, client: Client) -> subprocess.Popen[bytes]:
    """`app`'s own `pipeline worker` subprocess with `config`, once it polls its pipeline task queue (else it is stopped)."""
    with app.worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [PIPELINE, "worker"], env=app.env(config), cwd=app.directory, stdout=log, stderr=subprocess.STDOUT
        )

    async def polling() -> None:
        assert worker.poll() is None, f"`pipeline worker` exited {worker.returncode}:\n{app.worker_log.read_text()}"
        assert await pollers_of(client, app.pipeline_queue), "the pipeline worker does not poll yet"

    try:
        await eventually(polling, timeout=30, what=f"`pipeline worker` polling {app.pipeline_queue!r}")
    except BaseException:
        stop_child(worker, grace=30)
        raise
    return worker


# ----- versions that misbehave -----

# Starts, never serves /readyz: a rollout of it stalls with every old pod still up (maxUnavailable 0).
# PID 1 gets no default SIGTERM action, so it exits on SIGTERM explicitly, as a real worker does,
# and a rollback need not wait out its grace period.
NEVER_READY = [
    "python",
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(3600)",
]


def rolling_out(
    handle: WorkflowHandle[Any, Any], app: E2eApp, *, command: Sequence[str], after_run: str
) -> Callable[[], Awaitable[None]]:
    """A check for `eventually`: a deployment newer than run `after_run` is at its rollout step with a pod of `command`."""

    async def check() -> None:
        description = await handle.describe()
        assert description.run_id != after_run and description.status == WorkflowExecutionStatus.RUNNING
        status = await handle.query(STATUS_QUERY, result_type=DeploymentStatus)
        assert status.step == "rollout", f"step {status.step}"
        commands = [p["spec"]["containers"][0].get("command") for p in app.raw_pods()]
        assert list(command) in commands, "no pod of the new version yet"

    return check


async def temporal(*args: str, timeout: float = 60) -> str:
    """Run Temporal's own CLI (`temporal ARGS --address <the stack's>`), as a person would; its stdout, or fail."""
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(),
        *args,
        "--address",
        TEMPORAL_ADDRESS,
        "--namespace",
        TEMPORAL_NAMESPACE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, f"`temporal {' '.join(args)}` exited {process.returncode}:\n{out.decode()}{err.decode()}"
    return out.decode()


# ----- one CLI run -----


@dataclass(frozen=True)
class Run:
    """A finished `pipeline ...` process."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def web_ui_url(self) -> str:
        urls = _WEB_UI.findall(self.stdout)
        assert urls, f"`pipeline {' '.join(self.args)}` printed no `Web UI: ` line:\n{self.output}"
        return str(urls[-1])

    @property
    def run_id(self) -> str:
        """The workflow run id, from the Web UI URL (.../workflows/<id>/<run id>/history)."""
        parts = self.web_ui_url.rstrip("/").split("/")
        return parts[-2] if parts[-1] == "history" else parts[-1]

    def expect(self, code: int, *, diagnose: Callable[[], str] | None = None) -> Run:
        """Assert the exit code, showing the whole output (and `diagnose()`, e.g. pod logs) when it differs."""
        if self.code != code and "PyGILState_Release" in self.stderr:
            pytest.fail(
                f"`pipeline {' '.join(self.args)}` crashed in interpreter shutdown (exit {self.code}, "
                "temporalio/sdk-python#300: the Temporal client's threads outlive asyncio.run); "
                f"the CLI must flush and os._exit(code) after its command:\n{self.output[-3000:]}"
            )
        if self.code != code:
            extra = f"\n--- diagnosis ---\n{diagnose()}" if diagnose else ""
            pytest.fail(f"`pipeline {' '.join(self.args)}` exited {self.code}, expected {code}:\n{self.output}{extra}")
        return self


# ----- one app per module -----


@dataclass
class E2eApp:
    """An app of its own: names, a config per version, and the CLI run against it."""

    name: str
    directory: Path
    worker_log: Path
    runs: list[Run] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None  # its `pipeline worker` subprocess (e2e_app), for tests that kill it

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def task_queue(self) -> str:
        return f"{self.name}-q"

    @property
    def pipeline_queue(self) -> str:
        return f"{self.name}-deployments"

    @property
    def repository(self) -> str:
        return f"{REGISTRY}/{self.name}"

    @property
    def workflow_id(self) -> str:
        return f"deploy-local-{self.name}"

    def config(
        self,
        version: str = "v1",
        *,
        command: Sequence[str] = (),
        replicas: int = 2,
        rollout: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write (once per variant) the shipped config.toml, renamed to this app; return its path.

        `version` becomes the VERSION build arg, which changes the image's label and so its digest.
        """
        data = tomllib.loads(SHIPPED_CONFIG.read_text())
        shipped_app = data["apps"][data["pipeline"]["default_app"]]
        app = dict(shipped_app)
        app.update(
            task_queue=self.task_queue,
            replicas=replicas,
            build_context=str(REPO_ROOT),
            dockerfile="Dockerfile",
            command=list(command),
            build_args={**shipped_app.get("build_args", {}), "VERSION": version},
        )
        if rollout:
            app["rollout"] = dict(rollout)
        data["apps"] = {self.name: app}
        data["pipeline"].update(task_queue=self.pipeline_queue, default_app=self.name)
        data["kubernetes"].update(namespace=self.namespace, kubeconfig=str(KUBECONFIG))
        data["temporal"].update(address=TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE, ui_url=UI_URL)
        text = to_toml(data)
        path = self.directory / f"config-{version}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.toml"
        path.write_text(text)
        return path

    def env(self, config: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "PIPELINE__", "TEMPORAL_", "K8S_"))}
        # The canary is a secret in the CLI's environment that must never leak. Not in TEMPORAL_API_KEY:
        # the pipeline reads that variable as envconfig does, and a key turns TLS on (the stack speaks plain text).
        env.update(PIPELINE_CONFIG=str(config), E2E_CANARY_SECRET=CANARY_SECRET)
        env.pop("KUBECONFIG", None)
        return env

    async def start(self, *args: str, config: Path) -> asyncio.subprocess.Process:
        """Start `pipeline ARGS` in the background (finish it with `finish`)."""
        return await asyncio.create_subprocess_exec(
            PIPELINE,
            *args,
            env=self.env(config),
            cwd=self.directory,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self, process: asyncio.subprocess.Process, args: Sequence[str], *, started: float, timeout: float) -> Run:
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
            pytest.fail(f"`pipeline {' '.join(args)}` still running after {timeout:.0f}s:\n{(out + err).decode()}")
        run = Run(tuple(args), int(process.returncode or 0), out.decode(), err.decode(), time.monotonic() - started)
        self.runs.append(run)
        print(f"$ pipeline {' '.join(args)}  # exit {run.code} in {run.seconds:.1f}s\n{run.output}")
        return run

    async def cli(self, *args: str, config: Path, timeout: float = 180) -> Run:
        """Run `pipeline ARGS` to the end with this config; the exit code is the caller's to check."""
        started = time.monotonic()
        process = await self.start(*args, config=config)
        return await self.finish(process, args, started=started, timeout=timeout)

    def kube_client(self) -> kube.KubeClient:
        return kube.connect(kubeconfig=str(KUBECONFIG))

    def pods(self) -> list[kube.PodInfo]:
        with self.kube_client() as kc:
            return kube.list_pods(kc, namespace=self.namespace, selector={"app.kubernetes.io/name": self.name})

    def raw_pods(self, app: str = "") -> list[dict[str, Any]]:
        """The pods of this app (or of another `app` in its namespace) as the API returns them."""
        app = app or self.name
        with self.kube_client() as kc:
            raw = kc.request(
                method="GET",
                path=f"/api/v1/namespaces/{self.namespace}/pods",
                what=f"pods of {app}",
                query=[("labelSelector", f"app.kubernetes.io/name={app}")],
            )
        return list(raw.get("items") or [])

    def diagnose(self) -> str:
        """Each pod's state and its containers' last log lines (of the previous run too), for failure messages."""
        lines: list[str] = []
        try:
            with self.kube_client() as kc:
                for pod in kube.list_pods(kc, namespace=self.namespace, selector={"app.kubernetes.io/name": self.name}):
                    states = ", ".join(f"{c.state} {c.reason} restarts={c.restart_count}" for c in pod.containers)
                    lines.append(f"pod {pod.name} {pod.phase} ip={pod.pod_ip} terminating={pod.terminating}: {states}")
                    for previous in (True, False):
                        with contextlib.suppress(kube.KubeError):
                            log = kube.pod_logs(kc, namespace=self.namespace, name=pod.name, previous=previous, tail_lines=15)
                            lines.extend(f"    {'prev' if previous else 'now '}| {line}" for line in log.splitlines())
        except kube.KubeError as exc:
            lines.append(f"(could not read the pods: {exc})")
        return "\n".join(lines)

    def deployment(self) -> dict[str, Any]:
        with self.kube_client() as kc:
            found = kube.get_deployment(kc, namespace=self.namespace, name=self.name)
        assert found is not None, f"Deployment {self.namespace}/{self.name} does not exist"
        return found


# ----- versions -----


_DEPLOYED = re.compile(r"^Deployed (\S+@(sha256:[0-9a-f]{64})): verified", re.MULTILINE)


@dataclass(frozen=True)
class Deployed:
    run: Run
    image: str  # repository@sha256:...
    build_id: str  # what the pods report to Temporal: the digest


def deployed(run: Run, app: E2eApp) -> Deployed:
    run.expect(EXIT_VERIFIED, diagnose=app.diagnose)
    found = _DEPLOYED.search(run.stdout)
    assert found, f"no `Deployed <image>: verified` line:\n{run.output}"
    return Deployed(run, found.group(1), found.group(2))


async def history_of(client: Client, app: E2eApp, run: Run) -> WorkflowHistory:
    return await client.get_workflow_handle(app.workflow_id, run_id=run.run_id).fetch_history()


async def assert_polling(client: Client, app: E2eApp, version: Deployed) -> list[str]:
    """Every live pod runs `version` and Temporal lists it as a fresh poller of both queues with its build id."""
    pods = [p for p in app.raw_pods() if not p["metadata"].get("deletionTimestamp")]
    live = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in live}
    assert set(images.values()) == {version.image}, f"live pods run other images than {version.image}: {images}"
    assert len(images) == REPLICAS, f"expected {REPLICAS} live pods, found {sorted(images)}"
    for queue_type in ("workflow", "activity"):
        pollers = await pollers_of(client, app.task_queue, queue_type)
        by_pod = {p.identity.split("@", 1)[0]: p for p in pollers}
        for pod in images:
            assert pod in by_pod, f"pod {pod} is not a {queue_type} poller of {app.task_queue}: {sorted(by_pod)}"
            build_id = by_pod[pod].worker_version_capabilities.build_id
            assert build_id == version.build_id, f"pod {pod} polls with build {build_id}, not {version.build_id}"
        # Temporal keeps listing stopped pollers for a while: any other build's poller must be a pod that is gone.
        stale = [p.identity for p in pollers if p.worker_version_capabilities.build_id != version.build_id]
        assert not [i for i in stale if i.split("@", 1)[0] in images], f"a live pod polls with an old build: {stale}"
    return sorted(images)


# ----- histories -----


@dataclass(frozen=True)
class ActivitySpan:
    """One activity execution as the history records it."""

    activity: str  # activity type, e.g. "wait_for_rollout"
    summary: str  # its static summary, as the Web UI shows it
    scheduled: datetime
    closed: datetime | None
    outcome: str  # "completed", "failed", "canceled", "timed_out" or "" while running
    failure: str = ""
    cancel_requested: bool = False  # the workflow cancelled it (it may still have completed after)


def activity_spans(history: WorkflowHistory) -> list[ActivitySpan]:
    """The activities of a history in the order they were scheduled."""
    scheduled: dict[int, tuple[str, str, datetime]] = {}
    closed: dict[int, tuple[datetime, str, str]] = {}
    cancelled: set[int] = set()
    for event in history.events:
        when = event.event_time.ToDatetime(tzinfo=UTC)
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            summary = json.loads(event.user_metadata.summary.data or b'""') if event.user_metadata.HasField("summary") else ""
            scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, summary, when)
        elif kind == "activity_task_cancel_requested_event_attributes":
            cancelled.add(event.activity_task_cancel_requested_event_attributes.scheduled_event_id)
        elif kind in _CLOSE_EVENTS:
            attrs = getattr(event, kind)
            failure = ""
            if kind == "activity_task_failed_event_attributes":
                failure = attrs.failure.cause.message if attrs.failure.HasField("cause") else attrs.failure.message
            closed[attrs.scheduled_event_id] = (when, _CLOSE_EVENTS[kind], failure)
    spans = []
    for event_id, (activity, summary, when) in sorted(scheduled.items()):
        end, outcome, failure = closed.get(event_id, (None, "", ""))
        spans.append(ActivitySpan(activity, summary, when, end, outcome, failure, event_id in cancelled))
    return spans


_CLOSE_EVENTS = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_canceled_event_attributes": "canceled",
    "activity_task_timed_out_event_attributes": "timed_out",
}


def seconds_between(start: datetime, end: datetime | None) -> float:
    assert end is not None, "the span has not ended"
    return (end - start).total_seconds()


def readable_text(history: WorkflowHistory) -> str:
    """The history as JSON, with every payload's bytes decoded, so a plain search sees what it holds."""
    raw = history.to_json()
    decoded: list[str] = [raw]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    with contextlib.suppress(ValueError, UnicodeDecodeError):
                        decoded.append(base64.b64decode(value, validate=True).decode())
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(raw))
    return "\n".join(decoded)


# ----- configs with the pipeline's own worker as an app (self-deploy, Azure bootstrap) -----


def self_deploy_apps_toml(
    *,
    sample_app: str,
    sample_queue: str,
    pipeline_app: str,
    version: str = "",
    command: Sequence[str] = (),
    sample_grace_seconds: int = 10,
    pipeline_grace_seconds: int = 60,
) -> str:
    """The `[apps.*]` tables of a sample worker and a `role = "pipeline"` worker, both built from this checkout.

    `version` goes into the pipeline image's VERSION build arg (a new digest per version);
    `command` replaces its CMD (e.g. a broken version).
    """
    cmd = "[" + ", ".join(f'"{part}"' for part in command) + "]"
    version_arg = f', VERSION = "{version}"' if version else ""
    return f"""
[apps.{sample_app}]
task_queue = "{sample_queue}"
replicas = 1
build_context = "{REPO_ROOT}"
build_target = "sample-worker"
build_args = {{ BASE_IMAGE = "pipeline-base:bookworm" }}
termination_grace_period_seconds = {sample_grace_seconds}
health_port = 8080
readiness_path = ""
graceful_shutdown = true
[apps.{pipeline_app}]
role = "pipeline"
replicas = 1
build_context = "{REPO_ROOT}"
build_target = "pipeline-worker"
build_args = {{ BASE_IMAGE = "pipeline-base:bookworm"{version_arg} }}
command = {cmd}
termination_grace_period_seconds = {pipeline_grace_seconds}
health_port = 8080
readiness_path = ""
graceful_shutdown = true
[apps.{pipeline_app}.resources]
cpu_limit = "1"
memory_request = "256Mi"
memory_limit = "768Mi"
[apps.{pipeline_app}.rollout]
max_unavailable = 0
progress_deadline_seconds = 180
verification_timeout_seconds = 90
"""


async def add_user_app(
    e2e_app: E2eApp, fixture: Path, *, suffix: str, task_queue: str, replicas: int, extra: str = ""
) -> tuple[str, Path, Path]:
    """A worker directory of the user's own (a copy of `fixture`) added to the e2e app's config by `pipeline app add`,
    with what `app add` leaves to the user: the base image argument (no network here), a short grace period (the
    fixtures do not handle SIGTERM, as the samples do not), and `extra` lines. (name, source, config)."""
    import shutil

    import docker

    from tests.helpers.images import sdk_base_image

    name = f"{e2e_app.name}-{suffix}"[:40]
    source = e2e_app.directory / fixture.name
    shutil.copytree(fixture, source)
    config = e2e_app.config()
    client = docker.from_env()
    try:
        base = sdk_base_image(client)
    finally:
        client.close()
    run = await e2e_app.cli("app", "add", name, "--context", str(source), "--replicas", str(replicas), config=config)
    assert run.code == 0, run.output
    assert f'task_queue = "{task_queue}"' in run.stdout and "worker.py" in run.stdout, run.output
    with config.open("a") as out:
        out.write(f'build_args = {{ BASE_IMAGE = "{base}" }}\ntermination_grace_period_seconds = 5\n{extra}')
    return name, source, config
