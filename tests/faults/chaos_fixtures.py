"""What the fault tests (worker kill, Temporal restart, API faults) share.

`FaultApp` is an `E2eApp` (tests/e2e/support.py) whose configs may point at
another Temporal server or another kubeconfig (the fault proxy's), and whose
`pipeline worker` subprocess the test owns: `start_worker()`, `kill_worker()`
(SIGKILL), `stop_worker()`. `worker_running(app, client)` starts its worker and
deletes its namespace after; `through_fault_proxy(app)` points its configs at a
`FaultProxy` (faultproxy.py) in front of the cluster API. `pending_activity`
reads which activity a running deployment waits on, from `describe()`.
Versions that misbehave on purpose: `slow_worker` (late ready, late stop),
`late_worker` (late ready, prompt stop), `slow_build_context` (a slow build).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import tempfile
import tomllib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bootstrap.process import stop_child
from pipeline import kube
from pipeline.config import to_toml
from pipeline.render import BUILD_ID_ANNOTATION
from tests.e2e.support import KUBECONFIG, PIPELINE, TEMPORAL_ADDRESS, E2eApp, pollers_of
from tests.faults.faultproxy import FaultProxy
from tests.helpers import eventually

PKI = KUBECONFIG.parent / "pki"


def slow_worker(*, start: float = 0, stop: float = 0) -> list[str]:
    """A sample-worker command whose pods become ready `start` s late and keep polling `stop` s after SIGTERM.

    A late start keeps the rollout wait busy; a late stop of the old version keeps the new
    version's verification waiting ("pods of the old version still running").
    """
    script = f"sleep {start}; python -m sample_worker.worker & child=$!; "
    script += f"trap 'sleep {stop}; kill $child' TERM; wait $child; wait $child"
    return ["sh", "-c", script]


def late_worker(ready_after: float) -> list[str]:
    """A sample-worker command that starts polling (and so gets ready) `ready_after` s late, and stops at once on SIGTERM.

    Unlike `slow_worker(start=...)`, whose shell only runs its TERM trap after the
    sleep, the wait here is interruptible: a pod deleted while it waits goes at once.
    """
    return ["sh", "-c", f"trap 'exit 0' TERM; sleep {ready_after} & wait $!; trap - TERM; exec python -m sample_worker.worker"]


def slow_build_context(directory: Path, base_image: str, *, seconds: int = 8) -> Path:
    """A build context (under `directory`) whose image is `base_image` plus a layer that takes `seconds` to build.

    The VERSION build arg labels the image before the slow layer, so every new version misses the build cache.
    """
    context = directory / f"slow-build-{seconds}s"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(
        f"FROM {base_image} AS sample-worker\nARG VERSION\nLABEL fault.version=$VERSION\n"
        f"RUN sleep {seconds} && echo $VERSION > /tmp/version\n"
    )
    return context


@dataclass
class FaultApp(E2eApp):
    temporal_address: str = TEMPORAL_ADDRESS
    kubeconfig: Path = KUBECONFIG
    worker: subprocess.Popen[bytes] | None = None
    worker_starts: int = 0

    def config(
        self,
        version: str = "v1",
        *,
        command: Sequence[str] = (),
        replicas: int = 2,
        rollout: Mapping[str, Any] | None = None,
        build_context: Path | None = None,
        graceful_shutdown: bool | None = None,
    ) -> Path:
        """As `E2eApp.config`, on this app's Temporal and kubeconfig; `build_context` replaces the repository's."""
        path = super().config(version, command=command, replicas=replicas, rollout=rollout)
        data = tomllib.loads(path.read_text())
        if build_context is not None:
            data["apps"][self.name].update(build_context=str(build_context), dockerfile="Dockerfile")
        if graceful_shutdown is not None:
            data["apps"][self.name]["graceful_shutdown"] = graceful_shutdown
        data["temporal"]["address"] = self.temporal_address
        data["kubernetes"]["kubeconfig"] = str(self.kubeconfig)
        path.write_text(to_toml(data))
        return path

    def start_worker(self) -> None:
        assert self.worker is None or self.worker.poll() is not None, "a pipeline worker already runs"
        self.worker_starts += 1
        with self.worker_log.open("ab") as log:
            log.write(f"\n----- pipeline worker start #{self.worker_starts} -----\n".encode())
            log.flush()
            env = self.env(self.config())
            env["POD_NAME"] = self.worker_identity  # tells this start's poller from the killed one's
            self.worker = subprocess.Popen(
                [PIPELINE, "worker"], env=env, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def worker_identity(self) -> str:
        return f"{self.name}-w{self.worker_starts}"

    async def wait_worker_polling(self, client: Client) -> None:
        async def polling() -> None:
            assert self.worker is not None and self.worker.poll() is None, f"`pipeline worker` exited:\n{self.log_tail()}"
            identities = [p.identity for p in await pollers_of(client, self.pipeline_queue)]
            assert any(i.startswith(f"{self.worker_identity}@") for i in identities), f"not polling yet: {identities}"

        await eventually(polling, timeout=30, what=f"`pipeline worker` polling {self.pipeline_queue!r}")

    def kill_worker(self) -> None:
        assert self.worker is not None and self.worker.poll() is None, "no pipeline worker to kill"
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_child(self.worker, grace=30)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.worker_log.read_text(errors="replace").splitlines()[-lines:])

    def real_kube_client(self) -> kube.KubeClient:
        """The cluster itself, never through a proxy (these calls block the event loop the proxy runs in)."""
        return kube.connect(kubeconfig=str(KUBECONFIG))

    def real_deployment(self) -> dict[str, Any]:
        with self.real_kube_client() as kc:
            found = kube.get_deployment(kc, namespace=self.namespace, name=self.name)
        assert found is not None, f"Deployment {self.namespace}/{self.name} does not exist"
        return found

    def real_replica_sets(self) -> list[dict[str, Any]]:
        with self.real_kube_client() as kc:
            raw = kc.request(
                method="GET", path=f"/apis/apps/v1/namespaces/{self.namespace}/replicasets", what=f"ReplicaSets of {self.name}"
            )
        return list(raw.get("items") or [])

    @property
    def deployment_path(self) -> str:
        """The end of the Deployment's API path (what `hold_patches` matches)."""
        return f"/namespaces/{self.namespace}/deployments/{self.name}"


def new_fault_app(request: pytest.FixtureRequest, **kwargs: Any) -> FaultApp:
    short = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))[:12].strip("-")
    name = f"f-{short}-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    return FaultApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log", **kwargs)


def delete_namespace(app: FaultApp) -> None:
    with contextlib.suppress(kube.KubeError), app.real_kube_client() as kc:
        kube.delete_object(kc, api_version="v1", kind="Namespace", name=app.namespace)
    print(f"{app.name}: pipeline worker log {app.worker_log}; namespace {app.namespace} deleted")


@contextlib.asynccontextmanager
async def worker_running(app: FaultApp, client: Client) -> AsyncIterator[FaultApp]:
    """`app` with its `pipeline worker` polling (on `client`'s server); the worker stopped and the namespace deleted after."""
    app.start_worker()
    try:
        await app.wait_worker_polling(client)
        yield app
    finally:
        app.stop_worker()
        delete_namespace(app)


@contextlib.asynccontextmanager
async def through_fault_proxy(app: FaultApp) -> AsyncIterator[FaultProxy]:
    """A `FaultProxy` in front of the cluster API (passing everything until its rule says otherwise), `app`'s configs
    pointing at it; closed after. Start the app's worker inside, so that it too reaches the cluster only through it."""
    proxy = FaultProxy(upstream_port=6443, cert=PKI / "server.crt", key=PKI / "server.key")
    await proxy.start()
    app.kubeconfig = proxy.write_kubeconfig(KUBECONFIG, app.directory / "kubeconfig-proxy")
    try:
        yield proxy
    finally:
        await proxy.close()


def template_build_id(deployment: dict[str, Any]) -> str:
    """The build id annotation of a Deployment's (or ReplicaSet's) pod template."""
    return str((deployment["spec"]["template"]["metadata"].get("annotations") or {}).get(BUILD_ID_ANNOTATION, ""))


async def pending_activity(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activity types the workflow is waiting on right now (none while it does not exist yet)."""
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return [p.activity_type.name for p in description.raw_description.pending_activities]


def attempts_of(history: Any, activity: str) -> list[int]:
    """The `attempt` of each started event of `activity` in the history (a retried activity starts once, at its last attempt)."""
    scheduled = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
