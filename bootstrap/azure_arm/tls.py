"""The imitation's TLS: a self-signed CA (`ca.pem`, what clients trust) and a serving certificate for 127.0.0.1/localhost.

Generated once per state directory and kept there, so a restarted imitation
serves a certificate its clients already trust.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bootstrap.tls import generate, write_private


def ensure_certificates(state_dir: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) in `state_dir`, created the first time."""
    ca_pem, server_pem, server_key = state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server.key"
    if ca_pem.exists() and server_pem.exists() and server_key.exists():
        return ca_pem, server_pem, server_key
    pems = generate(ca_name="azure-arm-imitation-ca", server_name="management.azure.com imitation")
    write_private(state_dir / "ca.key", pems.ca_key)
    write_private(server_key, pems.server_key)
    write_private(server_pem, pems.server_cert)
    ca_pem.write_bytes(pems.ca_cert)  # public: clients read it
    return ca_pem, server_pem, server_key


def server_context(server_pem: Path, server_key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server_pem, server_key)
    return context
