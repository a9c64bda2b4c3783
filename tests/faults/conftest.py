"""Fixtures of the fault tests: the stack's real services and an isolated app with its own pipeline worker.

Built from `tests.e2e.support` (names, configs, CLI runs) like tests/e2e/conftest.py,
so these modules need nothing from the e2e directory's conftest.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from pipeline import kube
from tests.conftest import eventually
from tests.e2e.support import (
    KUBECONFIG,
    PIPELINE,
    E2eApp,
    pollers_of,
)


def new_app(prefix: str) -> E2eApp:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    return E2eApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log")


async def start_worker(app: E2eApp, config: Path, client: Client, task_queue: str) -> subprocess.Popen[bytes]:
    """A `pipeline worker` subprocess with `config`, polling `task_queue` (its [pipeline].task_queue)."""
    with app.worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [PIPELINE, "worker"], env=app.env(config), cwd=app.directory, stdout=log, stderr=subprocess.STDOUT
        )

    async def polling() -> None:
        assert worker.poll() is None, f"`pipeline worker` exited {worker.returncode}:\n{app.worker_log.read_text()}"
        assert await pollers_of(client, task_queue), "the pipeline worker does not poll yet"

    try:
        await eventually(polling, timeout=30, what=f"`pipeline worker` polling {task_queue!r}")
    except BaseException:
        stop_worker(worker)
        raise
    return worker


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def delete_namespace(name: str) -> None:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        kube.delete_object(kc, api_version="v1", kind="Namespace", name=name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fault_app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[E2eApp]:
    """A fresh app (replicas 1) with its own pipeline worker; its namespace is deleted after the module."""
    short = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))[:10].strip("-")
    app = new_app(f"f-{short}")
    worker = await start_worker(app, app.config(replicas=1), stack_client, app.pipeline_queue)
    try:
        yield app
    finally:
        stop_worker(worker)
        delete_namespace(app.namespace)
