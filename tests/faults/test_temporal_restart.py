"""A Temporal dev server of our own is restarted (same database file, same port) mid-rollout: the deployment completes.

The stack's server is shared with every other test, so this module starts its
own `temporal server start-dev --db-filename <tmp>/t.db` on free ports, points
the app's `[temporal].address` and its `pipeline worker` at it, and SIGTERMs it
while the rollout wait runs (the new pods become ready 6 s late). The CLI's
`--follow` may fail during the outage; the result is then awaited through a
fresh client once the server is back.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from pipeline import search_attributes
from pipeline.models import DeploymentResult
from tests.e2e.support import TEMPORAL_NAMESPACE, activity_spans, listening
from tests.faults.chaos_fixtures import (
    FaultApp,
    new_fault_app,
    pending_activity,
    slow_worker,
    worker_running,
)
from tests.helpers import eventually, temporal_cli_path
from tests.helpers.processes import free_port

pytestmark = pytest.mark.e2e


class DevServer:
    """`temporal server start-dev` on a database file, restartable on the same file and port."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "t.db"
        self.port = free_port()
        self.log = directory / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    temporal_cli_path(),
                    "server",
                    "start-dev",
                    "--db-filename",
                    str(self.db),
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--headless",
                    "--log-level",
                    "error",
                    *search_attributes.dev_server_flags(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not listening(self.address):
            assert self.process.poll() is None, f"the dev server exited {self.process.returncode}:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"the dev server does not listen on {self.address}:\n{self.log.read_text()}"
            time.sleep(0.1)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, stack: None) -> Iterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def restart_app(request: pytest.FixtureRequest, dev_server: DevServer) -> AsyncIterator[tuple[FaultApp, Client]]:
    app = new_fault_app(request, temporal_address=dev_server.address)
    client = await Client.connect(dev_server.address, namespace=TEMPORAL_NAMESPACE)
    async with worker_running(app, client):
        yield app, client


async def test_dev_server_restart_mid_rollout_deployment_completes(
    restart_app: tuple[FaultApp, Client], dev_server: DevServer
) -> None:
    app, client = restart_app
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await app.start(*args, config=app.config("v1", command=slow_worker(start=6)))
    handle = client.get_workflow_handle(app.workflow_id)

    async def rolling_out() -> None:
        assert "wait_for_rollout" in await pending_activity(handle), "the rollout wait is not running yet"

    await eventually(rolling_out, timeout=90, interval=0.1, what="wait_for_rollout running")
    dev_server.stop(signal.SIGTERM)
    stopped = time.monotonic()
    await asyncio.sleep(2)  # an outage, not just a blink
    dev_server.start()
    restarted = time.monotonic()

    run = await app.finish(process, args, started=started, timeout=180)
    fresh = await Client.connect(dev_server.address, namespace=TEMPORAL_NAMESPACE)
    result = await asyncio.wait_for(
        fresh.get_workflow_handle(app.workflow_id, result_type=DeploymentResult).result(), timeout=120
    )
    done = time.monotonic()

    assert result.outcome == "succeeded", f"the deployment did not succeed after the restart: {result}\n{run.output}"
    assert app.worker is not None and app.worker.poll() is None, f"the pipeline worker died:\n{app.log_tail()}"
    history = await fresh.get_workflow_handle(app.workflow_id).fetch_history()
    spans = activity_spans(history)
    for step in ("build_image", "apply_manifests", "verify_polling", "record_revision"):
        assert [s.outcome for s in spans if s.activity == step] == ["completed"], f"{step}: {spans}"
    print(
        f"dev server down {restarted - stopped:.1f}s during the rollout; restart -> deployment result "
        f"{done - restarted:.1f}s; CLI --follow exit {run.code}"
    )
