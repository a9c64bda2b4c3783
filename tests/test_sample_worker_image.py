"""The sample worker image, built from the repo's Dockerfile and run with host networking.

One build per module. Before it, the fixture plants a fake secret in the
build context (a `config.env` and a `secrets/` file, both gitignored and
dockerignored) so the layer scan proves they cannot leak, not merely that
nobody happened to have them lying around.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from docker.models.images import Image
from temporalio.client import Client

from sample_worker.workflows import OrderInput, OrderWorkflow
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
from tests.helpers.workers import (
    ChargeRecord,
    charge_record,
    expect_charge_in_flight,
    expect_poller,
    expect_status,
    finish_with_fresh_worker,
)

__all__ = ["containers", "docker_client", "planted_secrets"]  # fixtures used by name

STARTED_LINE = "Starting worker... Awaiting tasks"


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient, planted_secrets: PlantedSecrets) -> Iterator[Image]:
    with built_image(docker_client, "sample-worker") as built:
        yield built


def start_worker(docker_client: docker.DockerClient, image: Image, containers: list[Container], **env: str) -> Container:
    container = docker_client.containers.run(image.id, detach=True, network_mode="host", environment=env)
    containers.append(container)
    return container


# ---------------------------------------------------------------- image content


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
