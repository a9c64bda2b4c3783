"""The pipeline's own worker: runs DeploymentWorkflow and its activities on `[pipeline].task_queue`.

`pipeline worker` starts it on a laptop or CI machine; in the cluster it is
the pipeline-worker app's command (self-deployment). SIGTERM stops polling
and gives running activities the grace period to finish; a rollout wait cut
short is resumed from its heartbeat by another worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from pipeline import activities
from pipeline.models import TemporalTarget
from pipeline.temporal_client import connect
from pipeline.workflows import DeploymentWorkflow

log = logging.getLogger("pipeline.worker")


def identity() -> str:
    """`<pod or host>@<build id>`, the same shape as the workers it deploys."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}@{os.environ.get('BUILD_ID', 'dev')}"


def build_worker(
    client: Client, *, task_queue: str, executor: ThreadPoolExecutor, max_activities: int = 32, grace_seconds: float = 25
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DeploymentWorkflow],
        activities=activities.ALL,
        activity_executor=executor,
        max_concurrent_activities=max_activities,
        identity=identity(),
        graceful_shutdown_timeout=timedelta(seconds=grace_seconds),
    )


async def run_worker(target: TemporalTarget, *, task_queue: str, grace_seconds: float = 25) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    client = await connect(target, identity=identity())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity") as executor:
        worker = build_worker(client, task_queue=task_queue, executor=executor, grace_seconds=grace_seconds)
        async with worker:
            log.info("pipeline worker %s polling task queue %r on %s", identity(), task_queue, target.address)
            await stop.wait()
            log.info("stopping: no new tasks; running activities get %ss", grace_seconds)
    log.info("pipeline worker stopped")
