"""The worker process: ``python -m sample_worker`` (the image's CMD; see __main__.py) or ``python -m sample_worker.worker``.

Lifecycle, in the order Kubernetes sees it:

1. settings are parsed (bad value: one line on stderr, exit 2);
2. the health server starts, /readyz answers 503;
3. the client connects and the worker starts polling; /readyz answers 200 and
   ``Starting worker... Awaiting tasks`` is logged;
4. on SIGTERM (the pod is being deleted) or SIGINT: /readyz goes 503, polling
   stops, in-flight activities get ``SHUTDOWN_GRACE_SECONDS`` to finish, and the
   process exits 0. Keep the pod's terminationGracePeriodSeconds above that
   grace so the kubelet never has to SIGKILL.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from sample_worker.activities import charge_payment, record_approval, reserve_inventory, ship_order
from sample_worker.settings import Settings, connect, load_or_exit
from sample_worker.versioned import VERSIONED_WORKFLOWS
from sample_worker.workflows import AutoUpgradeWorkflow, GateWorkflow, OrderWorkflow, PinnedWorkflow
from worker_health import early_sigterm
from worker_health.server import HealthServer, HealthState

logger = logging.getLogger("sample_worker")

_STARTED = "Starting worker... Awaiting tasks"


def build_worker(client: Client, settings: Settings) -> Worker:
    """The Worker with every workflow and activity of this app registered, versioned if the settings say so.

    Versioned (TEMPORAL_USE_WORKER_VERSIONING=true): the SDK's deployment_config
    (temporalio/worker/_worker.py, WorkerDeploymentConfig; exclusive with
    build_id and use_worker_versioning, so those stay unset). Every poll then
    carries the version (deployment name, build id), the server registers it in
    the Worker Deployment, and routes to it new workflows once it is current and
    pinned workflows that started on it. Each workflow declares its behaviour
    (sample_worker/versioned.py); PINNED is the default for one that does not,
    since it never moves a running workflow onto code it did not start on.

    Unversioned: build_id without use_worker_versioning does not opt into
    versioning: it only reports worker_version_capabilities.build_id on every
    poll, so DescribeTaskQueue shows which image each poller runs. It also skips
    the SDK's default, which hashes every loaded module at start-up.
    """
    deployment = _deployment_config(settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        # The same workflows either way; the versioned classes add each one's versioning behaviour.
        workflows=[*VERSIONED_WORKFLOWS, GateWorkflow]
        if deployment
        else [OrderWorkflow, PinnedWorkflow, AutoUpgradeWorkflow, GateWorkflow],
        activities=[reserve_inventory, charge_payment, ship_order, record_approval],
        identity=settings.identity,
        build_id=None if deployment else settings.build_id,
        use_worker_versioning=False,
        deployment_config=deployment,
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
    )


def _deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The Worker Deployment Version this worker polls as, or None (unversioned)."""
    if not settings.use_worker_versioning:
        return None
    assert settings.deployment_name is not None  # load_settings refuses versioning without it
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=settings.deployment_name, build_id=settings.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


async def run(settings: Settings, stop: asyncio.Event) -> int:
    """Run until `stop` is set; return the process exit code."""
    state = HealthState(
        pod=settings.pod_name,
        build_id=settings.build_id,
        task_queue=settings.task_queue,
        namespace=settings.pod_namespace,
    )
    health = HealthServer(state, host=settings.health_host, port=settings.health_port)
    if settings.health_port:
        await health.start()
    try:
        return await _serve(settings, state, stop)
    finally:
        state.ready = False
        await health.close()


async def _serve(settings: Settings, state: HealthState, stop: asyncio.Event) -> int:
    logger.info(
        "Connecting to %s (namespace %s, task queue %s, identity %s, tls %s, versioning %s)",
        settings.temporal_address,
        settings.namespace,
        settings.task_queue,
        settings.identity,
        settings.tls,
        f"{settings.deployment_name} build {settings.build_id}" if settings.use_worker_versioning else "off",
    )
    try:
        client = await _unless_stopped(connect(settings, identity=settings.identity), stop)
    except Exception as err:  # the SDK raises RuntimeError for every connect failure
        logger.error("Could not connect to Temporal at %s: %s", settings.temporal_address, err)
        return 1
    if client is None:
        logger.info("Stopped before connecting")
        return 0
    worker = build_worker(client, settings)
    run_task = asyncio.create_task(worker.run())
    # Worker.run validates the namespace before it starts polling; ready only after that.
    while not worker.is_running and not run_task.done():
        await asyncio.sleep(0.05)
    if run_task.done():
        return _failed(run_task)

    state.ready = True
    logger.info(_STARTED)
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    state.ready = False
    if run_task.done():
        return _failed(run_task)

    logger.info(
        "Shutdown requested: stopped accepting tasks, waiting up to %ss for in-flight activities",
        settings.shutdown_grace_seconds,
    )
    await worker.shutdown()
    if (code := _failed(run_task)) != 0:
        return code
    logger.info("Worker stopped cleanly")
    return 0


async def _unless_stopped(connecting: Coroutine[Any, Any, Client], stop: asyncio.Event) -> Client | None:
    """Await the connection unless a signal arrives first (then give up on it)."""
    connect_task = asyncio.create_task(connecting)
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({connect_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stop_task.cancel()
    if not connect_task.done():
        connect_task.cancel()
        return None
    return connect_task.result()


def _failed(run_task: asyncio.Task[None]) -> int:
    """0 if the worker ended cleanly, else log why and return 1."""
    err = run_task.exception()
    if err is None:
        return 0
    logger.error("Worker failed: %s", err)
    return 1


async def main() -> int:
    """The process: settings, signals (and any SIGTERM that came while it started), serve."""
    settings = load_or_exit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    if early_sigterm.RECEIVED:
        logger.info("Received SIGTERM while starting")
        stop.set()
    code = await run(settings, stop)
    # Seen here with temporalio 1.35: after a drain with an in-flight activity, about
    # one exit in three aborted during interpreter finalization ("Fatal Python error:
    # PyGILState_Release ... finalizing", exit 134/139 instead of 0): the Rust bridge
    # still calls back into Python while the interpreter is tearing down. Freeing the
    # worker/client cycles and giving the bridge a moment while the loop is still alive
    # made 40 of 40 runs exit 0 (either step alone sufficed; both are kept).
    gc.collect()
    await asyncio.sleep(0.2)
    return code


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        logger.info("Received %s again; still shutting down", sig.name)
        return
    logger.info("Received %s", sig.name)
    stop.set()


def run_process() -> int:
    """Entry point only (`python -m sample_worker`, or this module): library users configure logging themselves."""
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(main())


if __name__ == "__main__":
    from sample_worker.leave import leave

    leave(run_process())
