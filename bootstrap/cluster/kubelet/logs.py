"""`kubectl logs`: a container's Docker log, streamed to the loop from a reader thread.

Docker's stream is blocking, so one thread per stream reads it and hands
chunks to the loop with `call_soon_threadsafe`; closing the async generator
(a client that hangs up) closes the Docker stream, which ends the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import Executor
from typing import Any

import docker
import docker.errors

from bootstrap.cluster.errors import ApiError

_END = object()


async def stream_logs(
    client: docker.DockerClient,
    container_id: str,
    *,
    follow: bool,
    tail_lines: int | None,
    timestamps: bool,
    executor: Executor,
) -> AsyncGenerator[bytes, None]:
    loop = asyncio.get_running_loop()

    def open_stream() -> Any:
        return client.api.logs(
            container_id,
            stdout=True,
            stderr=True,
            stream=True,
            follow=follow,
            timestamps=timestamps,
            tail=tail_lines if tail_lines is not None else "all",
        )

    try:
        stream = await loop.run_in_executor(executor, open_stream)
    except docker.errors.NotFound as err:
        raise ApiError(404, "NotFound", f"container {container_id} not found: {err.explanation}") from err
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def pump() -> None:
        try:
            for chunk in stream:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
        except Exception:  # closed from the loop side, or the container went away
            pass
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except RuntimeError:  # the loop is closed
                pass

    threading.Thread(target=pump, daemon=True, name=f"logs-{container_id[:12]}").start()
    try:
        while True:
            chunk = await queue.get()
            if chunk is _END:
                return
            yield bytes(chunk)
    finally:
        stream.close()
