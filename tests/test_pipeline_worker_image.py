"""The pipeline-worker image (Dockerfile target `pipeline-worker`): content, user, and a real run.

The twin of tests/test_sample_worker_image.py for the pipeline's own worker:
the same planted secrets (plus a config.env and a config.toml planted inside
`pipeline/`, which the Dockerfile copies wholesale) must not reach a layer, no
config file is in the image, and the container, configured only by its
environment, polls the pipeline's task queue as `<POD_NAME>@<BUILD_ID>`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container
from docker.models.images import Image
from temporalio.client import Client

from tests.helpers import REPO_ROOT, eventually, unique_name
from tests.helpers.images import (
    PlantedSecrets,
    build_context_paths,
    built_image,
    containers,
    docker_client,
    leaks_in,
    logs,
    planted_secrets,
)
from tests.helpers.processes import free_port
from tests.helpers.workers import expect_poller, expect_status

__all__ = ["containers", "docker_client", "planted_secrets"]  # module fixtures used by name


@pytest.fixture(scope="module")
def pipeline_secrets(planted_secrets: PlantedSecrets) -> Iterator[PlantedSecrets]:
    """The sample image's planted files, and a config.env and config.toml inside pipeline/."""
    token = uuid.uuid4().hex
    planted: list[Path] = []
    values = list(planted_secrets.values)
    for name in ("config.env", "config.toml"):
        path = REPO_ROOT / "pipeline" / name
        if path.exists():
            continue
        value = f"fake-pipeline-secret-{token}-{name}"
        path.write_text(f'# planted by {Path(__file__).name}\napi_key = "{value}"\n')
        planted.append(path)
        values.append(value.encode())
    try:
        # By value, not by name: the venv legitimately holds a config.toml (temporalio's .cargo/config.toml).
        yield replace(planted_secrets, values=tuple(values))
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient, pipeline_secrets: PlantedSecrets) -> Iterator[Image]:
    with built_image(docker_client, "pipeline-worker") as built:
        yield built


def test_build_context_holds_the_pipeline_package_without_config(pipeline_secrets: PlantedSecrets) -> None:
    sent = build_context_paths()
    assert "pipeline/worker.py" in sent and "pipeline/requirements.txt" in sent
    assert not [p for p in sent if Path(p).name in ("config.toml", "config.env", "kubeconfig") or ".stack" in p], sorted(sent)


def test_image_holds_no_secret_config_or_wheel(
    docker_client: docker.DockerClient, image: Image, pipeline_secrets: PlantedSecrets, tmp_path: Path
) -> None:
    assert leaks_in(docker_client, image, pipeline_secrets, tmp_path) == []


def test_image_runs_the_pipeline_worker_as_uid_10001(
    docker_client: docker.DockerClient, image: Image, containers: list[Container]
) -> None:
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "pipeline", "worker"]
    assert config["StopSignal"] == "SIGTERM"
    probe = (
        "import glob, os, shutil; "
        "print(os.getuid(), shutil.which('pip'), glob.glob('/app/**/config.*', recursive=True) or 'no-config')"
    )
    container = docker_client.containers.run(image.id, ["python", "-c", probe], detach=True, network_mode="host")
    containers.append(container)
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert logs(container).split() == ["10001", "None", "no-config"]


async def test_container_polls_the_pipeline_queue_from_env_alone(
    docker_client: docker.DockerClient, image: Image, containers: list[Container], client: Client, temporal_address: str
) -> None:
    port, pod, build_id, queue = free_port(), unique_name("pod"), f"img-{uuid.uuid4().hex[:8]}", unique_name("pipeline-tq")
    container = docker_client.containers.run(
        image.id,
        detach=True,
        network_mode="host",
        environment={
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "PIPELINE__PIPELINE__TASK_QUEUE": queue,
            "POD_NAME": pod,
            "BUILD_ID": build_id,
            "HEALTH_HOST": "127.0.0.1",
            "HEALTH_PORT": str(port),
            "SHUTDOWN_GRACE_SECONDS": "3",
        },
    )
    containers.append(container)
    try:
        body = await eventually(lambda: expect_status(port, "/readyz", 200), timeout=60, what="/readyz 200")
        assert (body["pod"], body["build_id"], body["task_queue"]) == (pod, build_id, queue)
        await eventually(lambda: expect_poller(client, queue, identity=f"{pod}@{build_id}", build_id=build_id), what="pollers")
        container.stop(timeout=20)
        assert container.wait(timeout=20)["StatusCode"] == 0
        assert "pipeline worker stopped" in logs(container)
    except AssertionError:
        print(logs(container))
        raise
