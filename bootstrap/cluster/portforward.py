"""pods/portforward for kubectl: SPDY/3.1 streams, tunnelled in a WebSocket (kubectl 1.31+) or on a plain upgrade.

kubectl 1.32 (PortForwardWebsockets, on by default) opens a WebSocket with the subprotocol
`SPDY/3.1+portforward.k8s.io` and runs an SPDY client session inside it (client-go
tools/portforward/tunneling_dialer.go); with KUBECTL_PORT_FORWARD_WEBSOCKETS=false, or when the
tunnel's upgrade fails, it sends `POST` with `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version:
portforward.k8s.io` and speaks SPDY on the raw connection after a 101.

Inside the session, the kubelet's side (cri/streaming/portforward/httpstream.go): for every local
connection the client opens two streams carrying the headers `streamType` (`error`, then `data`),
`port` and `requestID`; a stream without a valid port or type is reset. Each stream is answered with
a SYN_REPLY; once both streams of a requestID arrived, the data stream is joined to the pod's port. A
failure is written as text on the error stream (`error forwarding port P to pod NAME, uid UID: ...`),
and both streams are closed (DATA with FIN) when the connection ends. Client pings are echoed.

All pods here use the host network, so the pod's port is 127.0.0.1:<port>.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from bootstrap.cluster import errors, spdy
from bootstrap.cluster.store import Obj

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0  # kubelet's --streaming-connection-... default: the pair must be complete by then


@dataclass
class _Pair:
    """The error and data streams of one forwarded connection (one requestID)."""

    request_id: str
    port: int
    error_id: int | None = None
    data_id: int | None = None
    inbound: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)  # client → pod; None: FIN
    task: asyncio.Task[None] | None = None


class _Session:
    """One SPDY session: frames in through `receive`, frames out through `send` (serialized)."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], pod: Obj) -> None:
        self._send_raw = send
        self._lock = asyncio.Lock()
        self.framer = spdy.Framer()
        self.pod = pod
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.last_stream = 0

    async def send(self, encode: Callable[[], bytes]) -> None:
        # Encoding inside the lock keeps the header compression context in the order frames go out.
        async with self._lock:
            await self._send_raw(encode())

    async def receive(self, data: bytes) -> bool:
        """Handle the peer's bytes; False once it said GOAWAY."""
        for frame in self.framer.feed(data):
            if frame.kind == spdy.SYN_STREAM:
                await self._new_stream(frame)
            elif frame.kind == 0:
                pair = self.by_stream.get(frame.stream_id)
                if pair is not None and frame.stream_id == pair.data_id:
                    if frame.data:
                        pair.inbound.put_nowait(frame.data)
                    if frame.fin:
                        pair.inbound.put_nowait(None)
            elif frame.kind == spdy.PING:
                await self.send(functools.partial(self.framer.ping, frame.value))
            elif frame.kind == spdy.RST_STREAM:
                pair = self.by_stream.get(frame.stream_id)
                if pair is not None and pair.task is not None:
                    pair.task.cancel()
            elif frame.kind == spdy.GOAWAY:
                return False
        return True

    async def _new_stream(self, frame: spdy.Frame) -> None:
        """httpStreamReceived: check port and streamType, reply, pair by requestID, start when complete."""
        sid = frame.stream_id
        self.last_stream = max(self.last_stream, sid)
        port_text = (frame.headers.get("port") or [""])[0]
        stream_type = (frame.headers.get("streamtype") or [""])[0]
        valid = port_text.isdigit() and 0 < int(port_text) < 65536 and stream_type in ("error", "data")
        if not valid:
            log.info("port-forward: refusing stream %d (port %r, streamType %r)", sid, port_text, stream_type)
            await self.send(lambda: self.framer.rst_stream(sid, spdy.REFUSED_STREAM))
            return
        await self.send(lambda: self.framer.syn_reply(sid))
        request_id = (frame.headers.get("requestid") or [""])[0]
        if not request_id:  # an old client: the kubelet's best-effort pairing by stream id
            request_id = str(sid if stream_type == "error" else sid - 2)
        pair = self.pairs.setdefault(request_id, _Pair(request_id, int(port_text)))
        if stream_type == "error":
            pair.error_id = sid
        else:
            pair.data_id = sid
        self.by_stream[sid] = pair
        if pair.error_id is not None and pair.data_id is not None and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair))

    async def _forward(self, pair: _Pair) -> None:
        """PortForward: join the data stream to the pod's port until either side ends."""
        assert pair.data_id is not None and pair.error_id is not None
        data_id, error_id = pair.data_id, pair.error_id
        meta = self.pod["metadata"]
        try:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", pair.port)
            except OSError as exc:
                reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc)).lower()
                message = (
                    f"error forwarding port {pair.port} to pod {meta['name']}, uid {meta['uid']}: "
                    f"dial tcp4 127.0.0.1:{pair.port}: connect: {reason}"
                )
                await self.send(lambda: self.framer.data(error_id, message.encode()))
                return

            async def to_pod() -> None:
                while (chunk := await pair.inbound.get()) is not None:
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()  # the client is done sending; the pod may still answer

            sender = asyncio.create_task(to_pod())
            try:
                with contextlib.suppress(ConnectionError):
                    while chunk := await reader.read(spdy.MAX_DATA):
                        await self.send(functools.partial(self.framer.data, data_id, chunk))
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                writer.close()
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(lambda: self.framer.data(data_id, b"", fin=True))
                await self.send(lambda: self.framer.data(error_id, b"", fin=True))
            self.pairs.pop(pair.request_id, None)
            self.by_stream.pop(data_id, None)
            self.by_stream.pop(error_id, None)

    async def close(self) -> None:
        tasks = [p.task for p in self.pairs.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _tunnel(request: web.Request, pod: Obj) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), autoping=True, heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    session = _Session(ws.send_bytes, pod)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.TEXT:
                    break  # tunneling_connection.go: "invalid message type received"
                continue
            if not await session.receive(msg.data):
                break
    except spdy.ProtocolError as exc:
        log.info("port-forward to %s: %s", pod["metadata"]["name"], exc)
    finally:
        await session.close()
        await ws.close()
    return ws


async def _plain(request: web.Request, pod: Obj) -> web.StreamResponse:
    conn = spdy.hijack(request, PROTOCOL)
    session = _Session(conn.send, pod)
    try:
        while (data := await conn.received.get()) is not None:
            if not await session.receive(data):
                break
    except (spdy.ProtocolError, ConnectionError) as exc:
        log.info("port-forward to %s: %s", pod["metadata"]["name"], exc)
    finally:
        await session.close()
        conn.close()
    return web.Response()  # never sent: the connection left HTTP at the 101


def _is_tunnel(request: web.Request) -> bool:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and TUNNEL_PROTOCOL in offered


async def serve(request: web.Request, pod: Obj) -> web.StreamResponse:
    """Serve kubectl's port-forward on this request: tunnelled SPDY, or a plain SPDY upgrade."""
    if _is_tunnel(request):
        return await _tunnel(request, pod)
    if spdy.is_spdy_upgrade(request):
        offered = spdy.offered_protocols(request)
        if offered and PROTOCOL not in offered:  # httpstream.Handshake
            raise errors.ApiError(
                403,
                "Forbidden",
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports [{PROTOCOL}]",
            )
        return await _plain(request, pod)
    raise errors.bad_request("Upgrade request required")
