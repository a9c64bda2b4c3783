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
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.errors

from bootstrap import base_image, multiarch, wheelhouse
from bootstrap.cluster.kubelet.runtime import LABEL_CLUSTER
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
    if only is not None and "base-image" in only:
        only = only | {"docker", "registry"}  # the base images are built in the engine and published to the registry
    processes = [s for s in services(settings, only) if s.name != "pipeline"]
    pipeline = [s for s in services(settings, only) if s.name == "pipeline"]
    for service in processes:
        _ensure_running(service, say)
    if only is None or "base-image" in only:
        _ensure_base_images(settings, say)
    if only is None or "wheelhouse" in only:
        built = wheelhouse.ensure(REPO_ROOT, log_file=settings.logs_dir / "wheelhouse.log")
        say(f"wheelhouse: {'downloaded' if built else 'up to date'} ({REPO_ROOT / 'wheelhouse'})")
    for service in pipeline:  # last: its image build needs the base image and the wheelhouse
        _ensure_running(service, say, starting="deploying itself into the cluster with `pipeline bootstrap`")


def _ensure_base_images(settings: StackSettings, say: Callable[[str], None]) -> None:
    """One base image per platform (arm64 through QEMU), then the multi-platform index in the registry."""
    try:
        if multiarch.ensure_emulation(multiarch.ARM64):
            say("qemu: registered qemu-aarch64 in binfmt_misc (flags F), arm64 containers run emulated")
    except multiarch.MultiArchError as exc:
        raise base_image.BaseImageError(f"qemu: {exc}") from None
    if not Registry(settings).probe():
        raise base_image.BaseImageError(
            f"the registry at {settings.registry_address} is not running; the base images are pushed there"
        )
    client = docker.DockerClient(base_url=DockerEngine(settings).where())
    try:
        for platform in multiarch.PLATFORMS:
            tag = base_image.platform_tag(settings.base_image, platform)
            if base_image.exists(client, tag) and base_image.architecture(client, tag) == platform.architecture:
                say(f"base-image: {tag} exists")
                continue
            emulated = " under QEMU, a few minutes" if platform.qemu else ", about a minute"
            say(f"base-image: {tag} building with debootstrap ({platform.name}{emulated})")
            started = time.monotonic()
            base_image.ensure(
                client,
                settings.base_image,
                work_dir=settings.state_dir / "base-image",
                log_file=settings.logs_dir / "base-image.log",
                platform=platform,
            )
            say(f"base-image: {tag} built in {time.monotonic() - started:.0f} s")
        pushed = base_image.publish(
            client, settings.base_image, registry=settings.registry_address, log_file=settings.logs_dir / "base-image.log"
        )
        index = f"{settings.registry_address}/{settings.base_image}"
        say(f"base-image: {index} " + (f"pushed ({', '.join(pushed)})" if pushed else "up to date (linux/amd64, linux/arm64)"))
    finally:
        client.close()


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


class PurgeRefused(ValueError):
    """`down --purge` found a service still answering that may use the state directory; nothing was removed."""


def purge(settings: StackSettings, *, say: Callable[[str], None] = print) -> None:
    """After `down`: remove the state directory (cluster state, registry data, Temporal's database, logs, pid files)
    and the containers of the cluster's pods, saying what went.

    Refused (PurgeRefused, nothing removed) while the registry, the Temporal dev server or the cluster still
    answers: `down` stops only what `up` started, and one started otherwise may be using the directory.
    The Docker engine keeps its data elsewhere and may go on running.
    """
    state = settings.state_dir
    if state in (Path("/"), Path.home()) or state in REPO_ROOT.parents or state == REPO_ROOT:
        raise PurgeRefused(f"--purge: STACK_DIR {state} is not a directory of the stack's own; nothing removed")
    running = [s.name for s in services(settings, frozenset({"registry", "temporal", "cluster"})) if s.probe()]
    if running:
        raise PurgeRefused(
            f"--purge: {', '.join(running)} still answer{'s' if len(running) == 1 else ''} (not started by bootstrap, "
            f"so `down` left {'it' if len(running) == 1 else 'them'}) and may use {state}; stop "
            f"{'it' if len(running) == 1 else 'them'}, then run `bootstrap/stack down --purge` again; nothing removed"
        )
    if not state.exists():
        say(f"purge: nothing to remove ({state} does not exist)")
        return
    removed = _remove_pod_containers(state / "cluster" / "kubelet" / "cluster-id")
    if removed:
        say(f"purge: removed {removed} container(s) of the cluster's pods")
    parts = sorted(p.name for p in state.iterdir())
    size = sum(f.stat().st_size for f in state.rglob("*") if f.is_file() and not f.is_symlink())
    shutil.rmtree(state)
    say(f"purge: removed {state} ({', '.join(parts) or 'empty'}; {size / 1e6:.1f} MB)")


def _remove_pod_containers(cluster_id_file: Path) -> int:
    """Force-remove the Docker containers the cluster's kubelet made (labelled with its cluster id); how many."""
    cluster_id = cluster_id_file.read_text().strip() if cluster_id_file.exists() else ""
    if not cluster_id:
        return 0
    try:
        engine = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return 0  # no engine: no containers to remove
    try:
        found = engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster_id}"})
        for container in found:
            container.remove(force=True)
        return len(found)
    finally:
        engine.close()


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
        local = [base_image.platform_tag(settings.base_image, p) for p in multiarch.PLATFORMS]
        missing = [
            tag
            for tag, p in zip(local, multiarch.PLATFORMS, strict=True)
            if not base_image.exists(client, tag) or base_image.architecture(client, tag) != p.architecture
        ]
    finally:
        client.close()
    index = f"{settings.registry_address}/{settings.base_image}"
    where = f"{', '.join(local)}; index {index}"
    if settings.base_image in missing:
        return ArtifactStatus("base-image", "missing", where)
    if missing:
        return ArtifactStatus("base-image", f"incomplete (no {', '.join(missing)})", where)
    if not base_image.published(settings.registry_address, settings.base_image):
        return ArtifactStatus("base-image", "incomplete (index not in registry)", where)
    return ArtifactStatus("base-image", "present", where)
