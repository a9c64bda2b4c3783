"""mTLS in front of a plain-text Temporal dev server: certificates, and a TLS terminator that demands a client's.

    pki = make_pki(tmp_path)                      # CA, server cert for 127.0.0.1/localhost, client cert
    with TlsTerminator(pki, upstream="127.0.0.1:7233") as proxy:
        ...  connect to proxy.address with pki.ca (and pki.client_cert / pki.client_key)

The terminator is a small asyncio TLS server (stdlib `ssl`, ALPN h2 as gRPC
wants) on its own thread and event loop: it requires a client certificate
signed by the CA (`CERT_REQUIRED`), then copies bytes both ways to the
upstream's plain-text port. A client without a certificate fails its handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.tls import new_ca


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files (keys written 0600)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A second CA and a client certificate it signed: a certificate the terminator must refuse.
    stranger_cert: Path
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return new_ca(name, days=2)


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], name: str, *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate; and a stranger's client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("test temporal CA")
    server_cert, server_key = _leaf(ca, "temporal frontend", server=True)
    client_cert, client_key = _leaf(ca, "pipeline client", server=False)
    stranger_cert, stranger_key = _leaf(_ca("someone else's CA"), "stranger", server=False)
    pem = serialization.Encoding.PEM
    return Pki(
        ca=_write(directory / "ca.pem", ca[0].public_bytes(pem)),
        server_cert=_write(directory / "server.pem", server_cert.public_bytes(pem)),
        server_key=_write(directory / "server.key", _key_pem(server_key), private=True),
        client_cert=_write(directory / "client.pem", client_cert.public_bytes(pem)),
        client_key=_write(directory / "client.key", _key_pem(client_key), private=True),
        stranger_cert=_write(directory / "stranger.pem", stranger_cert.public_bytes(pem)),
        stranger_key=_write(directory / "stranger.key", _key_pem(stranger_key), private=True),
    )


class TlsTerminator:
    """A TLS server on 127.0.0.1 (a free port) that demands a client certificate and forwards to `upstream`."""

    def __init__(self, pki: Pki, *, upstream: str) -> None:
        self.pki = pki
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.port = 0
        self.handshakes_refused = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-terminator", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()  # the connections being served, cancelled on exit

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        ctx.load_verify_locations(cafile=self.pki.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate signed by the CA: no connection
        ctx.set_alpn_protocols(["h2"])
        return ctx

    async def _start(self) -> None:
        self._ctx = self._context()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open.add(task)
            task.add_done_callback(self._open.discard)
        try:
            await writer.start_tls(self._ctx, ssl_handshake_timeout=10)  # TLS here, so a refusal can be counted
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError):
            self.handshakes_refused += 1
            writer.close()
            return
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
