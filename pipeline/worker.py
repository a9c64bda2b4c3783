"""The pipeline's own worker: runs DeploymentWorkflow and its activities on `[pipeline].task_queue`.

`pipeline worker` starts it on a laptop or CI machine; in the cluster it is
the pipeline-worker app's command (self-deployment). SIGTERM stops polling
and gives running activities the grace period to finish; a rollout wait cut
short is resumed from its heartbeat by another worker.

In a pod it reads what the rendered manifests set, like every deployed worker:
`POD_NAME` and `BUILD_ID` (its identity `<pod>@<build id>`),
`HEALTH_HOST`/`HEALTH_PORT` (`/healthz`, and `/readyz` only while polling; no
health server without `HEALTH_PORT`), `SHUTDOWN_GRACE_SECONDS` (the graceful
shutdown timeout, kept below terminationGracePeriodSeconds by the renderer).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from pipeline import activities, clusters, gates, version_activities
from pipeline.keeper import VersionKeeperWorkflow
from pipeline.models import ClusterRef, TemporalTarget
from pipeline.readiness import PollingGate
from pipeline.temporal_client import connect, use_own_credentials
from pipeline.workflows import DeploymentWorkflow
from worker_health import early_sigterm
from worker_health.server import HealthServer, HealthState

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
        workflows=[DeploymentWorkflow, VersionKeeperWorkflow],
        activities=[*activities.ALL, *version_activities.ALL, *gates.ALL],
        activity_executor=executor,
        max_concurrent_activities=max_activities,
        identity=identity(),
        # Reported on every poll (worker_version_capabilities.build_id) without opting into versioning:
        # what verify_polling checks, as for the sample worker. Unset (a laptop): the SDK's default.
        build_id=os.environ.get("BUILD_ID") or None,
        graceful_shutdown_timeout=timedelta(seconds=grace_seconds),
    )


@contextlib.asynccontextmanager
async def _polling_gate(client: Client, target: TemporalTarget, gate: tuple[ClusterRef, str] | None) -> AsyncIterator[None]:
    if gate is None:
        yield
        return
    cluster, namespace = gate
    async with PollingGate(
        client, connect=lambda: clusters.connect(cluster), namespace=namespace, partitions=target.task_queue_partitions
    ):
        log.info("readiness gate: watching the pipeline's pods in namespace %s", namespace)
        yield


def grace_from_env(default: float = 25) -> float:
    """SHUTDOWN_GRACE_SECONDS (set by the manifests), else `default`."""
    value = os.environ.get("SHUTDOWN_GRACE_SECONDS", "")
    return float(value) if value.replace(".", "", 1).isdigit() else default


async def run_worker(
    target: TemporalTarget,
    *,
    task_queue: str,
    grace_seconds: float | None = None,
    stop: asyncio.Event | None = None,
    gate: tuple[ClusterRef, str] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT (or `stop` is set), then shut down gracefully.

    `gate` (cluster, namespace): also run the readiness gate's controller there
    (pipeline/readiness.py) while polling.
    """
    grace = grace_from_env() if grace_seconds is None else grace_seconds
    me = identity()
    state = HealthState(pod=me.split("@", 1)[0], build_id=os.environ.get("BUILD_ID", "dev"), task_queue=task_queue)
    health = None
    if os.environ.get("HEALTH_PORT", "").isdigit():
        health = HealthServer(state, host=os.environ.get("HEALTH_HOST") or "127.0.0.1", port=int(os.environ["HEALTH_PORT"]))
        await health.start()
    try:
        use_own_credentials(target)  # activities connect with this worker's key and certificates, not the CLI's
        client = await connect(target, identity=me)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if early_sigterm.RECEIVED:  # `python -m pipeline worker` heard one while it started
                log.info("SIGTERM came while starting: stopping")
                stop.set()
        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity") as executor:
            worker = build_worker(client, task_queue=task_queue, executor=executor, grace_seconds=grace)
            # The gate outlives the worker's polling: on SIGTERM polling stops first, at once.
            async with _polling_gate(client, target, gate), worker:
                state.ready = True
                log.info("pipeline worker %s polling task queue %r on %s", me, task_queue, target.address)
                await stop.wait()
                state.ready = False
                log.info("stopping: no new tasks; running activities get %ss", grace)
        log.info("pipeline worker stopped")
    finally:
        use_own_credentials(None)
        state.ready = False
        if health is not None:
            await health.close()
        # As in sample_worker/worker.py: let the SDK's bridge finish before the interpreter tears down.
        gc.collect()
        await asyncio.sleep(0.2)
