"""pods/exec, pods/attach and pods/portforward: the streaming subresources, over WebSocket channels.

What kube-apiserver 1.32 and the kubelet serve, and what this module does:

- The channel protocols (staging/src/k8s.io/apimachinery/pkg/util/httpstream/wsstream/conn.go):
  every WebSocket message is `[channel byte] + data` (binary: `channel.k8s.io`, `v4.channel.k8s.io`,
  `v5.channel.k8s.io`, or no subprotocol), or `'0'+channel` + base64 (text: the `base64.` variants).
  The subprotocol is the first one the client offers that the server knows.
- exec/attach channels (kubelet cri/streaming/remotecommand/websocket.go): 0 stdin, 1 stdout,
  2 stderr, 3 error, 4 resize (`{"Width":w,"Height":h}`). Once open, the server writes an empty
  message on the lowest channel it writes (stdout, else stderr, else error). When the command ends it
  writes the result on channel 3 and closes: v4/v5 a JSON `Status` (`{"metadata":{},"status":"Success"}`,
  or Failure/NonZeroExitCode with a cause `{"reason":"ExitCode","message":"<code>"}`, remotecommand/exec.go),
  older protocols the error text only. v5 (KEP-4006, what kubectl 1.32 asks for first) adds the
  client's CLOSE signal `[255, channel]`: stdin half-closed, so `echo x | kubectl exec -i` ends.
  With a TTY, stderr is not a separate stream (remotecommand.NewOptions bypasses it).
- portforward over WebSocket (kubelet cri/streaming/portforward/websocket.go, the Python client's
  `portforward`): `?ports=` lists the ports; channels 2i (data) and 2i+1 (error) belong to port i, and
  the server first writes the port (uint16, little endian) on both. kubectl's own port-forward speaks
  SPDY (tunnelled in a WebSocket since 1.31), see portforward.py.
- Before the upgrade, the API server checks what the real one does (pkg/registry/core/pod/strategy.go
  streamLocation and the kubelet): the pod exists, the container name (defaulted when the pod has one),
  at least one stream and, for exec, a command; 1.32's AuthorizePodWebsocketUpgradeCreatePermission
  (beta, on) makes a WebSocket GET need the `create` verb on the subresource too.
- The command runs in the pod's container through the Docker engine (kubelet/exec.py); the container
  is the running one named in the pod's status, as the kubelet finds it among running containers.
- kubectl falls back to SPDY/3.1 (POST, `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version`) when the WebSocket
  upgrade fails or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false: one SPDY stream per channel, named by its
  `streamType` header (kubelet remotecommand/httpstream.go); served for v5/v4 (spdy.py has the framing).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import shlex
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from bootstrap.cluster import errors, rbac, spdy
from bootstrap.cluster.kubelet.exec import DockerHost, Session, start_attach, start_exec
from bootstrap.cluster.resources import PODS
from bootstrap.cluster.store import Obj, Store

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: [255, channel] half-closes channel
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
CHANNEL = "channel.k8s.io"
BASE64 = "base64.channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, CHANNEL, BASE64)
PORTFORWARD_PROTOCOLS = (V4, V4_BASE64)
_JSON_STATUS = frozenset({V4, V4_BASE64, V5})
SPDY_EXEC_PROTOCOLS = (V5, V4)  # over SPDY, the versions with the Status JSON (remotecommand v4; v5 adds nothing)
STREAM_CREATION_TIMEOUT = 30.0  # kubelet's default for a client to open all of a session's streams
MAX_MESSAGE = 16 * 1024 * 1024
NON_ZERO_EXIT = "NonZeroExitCode"


# ----- the channel protocol -----


@dataclass(frozen=True)
class Channels:
    """One upgraded WebSocket and its negotiated channel protocol."""

    ws: web.WebSocketResponse
    protocol: str

    @property
    def base64(self) -> bool:
        return "base64" in self.protocol

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        if self.base64:
            await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes((channel,)) + data)

    def decode(self, msg: Any) -> tuple[int, bytes] | None:
        """(channel, data) of a received message; None for an empty or malformed one (ignored, as wsstream does)."""
        raw: bytes = msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
        if not raw:
            return None
        if self.base64:
            try:
                return raw[0] - ord("0"), base64.b64decode(raw[1:])
            except ValueError:
                return None
        return raw[0], raw[1:]


def _upgrade(request: web.Request, protocols: tuple[str, ...]) -> web.WebSocketResponse:
    return web.WebSocketResponse(protocols=protocols, autoping=True, heartbeat=None, max_msg_size=MAX_MESSAGE)


def _status_json(exit_code: int | None, command: list[str], failure: str | None) -> dict[str, Any]:
    """The Status of remotecommand/exec.go ServeExec, as metav1.Status marshals it (empty fields omitted)."""
    if failure is not None:
        return {"metadata": {}, "status": "Failure", "message": failure, "reason": "InternalError", "code": 500}
    if not exit_code:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (f"command terminated with non-zero exit code: command '{shlex.join(command)}' exited with {exit_code}"),
        "reason": NON_ZERO_EXIT,
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


# ----- the request: checks before the upgrade -----


@dataclass(frozen=True)
class StreamOptions:
    """PodExecOptions / PodAttachOptions from the query."""

    container: str
    container_id: str
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    command: list[str]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _container_id(pod: Obj, container: str) -> str:
    """The running container's Docker id, as the kubelet finds it (kubelet findContainer: running containers only)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container and "running" in (status.get("state") or {}) and status.get("containerID"):
            return str(status["containerID"]).removeprefix("docker://")
    raise errors.ApiError(500, "InternalError", f'container not found ("{container}")')


def pod_container(pod: Obj, requested: str | None) -> str:
    """streamLocation's container choice: the one named, or the pod's only container."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    inits = [c["name"] for c in spec.get("initContainers") or []]
    ephemerals = [c["name"] for c in spec.get("ephemeralContainers") or []]
    if not requested:
        if len(names) == 1:
            return str(names[0])
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        raise errors.bad_request(message)
    if requested not in names + inits + ephemerals:
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def _stream_options(request: web.Request, pod: Obj, *, exec_: bool) -> StreamOptions:
    q = request.query
    name = pod["metadata"]["name"]
    container = pod_container(pod, q.get("container"))
    command = q.getall("command", [])
    if exec_ and not command:
        raise errors.bad_request("you must specify at least 1 command")
    stdin, stdout, stderr, tty = (
        _flag(request, "stdin"),
        _flag(request, "stdout"),
        _flag(request, "stderr"),
        _flag(request, "tty"),
    )
    if not (stdin or stdout or stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if not (pod.get("spec") or {}).get("nodeName"):
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    if tty:
        stderr = False  # remotecommand.NewOptions: "Access to exec with tty and stderr is not supported"
    return StreamOptions(container, _container_id(pod, container), tty, stdin, stdout, stderr, list(command))


# ----- exec and attach sessions -----


Emit = Callable[[int, bytes], Awaitable[None]]


async def _run_session(
    session: Session, opts: StreamOptions, emit: Emit, inputs: AsyncIterator[tuple[int, bytes]]
) -> tuple[int | None, bool]:
    """Pump the session both ways until its output ends (→ (exit code, True)) or the client leaves (→ (None, False)).

    `emit(channel, data)` sends output; `inputs` yields the client's (STDIN, data), (RESIZE, json) and
    (CLOSE, [STDIN]) until it is gone."""

    async def output() -> None:
        async for stream, data in session.output():
            channel = STDERR if stream == 2 else STDOUT
            if (opts.stdout if channel == STDOUT else opts.stderr) or opts.tty:
                await emit(channel, data)

    async def client() -> None:
        async for channel, data in inputs:
            if channel == STDIN and opts.stdin:
                await session.write(data)
            elif channel == RESIZE and opts.tty:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    size = json.loads(data)
                    await session.resize(int(size["Width"]), int(size["Height"]))
            elif channel == CLOSE and data[:1] == bytes((STDIN,)):
                session.close_stdin()

    out_task = asyncio.create_task(output())
    in_task = asyncio.create_task(client())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        in_task.cancel()
        if not out_task.done():
            out_task.cancel()
        await asyncio.gather(in_task, out_task, return_exceptions=True)
    if out_task.cancelled() or out_task.exception() is not None:
        return None, False
    return await session.exit_code(), True


async def _start(start: Callable[[], Awaitable[Session]]) -> tuple[Session | None, str | None]:
    try:
        return await start(), None
    except errors.ApiError as err:
        return None, f"error executing command in container: {err.message}"


async def _ws_inputs(channels: Channels) -> AsyncIterator[tuple[int, bytes]]:
    async for msg in channels.ws:
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            continue
        decoded = channels.decode(msg)
        if decoded is None:
            continue
        if decoded[0] == CLOSE and channels.protocol != V5:
            continue  # the CLOSE signal is v5's
        yield decoded


async def _serve(
    request: web.Request,
    opts: StreamOptions,
    start: Callable[[], Awaitable[Session]],
    *,
    exec_: bool,
) -> web.StreamResponse:
    ws = _upgrade(request, EXEC_PROTOCOLS)
    await ws.prepare(request)
    channels = Channels(ws, ws.ws_protocol or "")
    exit_code: int | None = None
    session, failure = await _start(start)
    finished = session is None
    if session is not None:
        try:
            first = STDOUT if opts.stdout else STDERR if opts.stderr else ERROR
            await channels.send(first, b"")
            exit_code, finished = await _run_session(session, opts, channels.send, _ws_inputs(channels))
        finally:
            session.close()
    if finished and not ws.closed:
        status = _status_json(exit_code if exec_ else 0, opts.command, failure)
        if channels.protocol in _JSON_STATUS:
            await channels.send(ERROR, json.dumps(status, separators=(",", ":")).encode())
        elif status["status"] != "Success":
            await channels.send(ERROR, str(status["message"]).encode())
    await ws.close()
    return ws


# ----- exec and attach over SPDY (kubectl with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, older clients) -----


async def _serve_spdy(
    request: web.Request,
    opts: StreamOptions,
    start: Callable[[], Awaitable[Session]],
    *,
    exec_: bool,
) -> web.StreamResponse:
    """kubelet's remotecommand over SPDY (cri/streaming/remotecommand/httpstream.go): the client opens one stream
    per channel, named by its `streamType` header (error, stdin, stdout, stderr, resize); v4/v5 end with the
    Status JSON on the error stream, then every stream is closed (FIN) and the session goes away."""
    offered = spdy.offered_protocols(request)
    chosen = next((p for p in offered if p in SPDY_EXEC_PROTOCOLS), None)
    if chosen is None:
        raise errors.ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server supports {list(SPDY_EXEC_PROTOCOLS)}",
        )
    expected = {"error"} | {name for name, on in (("stdin", opts.stdin), ("stdout", opts.stdout), ("stderr", opts.stderr)) if on}
    if opts.tty:
        expected.add("resize")
    conn = spdy.hijack(request, chosen)
    framer = spdy.Framer()
    lock = asyncio.Lock()
    streams: dict[str, int] = {}
    early: list[tuple[int, bytes]] = []  # stdin that arrived before every stream did

    async def send(encode: Callable[[], bytes]) -> None:
        async with lock:
            await conn.send(encode())

    async def handle(frame: spdy.Frame) -> list[tuple[int, bytes]]:
        """Answer control frames; the client's channel input carried by `frame`."""
        if frame.kind == spdy.SYN_STREAM:
            kind = (frame.headers.get("streamtype") or [""])[0]
            if kind in expected and kind not in streams:
                streams[kind] = frame.stream_id
                await send(functools.partial(framer.syn_reply, frame.stream_id))
            else:
                await send(functools.partial(framer.rst_stream, frame.stream_id, spdy.REFUSED_STREAM))
        elif frame.kind == spdy.PING:
            await send(functools.partial(framer.ping, frame.value))
        elif frame.kind == 0:
            out: list[tuple[int, bytes]] = []
            if frame.stream_id == streams.get("stdin"):
                if frame.data:
                    out.append((STDIN, frame.data))
                if frame.fin:
                    out.append((CLOSE, bytes((STDIN,))))
            elif frame.stream_id == streams.get("resize") and frame.data:
                out.append((RESIZE, frame.data))
            return out
        return []

    async def inputs() -> AsyncIterator[tuple[int, bytes]]:
        for item in early:
            yield item
        resize = b""
        while (data := await conn.received.get()) is not None:
            for frame in framer.feed(data):
                if frame.kind == spdy.GOAWAY:
                    return
                for channel, payload in await handle(frame):
                    if channel != RESIZE:
                        yield channel, payload
                        continue
                    resize += payload  # a stream of JSON objects (json.Encoder on the client)
                    while resize.strip():
                        try:
                            _, end = json.JSONDecoder().raw_decode(resize.decode())
                        except ValueError:
                            break
                        yield RESIZE, resize[:end]
                        resize = resize[end:].lstrip()

    async def emit(channel: int, data: bytes) -> None:
        sid = streams.get({STDOUT: "stdout", STDERR: "stderr", ERROR: "error"}[channel])
        if sid is not None:
            for offset in range(0, max(len(data), 1), spdy.MAX_DATA):
                await send(functools.partial(framer.data, sid, data[offset : offset + spdy.MAX_DATA]))

    try:
        deadline = asyncio.get_running_loop().time() + STREAM_CREATION_TIMEOUT
        while not expected <= streams.keys():
            data = await asyncio.wait_for(conn.received.get(), max(0.0, deadline - asyncio.get_running_loop().time()))
            if data is None:
                return web.Response()
            for frame in framer.feed(data):
                early.extend(await handle(frame))
        session, failure = await _start(start)
        exit_code, finished = None, session is None
        if session is not None:
            try:
                exit_code, finished = await _run_session(session, opts, emit, inputs())
            finally:
                session.close()
        if finished:
            status = _status_json(exit_code if exec_ else 0, opts.command, failure)
            await emit(ERROR, json.dumps(status, separators=(",", ":")).encode())
            for sid in streams.values():
                await send(functools.partial(framer.data, sid, b"", fin=True))
            await send(functools.partial(framer.goaway, max(streams.values())))
    except (TimeoutError, ConnectionError, spdy.ProtocolError) as exc:
        log.info("exec over SPDY ended: %s", exc)
    finally:
        conn.close()
    return web.Response()  # never sent: the connection left HTTP at the 101


# ----- port-forward over WebSocket (the Python client's) -----


def _ports(request: web.Request) -> list[int]:
    """kubelet's NewV4Options: `ports` (repeated or comma-separated), each 1..65535."""
    values = request.query.getall("ports", [])
    if not values:
        raise errors.bad_request('query parameter "ports" is required')
    ports = []
    for value in values:
        if not value:
            raise errors.bad_request('query parameter "ports" cannot be empty')
        for part in value.split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise errors.bad_request(f'unable to parse "{value}" as a port')
            ports.append(int(part))
    return ports


async def _forward_ws(request: web.Request, pod: Obj, ports: list[int]) -> web.StreamResponse:
    ws = _upgrade(request, PORTFORWARD_PROTOCOLS)
    await ws.prepare(request)
    channels = Channels(ws, ws.ws_protocol or "")
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    writers: dict[int, asyncio.StreamWriter] = {}
    pumps: list[asyncio.Task[None]] = []

    async def pump(index: int, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(64 * 1024):
                await channels.send(2 * index, chunk)

    for index, port in enumerate(ports):
        head = struct.pack("<H", port)
        await channels.send(2 * index, head)
        await channels.send(2 * index + 1, head)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            message = f"error forwarding port {port} to pod {name}, uid {uid}: {exc}"
            await channels.send(2 * index + 1, message.encode())
            continue
        writers[index] = writer
        pumps.append(asyncio.create_task(pump(index, reader)))

    async def close_when_done() -> None:
        # kubelet: each port's PortForward returns when the pod's side ends; when all did, the connection closes.
        await asyncio.gather(*pumps, return_exceptions=True)
        await ws.close()

    closer = asyncio.create_task(close_when_done())
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            decoded = channels.decode(msg)
            if decoded is None:
                continue
            channel, data = decoded
            target = writers.get(channel // 2) if channel % 2 == 0 else None
            if target is not None and data:
                target.write(data)
                await target.drain()
    finally:
        for task in pumps:
            task.cancel()
        for writer in writers.values():
            writer.close()
        await asyncio.gather(*pumps, return_exceptions=True)
        await closer
    return ws


# ----- routes -----


class Streaming:
    """The handlers of pods/{exec,attach,portforward}; `host` is the kubelet (None: no kubelet runs)."""

    def __init__(self, store: Store, host: DockerHost | None) -> None:
        self.store = store
        self.host = host

    def _pod(self, request: web.Request, subresource: str) -> Obj:
        if request.method == "GET" and "user" in request:
            # AuthorizePodWebsocketUpgradeCreatePermission: a WebSocket GET needs `create` as the SPDY POST does.
            attrs = rbac.attributes(request["user"], "POST", request.path, request.query)
            allowed, reason = rbac.authorize(self.store, attrs)
            if not allowed:
                raise rbac.forbidden(attrs, reason)
        pod = self.store.get(PODS, request.match_info["namespace"], request.match_info["name"])
        if self.host is None:
            raise errors.ApiError(503, "ServiceUnavailable", "no kubelet runs in this cluster (CLUSTER_NO_WORKLOADS=1)")
        return pod

    @staticmethod
    def _transport(request: web.Request) -> Callable[..., Awaitable[web.StreamResponse]]:
        """WebSocket (kubectl 1.30+, the Python clients) or SPDY (kubectl's fallback); anything else is refused."""
        if request.method not in ("GET", "POST"):
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return _serve
        if spdy.is_spdy_upgrade(request):
            return _serve_spdy
        raise errors.bad_request("Upgrade request required")  # kubelet's streaming server, for a plain request

    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request, "exec")
        opts = _stream_options(request, pod, exec_=True)
        serve = self._transport(request)
        host = self.host
        assert host is not None
        return await serve(
            request,
            opts,
            lambda: start_exec(
                host, opts.container_id, opts.command, stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty
            ),
            exec_=True,
        )

    async def attach(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request, "attach")
        opts = _stream_options(request, pod, exec_=False)
        container = next(
            c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []) if c["name"] == opts.container
        )
        serve = self._transport(request)
        host = self.host
        assert host is not None
        tty = bool(container.get("tty"))  # Docker frames the container's streams by its own TTY setting
        stdin = opts.stdin and bool(container.get("stdin"))
        return await serve(
            request,
            opts,
            lambda: start_attach(host, opts.container_id, stdin=stdin, stdout=opts.stdout, stderr=opts.stderr, tty=tty),
            exec_=False,
        )

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request, "portforward")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            if not any(p.startswith("SPDY/") for p in protocols):
                return await _forward_ws(request, pod, _ports(request))
        from bootstrap.cluster import portforward  # SPDY (kubectl's), tunnelled or plain

        return await portforward.serve(request, pod)


def register(app: web.Application, store: Store, host: DockerHost | None) -> None:
    """Add the routes; call before the catch-all resource routes, which they must precede."""
    streaming = Streaming(store, host)
    base = "/api/v1/namespaces/{namespace}/pods/{name}/"
    app.router.add_route("*", base + "exec", streaming.exec)
    app.router.add_route("*", base + "attach", streaming.attach)
    app.router.add_route("*", base + "portforward", streaming.portforward)
