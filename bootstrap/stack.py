"""Bring the local stack up, down, and report on it; every step safe to repeat.

Order matters: the Docker engine first (the base image and, later, the local
cluster's pods need it), then the registry, the Temporal dev server and the
cluster, then the build artifacts (base image and wheelhouse) that image builds
use, and last the pipeline itself: `pipeline bootstrap` deploys the pipeline's
own worker into the cluster (the first self-deploy), so no pipeline worker
runs as a local process once `up` is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import docker

from bootstrap import base_image, wheelhouse
from bootstrap.services import (
    DockerEngine,
    LocalCluster,
    Registry,
    SelfDeployedPipeline,
    Service,
    ServiceStatus,
    TemporalDevServer,
)
from bootstrap.settings import REPO_ROOT, StackSettings

SERVICE_NAMES = ("docker", "registry", "temporal", "cluster", "pipeline")
ARTIFACT_NAMES = ("base-image", "wheelhouse")


@dataclass(frozen=True)
class ArtifactStatus:
    name: str
    state: str
    where: str

    def line(self) -> str:
        return f"{self.name:<10} {self.state:<36} {self.where}"


def services(settings: StackSettings, only: frozenset[str] | None = None) -> list[Service]:
    all_services: list[Service] = [
        DockerEngine(settings),
        Registry(settings),
        TemporalDevServer(settings),
        LocalCluster(settings),
        SelfDeployedPipeline(settings),
    ]
    return [s for s in all_services if only is None or s.name in only]


def up(settings: StackSettings, *, only: frozenset[str] | None = None, say: Callable[[str], None] = print) -> None:
    """Start what is not running and build what is missing; leave everything else as it is."""
    processes = [s for s in services(settings, only) if s.name != "pipeline"]
    pipeline = [s for s in services(settings, only) if s.name == "pipeline"]
    for service in processes:
        _ensure_running(service, say)
    if only is None or "base-image" in only:
        client = docker.DockerClient(base_url=DockerEngine(settings).where())
        try:
            say(
                f"base-image: {settings.base_image} "
                + ("exists" if base_image.exists(client, settings.base_image) else "building with debootstrap (about a minute)")
            )
            base_image.ensure(
                client,
                settings.base_image,
                work_dir=settings.state_dir / "base-image",
                log_file=settings.logs_dir / "base-image.log",
            )
        finally:
            client.close()
    if only is None or "wheelhouse" in only:
        built = wheelhouse.ensure(REPO_ROOT, log_file=settings.logs_dir / "wheelhouse.log")
        say(f"wheelhouse: {'downloaded' if built else 'up to date'} ({REPO_ROOT / 'wheelhouse'})")
    for service in pipeline:  # last: its image build needs the base image and the wheelhouse
        _ensure_running(service, say, starting="deploying itself into the cluster with `pipeline bootstrap`")


def _ensure_running(service: Service, say: Callable[[str], None], *, starting: str = "starting") -> None:
    if service.probe():
        say(f"{service.name}: already running ({service.status().where})")
        return
    say(f"{service.name}: {starting}")
    service.start()
    say(f"{service.name}: running ({service.status().where})")


def down(settings: StackSettings, *, only: frozenset[str] | None = None, say: Callable[[str], None] = print) -> None:
    """Stop what `up` started, in reverse order; services it did not start are left running."""
    for service in reversed(services(settings, only)):
        if isinstance(service, SelfDeployedPipeline):
            say(f"{service.name}: deployed in the cluster; its pods stop with the Docker engine")
        elif service.stop():
            say(f"{service.name}: stopped")
        elif service.probe():
            say(f"{service.name}: left running (not started by bootstrap)")
        else:
            say(f"{service.name}: not running")


def status(settings: StackSettings, *, only: frozenset[str] | None = None) -> list[ServiceStatus | ArtifactStatus]:
    result: list[ServiceStatus | ArtifactStatus] = [s.status() for s in services(settings, only)]
    if only is None or "base-image" in only:
        result.append(_base_image_status(settings))
    if only is None or "wheelhouse" in only:
        stamp = REPO_ROOT / "wheelhouse" / ".stamp"
        result.append(ArtifactStatus("wheelhouse", "present" if stamp.exists() else "missing", str(stamp.parent)))
    return result


def status_json(rows: list[ServiceStatus | ArtifactStatus]) -> str:
    return json.dumps(
        [{k: (str(v) if v is not None and k == "log_file" else v) for k, v in asdict(r).items()} for r in rows], indent=2
    )


def _base_image_status(settings: StackSettings) -> ArtifactStatus:
    engine = DockerEngine(settings)
    if not engine.probe():
        return ArtifactStatus("base-image", "unknown (docker not running)", settings.base_image)
    client = docker.DockerClient(base_url=engine.where())
    try:
        present = base_image.exists(client, settings.base_image)
    finally:
        client.close()
    return ArtifactStatus("base-image", "present" if present else "missing", settings.base_image)
