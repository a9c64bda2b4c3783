"""The cluster process: one event loop running the API server, the controllers and the kubelet.

`serve(state_dir, port)` loads the store from `state_dir/objects`, makes sure the
credentials exist (`pki.py`), serves HTTPS on 127.0.0.1, writes
`state_dir/kubeconfig`, starts the workload components and runs until SIGTERM
or SIGINT, then stops accepting requests, closes watches, cancels the
components and exits 0. Everything shares the loop, so the store needs no locks.

The workload components (Deployment and ReplicaSet controllers, garbage
collector, kubelet) are required: a missing one is an error, except with
`CLUSTER_NO_WORKLOADS=1`, which serves the API alone (for API-only tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from bootstrap.cluster import pki, rbac
from bootstrap.cluster.api import LogSource, make_app
from bootstrap.cluster.store import Store
from bootstrap.cluster.tokens import TokenIssuer

log = logging.getLogger(__name__)

NODE_NAME = "local-node"
NO_WORKLOADS_ENV = "CLUSTER_NO_WORKLOADS"


def _workloads(
    store: Store,
    state_dir: Path,
    *,
    credentials: pki.Credentials | None = None,
    port: int = 0,
    issuer: TokenIssuer | None = None,
) -> tuple[list[Coroutine[Any, Any, None]], LogSource | None]:
    """The controllers' and kubelet's run() coroutines, and the kubelet (for pods/log).

    With `credentials`, `port` and `issuer`, pods get their ServiceAccount's token and the API address, and
    projected serviceAccountToken volumes (kubelet/volumes.py).

    With CLUSTER_NO_WORKLOADS=1 the kubelet (and Docker) is left out, and so is
    any controller that cannot be imported; the others still run, so that
    deletion cascades and namespaces finalize in API-only tests.
    """
    no_workloads = os.environ.get(NO_WORKLOADS_ENV) == "1"
    runners: list[Coroutine[Any, Any, None]] = []
    try:
        from bootstrap.cluster.controllers import (
            CronJobController,
            DeploymentController,
            GarbageCollector,
            JobController,
            ReplicaSetController,
            ServiceAccountsController,
        )
        from bootstrap.cluster.events import EventRecorder

        events = EventRecorder(store)  # one recorder, so repeated events aggregate across components
        runners = [
            DeploymentController(store, events=events).run(),
            ReplicaSetController(store, events=events).run(),
            JobController(store, events=events).run(),
            CronJobController(store, events=events).run(),
            GarbageCollector(store).run(),
            ServiceAccountsController(store).run(),  # subscribes now: before the API serves a request
        ]
    except ImportError as exc:
        if not no_workloads:
            raise SystemExit(
                f"the cluster's controllers cannot be imported ({exc}); set {NO_WORKLOADS_ENV}=1 to serve the API alone"
            ) from exc
        log.warning("controllers unavailable (%s): serving the API alone", exc)
        return [], None
    if no_workloads:
        log.warning("%s=1: no kubelet, pods are stored but never run", NO_WORKLOADS_ENV)
        return runners, None
    try:
        import docker

        from bootstrap.cluster.kubelet import Kubelet
        from bootstrap.cluster.kubelet.volumes import ApiAccess
    except ImportError as exc:
        raise SystemExit(
            f"the cluster's kubelet cannot be imported ({exc}); set {NO_WORKLOADS_ENV}=1 to serve the API alone"
        ) from exc
    api_access = ApiAccess(port=port, ca_pem=credentials.ca_cert.read_bytes(), issuer=issuer) if credentials and port else None
    kubelet = Kubelet(
        store,
        node_name=NODE_NAME,
        docker=docker.from_env(),
        state_dir=state_dir / "kubelet",
        events=events,
        api_access=api_access,
    )
    runners.append(kubelet.run())
    return runners, kubelet


def _ssl_context(credentials: pki.Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(credentials.server_cert), str(credentials.server_key))
    return context


async def serve(state_dir: Path, *, port: int = 6443, host: str = "127.0.0.1") -> None:
    """Run the cluster until SIGTERM/SIGINT."""
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - startup, before serving
    os.chmod(state_dir, 0o700)
    store = Store(state_dir / "objects")
    rbac.ensure_bootstrap_policy(store)
    credentials = pki.ensure_credentials(state_dir)
    server_url = f"https://{host}:{port}"  # also the ServiceAccount token issuer (--service-account-issuer)
    issuer = TokenIssuer.from_file(server_url, pki.ensure_service_account_key(state_dir))
    runners, logs = _workloads(store, state_dir, credentials=credentials, port=port, issuer=issuer)
    app, _ = make_app(store, token=credentials.token, logs=logs, issuer=issuer)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=_ssl_context(credentials), reuse_address=True)
    await site.start()
    pki.write_kubeconfig(state_dir / "kubeconfig", server=server_url, credentials=credentials)
    log.info("cluster API serving on %s; kubeconfig %s", server_url, state_dir / "kubeconfig")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(coro) for coro in runners]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("a cluster component stopped", exc_info=task.exception())
    finally:
        log.info("cluster shutting down")
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stopper.cancel()
