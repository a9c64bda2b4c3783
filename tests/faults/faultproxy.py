"""A fault proxy in front of a cluster API, on loopback: HTTP-aware, so it can answer for the cluster.

    proxy = FaultProxy(upstream_port=6443, cert=pki / "server.crt", key=pki / "server.key")
    await proxy.start()                      # listens on 127.0.0.1:<proxy.port>
    proxy.write_kubeconfig(original, path)   # the same credentials, pointed at the proxy
    proxy.rule = burst(...)                  # decide per request: pass, answer a status, or drop the connection

It terminates TLS with the cluster's own serving certificate (whose SANs
include 127.0.0.1, so clients keep verifying it against the kubeconfig's CA)
and re-originates every request to the real port over TLS. Each request is
read whole (head + Content-Length body) and handed to `rule(method, path)`:
None forwards it, `Answer(status, reason)` replies with a Kubernetes `Status`
object and closes the connection, `DROP` closes the connection without a word,
`Hold(seconds)` keeps it that long (a slow API server) and then delivers it
whether or not its client is still there (a killed client's request still
lands, as it would on a real server that had received it), on a connection of
its own that is closed after the answer. `holding` is how many requests are
held right now. Requests and what happened to them are counted in `seen`
("passed", "429", "500", "403", "dropped", "held", "delivered").

    proxy.rule = hold_patches("/deployments/web", seconds=5, times=1)   # the next Deployment apply takes 5 s
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str  # Kubernetes' Status.reason, e.g. "TooManyRequests", "InternalError", "Forbidden"
    message: str = "injected by the fault proxy"


@dataclass(frozen=True)
class Hold:
    seconds: float  # how long the request is held before it is delivered


DROP = "drop"
Decision = Answer | Hold | str | None
Rule = Callable[[str, str], Decision]

_PHRASES = {403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


class FaultProxy:
    def __init__(self, *, upstream_port: int, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(str(cert), str(key))
        self.client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_tls.check_hostname = False
        self.client_tls.verify_mode = ssl.CERT_NONE  # loopback to the cluster whose cert we serve
        self.rule: Rule = lambda method, path: None
        self.seen: Counter[str] = Counter()  # "passed", "429", "500", "403", "dropped", "held", "delivered"
        self.holding = 0  # requests held right now
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.server_tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def write_kubeconfig(self, original: Path, path: Path) -> Path:
        doc = yaml.safe_load(original.read_text())
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    # ----- one client connection -----

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                method, path, length = _parse(head)
                body = await reader.readexactly(length) if length else b""
                decision = self.rule(method, path)
                if decision == DROP:
                    self.seen["dropped"] += 1
                    writer.transport.abort()
                    return
                if isinstance(decision, Hold):
                    await self._hold_and_deliver(decision, head + body, writer)
                    return
                if isinstance(decision, Answer):
                    self.seen[str(decision.status)] += 1
                    writer.write(_status_response(decision))
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    return
                self.seen["passed"] += 1
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port, ssl=self.client_tls)
                    pump = asyncio.ensure_future(_pipe(upstream[0], writer))
                upstream[1].write(head + body)
                await upstream[1].drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            if upstream is not None:
                upstream[1].transport.abort()
            writer.close()

    async def _hold_and_deliver(self, hold: Hold, request: bytes, writer: asyncio.StreamWriter) -> None:
        """Keep `request` for `hold.seconds`, send it upstream alone and relay the whole answer, if anyone still listens."""
        self.seen["held"] += 1
        self.holding += 1
        try:
            await asyncio.sleep(hold.seconds)
        finally:
            self.holding -= 1
        reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port, ssl=self.client_tls)
        try:
            upstream.write(_closing(request))
            await upstream.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=60)  # to EOF: the server closes after it
        finally:
            upstream.transport.abort()
        self.seen["delivered"] += 1
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            writer.write(answer)
            await writer.drain()


def hold_patches(path_end: str, *, seconds: float, times: int | None = None) -> Rule:
    """Hold each PATCH (a server-side apply) of the path ending in `path_end` for `seconds`; the first `times` only, if given."""
    held: list[str] = []

    def rule(method: str, path: str) -> Decision:
        if method == "PATCH" and path.split("?", 1)[0].endswith(path_end) and (times is None or len(held) < times):
            held.append(path)
            return Hold(seconds)
        return None

    return rule


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


def _parse(head: bytes) -> tuple[str, str, int]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            raise ConnectionError("chunked request bodies are not supported by the fault proxy")
    return method, path, length


def _closing(request: bytes) -> bytes:
    """`request` with `Connection: close`, so that the server ends the connection after its answer."""
    head, sep, body = request.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


def _status_response(answer: Answer) -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": answer.message,
            "reason": answer.reason,
            "code": answer.status,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {answer.status} {_PHRASES.get(answer.status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Retry-After: 1\r\n" if answer.status == 429 else "") + "Connection: close\r\n\r\n"
    )
    return head.encode() + body
