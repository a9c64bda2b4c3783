"""End-to-end fixtures: the local stack's real services, one isolated app per test module.

These tests drive the real `pipeline` console script against the stack that
`bootstrap/stack up` runs (Temporal dev server 127.0.0.1:7233 with its Web UI
on :8233, registry 127.0.0.1:5000, the local cluster on :6443, Docker), so
every deployment they make shows up in the Web UI like any other.

Isolation is by name, not by restart: each module gets its own app (which
names the Deployment, the image repository and the workflow id), Kubernetes
namespace, app task queue and pipeline task queue, a config.toml per version
(`E2eApp.config(...)`), and a `pipeline worker` subprocess on that pipeline
task queue, so nothing here touches the stack's own `deployments` worker or
the `temporal-workers` namespace. The namespace is deleted at the end of the
module, which stops its pods (set E2E_KEEP_NAMESPACES=1 to keep them for a look).

A module is a script of deployments (v1, v2, ...): its tests build on the ones
before them and run in file order.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from bootstrap.process import stop_child
from pipeline import kube
from tests.e2e.support import E2eApp, start_pipeline_worker

_TIMINGS: dict[str, float] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def e2e_app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[E2eApp]:
    """A fresh app with a `pipeline worker` subprocess on its own pipeline task queue; its namespace is deleted after."""
    short = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))[:12].strip("-")
    name = f"e2e-{short}-{uuid.uuid4().hex[:6]}"
    # Not under pytest's basetemp: other pytest sessions on this machine prune old basetemps while we run.
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    app = E2eApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log")
    app.worker = await start_pipeline_worker(app, app.config(), stack_client)
    try:
        yield app
    finally:
        stop_child(app.worker, grace=30)
        if os.environ.get("E2E_KEEP_NAMESPACES"):
            print(f"{name}: pipeline worker log {app.worker_log}; namespace {app.namespace} kept (E2E_KEEP_NAMESPACES)")
        else:
            with app.kube_client() as kc:
                kube.delete_object(kc, api_version="v1", kind="Namespace", name=app.namespace)
            print(f"{name}: pipeline worker log {app.worker_log}; namespace {app.namespace} deleted")


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    """Durations a module measures: printed at the end of the run, never asserted."""
    measured: dict[str, float] = {}
    yield measured
    _TIMINGS.update(measured)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TIMINGS:
        terminalreporter.section("e2e timings (measured, not asserted)")
        for key, value in _TIMINGS.items():
            terminalreporter.write_line(f"{key:<55} {value:6.1f}s")
    sys.stdout.flush()


# ----- the browser (tests/e2e/test_web_ui_actions.py, test_docs_screenshot.py) -----


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; bootstrap/stack installs it)")
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chromium_browser(chromium: str) -> AsyncIterator[Any]:
    """Headless Chromium (the system's) under Playwright, for the whole module."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()
