"""Fixtures of the fault tests: the stack's real services and an isolated app with its own pipeline worker.

Built from `tests.e2e.support` (names, configs, CLI runs) like tests/e2e/conftest.py,
so these modules need nothing from the e2e directory's conftest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from bootstrap.process import stop_child
from tests.e2e.support import E2eApp, start_pipeline_worker
from tests.helpers.faults import delete_namespace, new_app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fault_app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[E2eApp]:
    """A fresh app (replicas 1) with its own pipeline worker; its namespace is deleted after the module."""
    short = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))[:10].strip("-")
    app = new_app(f"f-{short}")
    worker = await start_pipeline_worker(app, app.config(replicas=1), stack_client)
    try:
        yield app
    finally:
        stop_child(worker, grace=30)
        delete_namespace(app.namespace)
