"""The quick start's main job on the local stack: ship the sample worker and prove it works.

`bootstrap/stack quickstart` runs this after `up`. It builds the sample
worker image from `config.toml`'s default app, pushes it to the local
registry, runs it by digest as a host-network container, waits until
Temporal's task-queue describe API lists the container as a poller, starts a
few sample workflows, and prints the Web UI links to watch them.

Until the local cluster and the deployment workflow exist this is the whole
path; after that, the same command runs `pipeline deploy --follow`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.parse
from datetime import UTC, datetime

import docker
import docker.errors
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bootstrap.settings import StackSettings
from pipeline.builders.local import BuildError, BuildRequest, build_and_push
from pipeline.config import load_config
from pipeline.errors import PipelineError
from sample_worker.client import start_orders
from sample_worker.settings import load_settings

CONTAINER_NAME = "quickstart-sample-worker"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bootstrap/stack quickstart")
    parser.add_argument("--workflows", type=int, default=3, help="sample workflows to run (default 3)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(workflows=args.workflows))
    except (PipelineError, BuildError, docker.errors.DockerException, TimeoutError) as exc:
        print(f"quickstart: {exc}", file=sys.stderr)
        return 1


async def run(*, workflows: int) -> int:
    config = load_config()
    app = config.app()
    stack = StackSettings.from_env()
    engine = docker.from_env()
    tag = datetime.now(UTC).strftime("qs-%Y%m%d%H%M%S")
    print(f"[1/4] building {app.name} ({app.build_target}) and pushing to {config.registry.address}")
    image = build_and_push(
        engine,
        BuildRequest(
            context=app.build_context,
            dockerfile=str(app.dockerfile.relative_to(app.build_context)),
            target=app.build_target,
            repository=f"{config.registry.address}/{app.name}",
            tag=tag,
            build_args={"BASE_IMAGE": stack.base_image},
        ),
    )
    print(f"      pushed {image.by_digest}")

    print(f"[2/4] running {CONTAINER_NAME} from {image.by_digest} (host network)")
    _remove_previous(engine)
    container = engine.containers.run(
        image.by_digest,
        name=CONTAINER_NAME,
        network_mode="host",
        detach=True,
        environment={
            "TEMPORAL_ADDRESS": config.temporal.address,
            "TEMPORAL_NAMESPACE": config.temporal.namespace,
            "TEMPORAL_TASK_QUEUE": app.task_queue,
            "POD_NAME": CONTAINER_NAME,
            "BUILD_ID": image.digest,
            "HEALTH_HOST": "127.0.0.1",
            "HEALTH_PORT": "0",
        },
        stop_signal="SIGTERM",
    )

    client = await Client.connect(config.temporal.address, namespace=config.temporal.namespace)
    print(f"[3/4] waiting for {CONTAINER_NAME} to poll task queue {app.task_queue!r}")
    identity = await _wait_for_poller(client, app.task_queue, CONTAINER_NAME, timeout=60)
    print(f"      polling as {identity!r}")

    print(f"[4/4] running {workflows} sample workflows")
    settings = load_settings(
        {
            "TEMPORAL_ADDRESS": config.temporal.address,
            "TEMPORAL_NAMESPACE": config.temporal.namespace,
            "TEMPORAL_TASK_QUEUE": app.task_queue,
        }
    )
    handles = await start_orders(client, settings, count=workflows, delay_seconds=0)
    for handle in handles:
        result = await handle.result()
        print(f"      {handle.id} completed: {result.tracking_id}")
    container.reload()
    ui = config.temporal.ui_url.rstrip("/")
    query = urllib.parse.quote(f'TaskQueue="{app.task_queue}"')
    print(f"\nWeb UI: {ui}/namespaces/{config.temporal.namespace}/workflows?query={query}")
    print(f"Worker container {CONTAINER_NAME} is {container.status}; stop it with: docker stop {CONTAINER_NAME}")
    return 0


def _remove_previous(engine: docker.DockerClient) -> None:
    try:
        old = engine.containers.get(CONTAINER_NAME)
    except docker.errors.NotFound:
        return
    old.stop(timeout=30)
    old.remove(force=True)


async def _wait_for_poller(client: Client, task_queue: str, pod_name: str, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        for poller in response.pollers:
            if pod_name in poller.identity:
                return poller.identity
        await asyncio.sleep(0.5)
    raise TimeoutError(f"no poller with identity containing {pod_name!r} on task queue {task_queue!r} after {timeout:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
