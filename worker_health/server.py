"""Liveness and readiness over HTTP, stdlib only, for Kubernetes probes of any Temporal worker.

Shared by the sample worker and the pipeline worker (each image copies the
worker_health package beside its own): the manifests the pipeline renders
probe `/healthz` and `/readyz` on every app it deploys.

``GET /healthz`` answers 200 while the event loop runs (a wedged loop fails the
liveness probe). ``GET /readyz`` answers 200 only while the worker is connected
and polling, and 503 before that and from the moment shutdown starts, so a
rollout waits for the new pod to really take work. Both bodies are a small
JSON object saying which pod, build and task queue answered.

A hand-rolled HTTP/1.0 responder on ``asyncio.start_server`` keeps the image
free of web frameworks; it reads only the request line and headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
# Probes send a few hundred bytes; anything slower or bigger is not a probe.
_READ_TIMEOUT_SECONDS = 5.0
_MAX_HEADER_LINES = 100


@dataclass
class HealthState:
    """What the probes report; the worker flips `ready`."""

    pod: str
    build_id: str
    task_queue: str
    namespace: str | None = None
    ready: bool = False


class HealthServer:
    """Serves HealthState on host:port until closed."""

    def __init__(self, state: HealthState, *, host: str, port: int) -> None:
        self.state = state
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        logger.info("Health server listening on %s:%d (/healthz, /readyz)", self._host, self.port)

    @property
    def port(self) -> int:
        """The bound port (differs from the requested one only when that was 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT_SECONDS)
            for _ in range(_MAX_HEADER_LINES):
                line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT_SECONDS)
                if line in (b"\r\n", b"\n", b""):
                    break
            method, _, rest = request_line.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, body = self._respond(method, path)
            payload = b"" if method == "HEAD" else body
            writer.write(
                f"HTTP/1.0 {status} {_REASONS[status]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    def _respond(self, method: str, path: str) -> tuple[int, bytes]:
        if path not in ("/healthz", "/readyz"):
            return 404, b'{"error": "not found; try /healthz or /readyz"}'
        if method not in ("GET", "HEAD"):
            return 405, b'{"error": "use GET"}'
        info = asdict(self.state)
        if path == "/healthz":
            status, info["status"] = 200, "alive"
        elif self.state.ready:
            status, info["status"] = 200, "ready"
        else:
            status, info["status"] = 503, "not ready"
        return status, json.dumps(info).encode()
