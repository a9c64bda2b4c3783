"""The sample worker image, built from the repo's Dockerfile and run with host networking.

One build per module. Before it, the fixture plants a fake secret in the
build context (a `config.env` and a `secrets/` file, both gitignored and
dockerignored) so the layer scan proves they cannot leak, not merely that
nobody happened to have them lying around.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import DockerException, ImageNotFound
from docker.models.containers import Container
from docker.models.images import Image
from docker.utils.build import exclude_paths
from temporalio.client import Client

from bootstrap.process import free_port
from sample_worker.workflows import OrderInput, OrderWorkflow
from tests.conftest import REPO_ROOT, eventually, unique_name
from tests.test_sample_worker import (
    ChargeRecord,
    charge_record,
    expect_charge_in_flight,
    expect_poller,
    expect_status,
    finish_with_fresh_worker,
)

# pipeline-base:bookworm is the bootstrap's debootstrap'd base: no registry is reachable here.
BASE_IMAGE = os.environ.get("SAMPLE_WORKER_BASE_IMAGE", "pipeline-base:bookworm")
STARTED_LINE = "Starting worker... Awaiting tasks"


@dataclass(frozen=True)
class PlantedSecrets:
    """Files written into the build context that must never reach an image layer."""

    names: tuple[str, ...]
    values: tuple[bytes, ...]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as err:
        if os.environ.get("CI"):
            pytest.fail(f"docker daemon unreachable in CI: {err}")
        pytest.skip(f"docker daemon unreachable ({err}); start it with `dockerd --bridge=none --iptables=false &`")
    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        pytest.fail(
            f"base image {BASE_IMAGE} is missing and cannot be pulled here; build it with the bootstrap "
            "(debootstrap + docker import) or point SAMPLE_WORKER_BASE_IMAGE at a local python:3.11-slim"
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def planted_secrets() -> Iterator[PlantedSecrets]:
    """A fake config.env and secrets/ file in the build context, removed afterwards.

    A developer's real config.env is never touched: if one exists it stays
    (and its name is still checked), only the planted secret value is checked then.
    """
    token = uuid.uuid4().hex
    created: list[Path] = []
    config_env = REPO_ROOT / "config.env"
    values = []
    if not config_env.exists():
        value = f"fake-config-secret-{token}"
        config_env.write_text(f"# planted by tests/test_sample_worker_image.py\nTEMPORAL_API_KEY={value}\n")
        created.append(config_env)
        values.append(value.encode())
    # Inside the package the Dockerfile copies wholesale: only .dockerignore keeps this out.
    inner_env = REPO_ROOT / "sample_worker" / "config.env"
    if not inner_env.exists():
        value = f"fake-inner-secret-{token}"
        inner_env.write_text(f"TEMPORAL_API_KEY={value}\n")
        created.append(inner_env)
        values.append(value.encode())
    secrets_dir = REPO_ROOT / "secrets"
    made_dir = not secrets_dir.exists()
    secrets_dir.mkdir(exist_ok=True)
    secret_file = secrets_dir / f"planted-{token}.key"
    file_value = f"fake-secret-file-{token}"
    secret_file.write_text(file_value)
    created.append(secret_file)
    values.append(file_value.encode())
    try:
        yield PlantedSecrets(names=("config.env", secret_file.name), values=tuple(values))
    finally:
        for path in created:
            path.unlink(missing_ok=True)
        if made_dir:
            secrets_dir.rmdir()


def ensure_wheelhouse() -> None:
    """The wheels the Dockerfile installs offline (what `python -m bootstrap wheelhouse` does)."""
    wheelhouse = REPO_ROOT / "wheelhouse"
    if any(wheelhouse.glob("temporalio-*.whl")):
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "-r",
            "sample_worker/requirements.txt",
            "-d",
            "wheelhouse",
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )


@contextlib.contextmanager
def built_image(docker_client: docker.DockerClient, target: str) -> Iterator[Image]:
    """The Dockerfile's `target`, built from the repository on the local base image, removed afterwards."""
    ensure_wheelhouse()
    tag = f"{target}:{unique_name('test')}"
    built, _logs = docker_client.images.build(
        path=str(REPO_ROOT), target=target, tag=tag, buildargs={"BASE_IMAGE": BASE_IMAGE}, rm=True, forcerm=True
    )
    try:
        yield built
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient, planted_secrets: PlantedSecrets) -> Iterator[Image]:
    with built_image(docker_client, "sample-worker") as built:
        yield built


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    """Every container a test starts goes here and is removed, whatever happens."""
    started: list[Container] = []
    yield started
    for container in started:
        try:
            container.remove(force=True)
        except DockerException:
            pass


def start_worker(docker_client: docker.DockerClient, image: Image, containers: list[Container], **env: str) -> Container:
    container = docker_client.containers.run(image.id, detach=True, network_mode="host", environment=env)
    containers.append(container)
    return container


def logs(container: Container) -> str:
    return str(container.logs().decode(errors="replace"))


# ---------------------------------------------------------------- image content


def image_leaks(archive: Path, *, base_layers: int, secrets: PlantedSecrets, wheel_names: set[str]) -> list[str]:
    """Everything in a saved image that should not be there, as readable findings.

    Base layers may carry Debian's own pip/setuptools wheels and __pycache__;
    the layers this Dockerfile adds must carry none of those.
    """
    findings: list[str] = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for index, layer_name in enumerate(manifest[0]["Layers"]):
            ours = index >= base_layers
            layer_file = outer.extractfile(layer_name)
            assert layer_file is not None, layer_name
            with tarfile.open(fileobj=io.BytesIO(layer_file.read())) as layer:
                for member in layer:
                    name, where = Path(member.name).name, f"{member.name} (layer {index})"
                    if name in secrets.names or name.endswith(".env") or "secrets/" in member.name and ours:
                        findings.append(f"secret-looking file {where}")
                    if name in wheel_names or ours and name.endswith(".whl"):
                        findings.append(f"wheel {where}")
                    if ours and member.name.startswith("app/") and "__pycache__" in member.name:
                        findings.append(f"bytecode cache {where}")
                    if member.isfile():
                        data = layer.extractfile(member).read()  # type: ignore[union-attr]
                        findings += [f"planted secret inside {where}" for value in secrets.values if value in data]
    return findings


def build_context_paths() -> set[str]:
    """What `docker build .` sends the daemon, after .dockerignore."""
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return set(exclude_paths(str(REPO_ROOT), patterns, "Dockerfile"))


def leaks_in(docker_client: docker.DockerClient, image: Image, secrets: PlantedSecrets, work: Path) -> list[str]:
    """`image_leaks` of `image`'s own layers (above the base image's), saved to a tar under `work`."""
    archive = work / "image.tar"
    with archive.open("wb") as out:
        for chunk in image.save(named=False):
            out.write(chunk)
    return image_leaks(
        archive,
        base_layers=len(docker_client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]),
        secrets=secrets,
        wheel_names={p.name for p in (REPO_ROOT / "wheelhouse").glob("*.whl")},
    )


def test_build_context_is_the_allowlist(planted_secrets: PlantedSecrets) -> None:
    """What the daemon receives: only the Dockerfile, the code and the wheels, never the planted files."""
    sent = build_context_paths()
    allowed = {"Dockerfile", ".dockerignore", "sample_worker", "pipeline", "worker_health", "wheelhouse"}
    assert {path.split("/")[0] for path in sent} <= allowed, sorted(sent)
    assert "sample_worker/worker.py" in sent and "sample_worker/requirements.txt" in sent
    assert not [path for path in sent if Path(path).name in planted_secrets.names or "__pycache__" in path], sorted(sent)


def test_image_holds_no_secret_config_or_wheel(
    docker_client: docker.DockerClient, image: Image, planted_secrets: PlantedSecrets, tmp_path: Path
) -> None:
    assert leaks_in(docker_client, image, planted_secrets, tmp_path) == []


def test_image_runs_as_uid_10001(docker_client: docker.DockerClient, image: Image, containers: list[Container]) -> None:
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Config"]["Cmd"] == ["python", "-m", "sample_worker"]
    assert image.attrs["Config"]["StopSignal"] == "SIGTERM"
    container = docker_client.containers.run(image.id, ["id", "-u"], detach=True, network_mode="host")
    containers.append(container)
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert logs(container).strip() == "10001"


# ---------------------------------------------------------------- running against the dev server


async def test_container_polls_and_completes_workflows(
    docker_client: docker.DockerClient,
    image: Image,
    containers: list[Container],
    client: Client,
    task_queue: str,
    temporal_address: str,
) -> None:
    port, pod, build_id = free_port(), unique_name("pod"), f"img-{uuid.uuid4().hex[:8]}"
    container = start_worker(
        docker_client,
        image,
        containers,
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE=task_queue,
        POD_NAME=pod,
        BUILD_ID=build_id,
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(port),
    )
    try:
        body = await eventually(lambda: expect_status(port, "/readyz", 200), timeout=60, what="container /readyz 200")
        assert (body["pod"], body["build_id"], body["task_queue"]) == (pod, build_id, task_queue)
        await eventually(
            lambda: expect_poller(client, task_queue, identity=f"{pod}@{build_id}", build_id=build_id), what="container pollers"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        env.update(TEMPORAL_ADDRESS=temporal_address, TEMPORAL_TASK_QUEUE=task_queue)
        starter = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "sample_worker.client", "--count", "3", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
        )
        assert starter.returncode == 0, starter.stdout + starter.stderr
        lines = starter.stdout.splitlines()
        assert len(lines) == 3 and all(" completed: trk-" in line for line in lines), lines
        assert STARTED_LINE in logs(container)
    except AssertionError:
        print(logs(container))
        raise


async def test_container_sigterm_drains_inflight_activity(
    docker_client: docker.DockerClient,
    image: Image,
    containers: list[Container],
    client: Client,
    task_queue: str,
    temporal_address: str,
) -> None:
    port, pod = free_port(), unique_name("pod")
    container = start_worker(
        docker_client,
        image,
        containers,
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE=task_queue,
        POD_NAME=pod,
        BUILD_ID="img-term",
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(port),
        SHUTDOWN_GRACE_SECONDS="20",
    )
    await eventually(lambda: expect_status(port, "/readyz", 200), timeout=60, what="container /readyz 200")
    order_id = unique_name("order")
    handle = await client.start_workflow(
        OrderWorkflow.run, OrderInput(order_id=order_id, delay_seconds=3), id=order_id, task_queue=task_queue
    )
    await eventually(lambda: expect_charge_in_flight(handle), what="charge_payment in flight")

    # docker stop sends the image's STOPSIGNAL (SIGTERM) and SIGKILLs only after the timeout.
    await asyncio.to_thread(container.stop, timeout=30)
    state: dict[str, Any] = container.wait(timeout=10)
    text = logs(container)
    assert state["StatusCode"] == 0, text
    assert "Received SIGTERM" in text and "Worker stopped cleanly" in text, text

    result = await finish_with_fresh_worker(client, handle, task_queue)
    assert result.payment_id == f"pay-{order_id}"
    assert await charge_record(handle) == ChargeRecord(started_by=f"{pod}@img-term", attempt=1, completed_by=f"{pod}@img-term")
