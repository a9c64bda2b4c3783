"""SPDY/3.1 framing, as much of it as kubectl's streams need (moby/spdystream, which client-go uses).

kubectl 1.32's port-forward speaks SPDY/3.1 (draft 3.1 of the protocol): over a WebSocket whose
subprotocol is `SPDY/3.1+portforward.k8s.io` (client-go tools/portforward/tunneling_dialer.go:
every binary message carries raw bytes of the SPDY session), or over a plain `Upgrade: SPDY/3.1`.

Frames (moby/spdystream spdy/types.go, read.go, write.go), all big-endian:
- control: `1 | version(15) = 3`, `type(16)`, `flags(8)`, `length(24)`, then the body;
  SYN_STREAM (1) `stream id, associated id, priority<<5, slot, header block`,
  SYN_REPLY (2) `stream id, header block`, RST_STREAM (3) `stream id, status`,
  SETTINGS (4), PING (6) `id`, GOAWAY (7) `last good stream id, status`, HEADERS (8),
  WINDOW_UPDATE (9) `stream id, delta` (spdystream keeps no flow-control window, nor does this);
- data: `0 | stream id(31)`, `flags(8)` (FIN = 1), `length(24)`, data.
A header block is `count(32)` then `len(32) name len(32) value` pairs (names lower-case, several
values joined by NUL), zlib-compressed with the SPDY/3 dictionary below, one compression context per
direction for the whole session, flushed (Z_SYNC_FLUSH) after every block.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass, field

from aiohttp import web

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM = 1, 2, 3
CANCEL, INTERNAL_ERROR = 5, 6
MAX_DATA = 64 * 1024  # bytes per DATA frame this side writes (the format allows 2^24 - 1)

# The SPDY/3 header compression dictionary (spdystream spdy/dictionary.go; 1423 bytes).
HEADER_DICTIONARY = (
    b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04p"
    b"ost\x00\x00\x00\x03put\x00\x00\x00\x06delete\x00\x00\x00\x05trac"
    b"e\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-charset\x00\x00\x00"
    b"\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\ra"
    b"ccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\r"
    b"authorization\x00\x00\x00\rcache-control\x00\x00\x00\nconnection"
    b"\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding"
    b"\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-leng"
    b"th\x00\x00\x00\x10content-location\x00\x00\x00\x0bcontent-md"
    b"5\x00\x00\x00\rcontent-range\x00\x00\x00\x0ccontent-type\x00\x00"
    b"\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect"
    b"\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04h"
    b"ost\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since"
    b"\x00\x00\x00\rif-none-match\x00\x00\x00\x08if-range\x00\x00\x00"
    b"\x13if-unmodified-since\x00\x00\x00\rlast-modified\x00\x00\x00"
    b"\x08location\x00\x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00"
    b"\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorization"
    b"\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretr"
    b"y-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07t"
    b"railer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgra"
    b"de\x00\x00\x00\nuser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03"
    b"via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00"
    b"\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06statu"
    b"s\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HT"
    b"TP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\nset-c"
    b"ookie\x00\x00\x00\nkeep-alive\x00\x00\x00\x06origin100101201202205"
    b"2063003023033043053063074024054064074084094104114124134144154164"
    b"17502504505203 Non-Authoritative Information204 No Content301 Mo"
    b"ved Permanently400 Bad Request401 Unauthorized403 Forbidden404 N"
    b"ot Found500 Internal Server Error501 Not Implemented503 Service "
    b"UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:0"
    b"0:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,ima"
    b"ge/png,image/jpg,image/gif,application/xml,application/xhtml+xml"
    b",text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sd"
    b"chcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


@dataclass
class Frame:
    """One received frame: `kind` is a control type, or 0 for DATA."""

    kind: int
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, list[str]] = field(default_factory=dict)
    value: int = 0  # RST_STREAM/GOAWAY status, PING id, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def _header_block(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        key, val = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(key)), key, struct.pack(">I", len(val)), val]
    return b"".join(out)


def _parse_header_block(block: bytes) -> dict[str, list[str]]:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        offset, headers = 4, {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4 : offset + 4 + size].decode().lower()
            offset += 4 + size
            (size,) = struct.unpack_from(">I", block, offset)
            value = block[offset + 4 : offset + 4 + size].decode()
            offset += 4 + size
            headers[name] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed SPDY header block: {exc}") from None
    return headers


class Framer:
    """Parses the bytes a peer sends into frames (`feed`), and encodes the frames this side sends."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=HEADER_DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        """The complete frames now buffered (a frame may span several WebSocket messages, or share one)."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer, 0)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            flags = second >> 24
            if first & 0x80000000:
                frames.append(self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, body))
            else:
                frames.append(Frame(0, first & 0x7FFFFFFF, flags, body))
        return frames

    def _headers(self, compressed: bytes) -> dict[str, list[str]]:
        try:
            return _parse_header_block(self._inflate.decompress(compressed))
        except zlib.error as exc:
            raise ProtocolError(f"SPDY header block does not decompress: {exc}") from None

    def _control(self, version: int, kind: int, flags: int, body: bytes) -> Frame:
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not supported (only {VERSION})")
        if kind == SYN_STREAM:
            (stream_id,) = struct.unpack_from(">I", body, 0)
            return Frame(kind, stream_id & 0x7FFFFFFF, flags, headers=self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            (stream_id,) = struct.unpack_from(">I", body, 0)
            return Frame(kind, stream_id & 0x7FFFFFFF, flags, headers=self._headers(body[4:]))
        if kind in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
            stream_id, value = struct.unpack_from(">II", body, 0)
            return Frame(kind, stream_id & 0x7FFFFFFF, flags, value=value)
        if kind == PING:
            (ping_id,) = struct.unpack_from(">I", body, 0)
            return Frame(kind, flags=flags, value=ping_id)
        return Frame(kind, flags=flags, data=body)  # SETTINGS and anything newer: passed on, ignored

    @staticmethod
    def _control_frame(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, *, fin: bool = False) -> bytes:
        block = self._deflate.compress(_header_block(headers or {})) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control_frame(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + block)

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control_frame(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control_frame(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    @staticmethod
    def data(stream_id: int, payload: bytes, *, fin: bool = False) -> bytes:
        flags = FLAG_FIN if fin else 0
        return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


# ----- a plain `Upgrade: SPDY/3.1` on the HTTP connection -----


class _Raw(asyncio.Protocol):
    """The connection's protocol once it left HTTP: received bytes go to a queue (None: closed)."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(bytes(data))

    def eof_received(self) -> bool:
        self.queue.put_nowait(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


@dataclass
class RawConnection:
    """A hijacked HTTP connection: `received` yields the peer's bytes (None at the end), `send` writes."""

    transport: asyncio.Transport
    received: asyncio.Queue[bytes | None]

    async def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the SPDY connection is closed")
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()


def hijack(request: web.Request, protocol_version: str) -> RawConnection:
    """Answer 101 Switching Protocols (httpstream/spdy upgrade.go) and take the connection from the HTTP server.

    The connection's protocol is swapped before the 101 is written, so no SPDY byte the client sends after it
    can reach the HTTP parser. The caller must close the connection before its handler returns."""
    transport = request.transport
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        raise ConnectionResetError("the client went away before the upgrade")
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    transport.set_protocol(_Raw(queue))
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        f"X-Stream-Protocol-Version: {protocol_version}\r\n\r\n"
    )
    transport.write(head.encode())
    return RawConnection(transport, queue)


def offered_protocols(request: web.Request) -> list[str]:
    """X-Stream-Protocol-Version values, in the client's order (repeated headers and comma lists)."""
    return [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", []) for p in value.split(",") if p.strip()]


def is_spdy_upgrade(request: web.Request) -> bool:
    return (
        request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")
        and "upgrade" in request.headers.get("Connection", "").lower()
    )
