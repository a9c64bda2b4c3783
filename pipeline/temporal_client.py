"""Connecting to Temporal with a key that is looked up, never passed around.

Config and workflow inputs carry only `api_key_env`, the *name* of the
environment variable holding the API key; the value is read here, in the
process that connects, and goes nowhere else.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from temporalio.client import Client

from pipeline.errors import (
    PipelineError,
    TemporalUnreachable,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
)
from pipeline.models import TemporalTarget

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` that lets the SDK's native bridge wind down before the interpreter does.

    Seen here with temporalio 1.35: a process that made a Client sometimes
    aborted at exit ("Fatal Python error: PyGILState_Release ... finalizing")
    because the Rust bridge called back into Python during finalization.
    Freeing the client's cycles and yielding once more while the loop is alive
    avoids it (the sample worker does the same for the same reason).
    """

    async def wrapped() -> T:
        try:
            return await coro
        finally:
            gc.collect()
            await asyncio.sleep(0.1)

    return asyncio.run(wrapped())


def api_key_from_env(target: TemporalTarget, env: Mapping[str, str] | None = None) -> str | None:
    if not target.api_key_env:
        return None
    env = os.environ if env is None else env
    value = env.get(target.api_key_env, "")
    if not value:
        raise PipelineError(f"[temporal].api_key_env names {target.api_key_env}, but that environment variable is empty or unset")
    return value


async def connect(target: TemporalTarget, *, identity: str | None = None) -> Client:
    api_key = api_key_from_env(target)
    try:
        return await Client.connect(
            target.address,
            namespace=target.namespace,
            api_key=api_key,
            tls=bool(target.tls or api_key),
            identity=identity,
        )
    except RuntimeError as exc:  # the SDK's error for every connect failure
        raise TemporalUnreachable(f"cannot reach Temporal at {target.address} (namespace {target.namespace}): {exc}") from exc
