"""The long-running services of the local stack: Docker engine, registry, Temporal dev server.

Every service answers the same three questions (is it up? start it, stop it)
so that `up` can skip what already runs, including a service someone else
started on the same port: such a service is used as it is and left alone by
`down`, which only stops what `up` started (it has a pid file for those).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import docker
import docker.errors

from bootstrap.process import ManagedProcess, ProcessError
from bootstrap.settings import REPO_ROOT, StackSettings
from pipeline.search_attributes import dev_server_flags
from pipeline.temporal_client import run as run_async


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "running", "running (not started by bootstrap)", "stopped"
    where: str
    pid: int | None
    log_file: Path | None

    @property
    def running(self) -> bool:
        return self.state.startswith("running")

    def line(self) -> str:
        pid = f" pid {self.pid}" if self.pid else ""
        log = f" log {self.log_file}" if self.log_file else ""
        return f"{self.name:<10} {self.state:<36} {self.where}{pid}{log}"


class Service(Protocol):
    name: str

    def probe(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> bool: ...

    def status(self) -> ServiceStatus: ...


class _ProcessService:
    """Shared start/stop/status for services that are one background process."""

    name: str
    start_timeout: float = 30.0

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.process = ManagedProcess(
            name=self.name,
            pid_file=settings.run_dir / f"{self.name}.pid",
            log_file=settings.logs_dir / f"{self.name}.log",
        )

    def argv(self) -> list[str]:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    def probe(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files and create directories before the first start."""

    def start(self) -> None:
        self.prepare()
        self.process.start(self.argv(), ready=self.probe, timeout=self.start_timeout)

    def stop(self) -> bool:
        return self.process.stop()

    def status(self) -> ServiceStatus:
        pid = self.process.pid()
        if pid is not None and self.probe():
            state = "running"
        elif pid is not None:
            state = "starting or unhealthy"
        elif self.probe():
            state = "running (not started by bootstrap)"
        else:
            state = "stopped"
        return ServiceStatus(self.name, state, self.where(), pid, self.process.log_file)


class DockerEngine(_ProcessService):
    """dockerd without a bridge: every container of the stack uses host networking."""

    name = "docker"
    socket_path = Path("/var/run/docker.sock")

    def argv(self) -> list[str]:
        return [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ]

    def where(self) -> str:
        return f"unix://{self.socket_path}"

    def probe(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.where(), timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (docker.errors.DockerException, OSError):
            return False


class Registry(_ProcessService):
    """Debian's docker-registry (CNCF distribution) with storage in the state directory."""

    name = "registry"

    @property
    def config_file(self) -> Path:
        return self.settings.state_dir / "registry" / "config.yml"

    def prepare(self) -> None:
        storage = self.settings.state_dir / "registry" / "data"
        storage.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.settings.registry_address}}}\n"
        )

    def argv(self) -> list[str]:
        return ["docker-registry", "serve", str(self.config_file)]

    def where(self) -> str:
        return f"http://{self.settings.registry_address}/v2/"

    def probe(self) -> bool:
        return _http_ok(self.where())


# Worker Versioning on the local stack: a drained version is reported after 5 s instead of the
# server's default 5 min grace period (plus its refresh interval), so a versioned rollout's whole
# sunset fits in a test. Production servers keep their defaults; the pipeline reads the status,
# whatever the interval.
VERSIONING_DYNAMIC_CONFIG = [
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"',
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusRefreshInterval="2s"',
]


class TemporalDevServer(_ProcessService):
    """`temporal server start-dev` with the Web UI, a database file, and the pipeline's search attributes."""

    name = "temporal"

    @property
    def db_file(self) -> Path:
        return self.settings.state_dir / "temporal" / "temporal.db"

    def prepare(self) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        s = self.settings
        return [
            str(s.bin_dir / "temporal"),
            "server",
            "start-dev",
            "--ip",
            s.host,
            "--port",
            str(s.temporal_port),
            "--ui-port",
            str(s.temporal_ui_port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
            *dev_server_flags(),
            *VERSIONING_DYNAMIC_CONFIG,
        ]

    def where(self) -> str:
        s = self.settings
        return f"grpc {s.temporal_address}, Web UI {s.temporal_ui_url}"

    def probe(self) -> bool:
        s = self.settings
        return _tcp_open(s.host, s.temporal_port) and _http_ok(s.temporal_ui_url)


class LocalCluster(_ProcessService):
    """The Kubernetes-API-compatible cluster of `bootstrap/cluster`, its pods as Docker containers."""

    name = "cluster"

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bootstrap.cluster",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--port",
            str(self.settings.cluster_port),
        ]

    def where(self) -> str:
        return f"https://{self.settings.host}:{self.settings.cluster_port}, kubeconfig {self.kubeconfig}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def probe(self) -> bool:
        """Ready, and ours: its certificate must verify with this stack's CA.

        Another checkout's cluster on the same port answers /readyz too, but
        every client of this stack (its kubeconfig) would fail on its certificate.
        """
        if not self.ca_file.exists():
            return False
        return _http_ok(f"https://{self.settings.host}:{self.settings.cluster_port}/readyz", cafile=self.ca_file)

    def start(self) -> None:
        if _tcp_open(self.settings.host, self.settings.cluster_port):
            raise ProcessError(
                f"cluster: https://{self.settings.host}:{self.settings.cluster_port} is served by another cluster "
                f"(its certificate is not signed by {self.ca_file}); stop it (`bootstrap/stack down` in its "
                "checkout) or move this stack with STACK_CLUSTER_PORT"
            )
        super().start()


class SelfDeployedPipeline:
    """The pipeline's own worker, deployed into the local cluster by `pipeline bootstrap`.

    Not a local process: `start` runs the first self-deploy (a temporary local
    worker deploys the `role = "pipeline"` app of config.toml, then hands over
    and exits), so afterwards the in-cluster pods serve the pipeline's task
    queue, exactly as they would on AKS. `probe` asks what `pipeline bootstrap`
    asks: is the Deployment available and is every pod of it polling the queue,
    as Temporal sees it. `stop` has nothing local to stop: the Deployment is
    cluster state and its pods stop with the cluster's containers.
    """

    name = "pipeline"
    start_timeout = 900.0  # the first run builds the pipeline-worker image

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.log_file = settings.logs_dir / "pipeline.log"
        self.config_file = REPO_ROOT / "config.toml"

    def env(self) -> dict[str, str]:
        """config.toml, pointed at this stack (its Temporal, registry, cluster and task queue)."""
        return {
            **os.environ,
            "PIPELINE__TEMPORAL__ADDRESS": self.settings.temporal_address,
            "PIPELINE__TEMPORAL__UI_URL": self.settings.temporal_ui_url,
            "PIPELINE__REGISTRY__ADDRESS": self.settings.registry_address,
            "PIPELINE__KUBERNETES__KUBECONFIG": str(self.settings.state_dir / "cluster" / "kubeconfig"),
            "PIPELINE__PIPELINE__TASK_QUEUE": self.settings.pipeline_task_queue,
        }

    def probe(self) -> bool:
        if not _tcp_open(self.settings.host, self.settings.temporal_port):
            return False
        from pipeline import selfdeploy
        from pipeline.commands import prepare
        from pipeline.config import load_config
        from pipeline.errors import PipelineError
        from pipeline.inputs import temporal_target
        from pipeline.temporal_client import connect

        async def ask() -> bool:
            config = load_config(self.config_file, env=self.env())
            request = prepare(config, selfdeploy.pipeline_app(config).name)
            client = await connect(temporal_target(config))
            state = await selfdeploy.pipeline_state(client, request, task_queue=config.pipeline.task_queue)
            return state.ok

        try:
            return run_async(ask())
        except (PipelineError, OSError, RuntimeError):
            return False

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pipeline.cli", "--config", str(self.config_file), "bootstrap"]
        with self.log_file.open("ab") as log:
            try:
                result = subprocess.run(
                    argv, env=self.env(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=self.start_timeout
                )
            except subprocess.TimeoutExpired as exc:
                raise ProcessError(
                    f"pipeline: `pipeline bootstrap` did not finish within {self.start_timeout:.0f}s; see {self.log_file}"
                ) from exc
        if result.returncode != 0:
            raise ProcessError(
                f"pipeline: `pipeline bootstrap` exited {result.returncode}; last lines of {self.log_file}:\n{self.log_tail()}"
            )

    def stop(self) -> bool:
        return False

    def where(self) -> str:
        return (
            f"task queue {self.settings.pipeline_task_queue!r} on {self.settings.temporal_address}, "
            "served by the pipeline-worker pods in the cluster"
        )

    def status(self) -> ServiceStatus:
        state = "running" if self.probe() else "stopped"
        return ServiceStatus(self.name, state, self.where(), None, self.log_file)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(url: str, *, cafile: Path | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False
