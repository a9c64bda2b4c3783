"""The container side of `kubectl exec` and `kubectl attach`: a hijacked Docker connection, on the event loop.

Kubernetes' kubelet hands exec/attach to the container runtime's streaming
server (CRI `Exec`/`Attach`, staging/src/k8s.io/kubelet/pkg/cri/streaming);
here the runtime is the Docker engine, so a session is what `docker exec` /
`docker attach` do:

- exec: `POST /exec` creates the process (`AttachStdin/Stdout/Stderr`, `Tty`),
  `POST /exec/{id}/start` with `Connection: Upgrade, Upgrade: tcp` hijacks the
  connection, `GET /exec/{id}/json` gives the exit code once it stopped;
- attach: `POST /containers/{id}/attach?stream=1&...` on the same kind of
  hijacked connection (the container's own stdin/stdout/stderr, from now on).

The hijacked connection is raw when the process has a TTY, and otherwise
multiplexed: 8-byte headers `[stream, 0, 0, 0, size(uint32 BE)]` with stream 1
= stdout, 2 = stderr (Docker's stdcopy). Closing our write side closes the
process's stdin. The upgrade is done by hand on an asyncio connection so that
no byte after the response headers is lost to a buffered HTTP client, and no
thread is held for the session's life; only the short API calls (create,
inspect, resize) go through the docker SDK on the kubelet's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode, urlparse

import docker
import docker.errors

from bootstrap.cluster.errors import ApiError

T = TypeVar("T")
STDOUT, STDERR = 1, 2
_DEFAULT_SOCKET = "/var/run/docker.sock"
EXIT_CODE_WAIT = 5.0  # seconds to wait for Docker to record the exit code after the output ended


class DockerHost(Protocol):
    """What a session needs from the kubelet: its Docker client and its threads for blocking calls."""

    docker: docker.DockerClient

    async def call(self, fn: Callable[[], T]) -> T: ...


async def _open_engine() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new connection to the Docker engine named by DOCKER_HOST (unix:// or tcp://), as docker.from_env() reads it."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"
    url = urlparse(host)
    if url.scheme == "unix":
        return await asyncio.open_unix_connection(url.path)
    if url.scheme in ("tcp", "http"):
        return await asyncio.open_connection(url.hostname, url.port or 2375)
    raise ApiError(500, "InternalError", f"DOCKER_HOST {host!r}: only unix:// and tcp:// engines can stream")


async def _hijack(api_version: str, path: str, body: dict[str, Any] | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """POST `path` with `Upgrade: tcp` and return the connection once Docker switched it to the raw stream."""
    reader, writer = await _open_engine()
    payload = json.dumps(body).encode() if body is not None else b""
    head = (
        f"POST /v{api_version}{path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: bootstrap-kubelet\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    headers = await reader.readuntil(b"\r\n\r\n")
    status_line = headers.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if code not in (101, 200):
        text = (await reader.read(64 * 1024)).decode("utf-8", "replace")
        writer.close()
        raise ApiError(500, "InternalError", f"docker {path}: {status_line}: {text.strip()}")
    return reader, writer


@dataclass
class Session:
    """One exec or attach: read its output with `output()`, feed its stdin with `write`/`close_stdin`."""

    host: DockerHost
    container_id: str
    tty: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    exec_id: str | None = None  # None: an attach

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, bytes) until the process's output ends: stream 1 stdout, 2 stderr (1 only with a TTY)."""
        if self.tty:
            while chunk := await self.reader.read(32 * 1024):
                yield STDOUT, chunk
            return
        while True:
            try:
                header = await self.reader.readexactly(8)
            except asyncio.IncompleteReadError:
                return
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            try:
                data = await self.reader.readexactly(size)
            except asyncio.IncompleteReadError as partial:
                data = partial.partial
            if data:
                yield (STDERR if stream == STDERR else STDOUT), data

    async def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)
            await self.writer.drain()

    def close_stdin(self) -> None:
        """Half-close: an exec'd process reads EOF on its stdin. An attach only stops forwarding (the
        container's stdin stays open for the next attach, as without `stdinOnce`), and keeps streaming output."""
        if self.exec_id is None:
            return
        if not self.writer.is_closing() and self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()

    async def resize(self, width: int, height: int) -> None:
        api = self.host.docker.api
        with contextlib.suppress(docker.errors.APIError):
            if self.exec_id is not None:
                exec_id = self.exec_id
                await self.host.call(lambda: api.exec_resize(exec_id, height=height, width=width))
            else:
                await self.host.call(lambda: api.resize(self.container_id, height, width))

    async def exit_code(self) -> int | None:
        """The exec'd process's exit code (None for an attach, or when Docker never recorded one)."""
        if self.exec_id is None:
            return None
        api, exec_id = self.host.docker.api, self.exec_id
        deadline = asyncio.get_running_loop().time() + EXIT_CODE_WAIT
        while True:
            info = await self.host.call(lambda: api.exec_inspect(exec_id))
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.writer.close()


async def start_exec(
    host: DockerHost, container_id: str, command: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool
) -> Session:
    """Run `command` in the container (CRI Exec); raises ApiError when Docker refuses (e.g. the container stopped)."""
    api = host.docker.api

    def create() -> str:
        created = api.exec_create(container_id, command, stdout=stdout, stderr=stderr, stdin=stdin, tty=tty)
        return str(created["Id"])

    try:
        exec_id = await host.call(create)
    except docker.errors.NotFound as err:
        raise ApiError(404, "NotFound", f"container not found ({container_id[:12]}): {err.explanation}") from err
    except docker.errors.APIError as err:
        raise ApiError(500, "InternalError", f"error executing command in container: {err.explanation or err}") from err
    reader, writer = await _hijack(str(api.api_version), f"/exec/{exec_id}/start", {"Detach": False, "Tty": tty})
    return Session(host, container_id, tty, reader, writer, exec_id=exec_id)


async def start_attach(host: DockerHost, container_id: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Session:
    """Attach to the container's own streams (CRI Attach): what it writes from now on, and its stdin."""
    query = urlencode({"stream": 1, "stdin": int(stdin), "stdout": int(stdout), "stderr": int(stderr)})
    api = host.docker.api
    reader, writer = await _hijack(str(api.api_version), f"/containers/{container_id}/attach?{query}", None)
    return Session(host, container_id, tty, reader, writer)
