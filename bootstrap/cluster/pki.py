"""The cluster's credentials: a self-signed CA, a serving certificate, a bearer token, the kubeconfig.

Everything is generated once per state directory and kept there (0600), so a
restarted cluster serves the same certificate and accepts the same token, and a
kubeconfig handed out earlier stays valid. Clients verify the server against
the CA (`certificate-authority-data`), never with `insecure-skip-tls-verify`,
which is how a real cluster's kubeconfig works too.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLUSTER_NAME = "local"
USER_NAME = "local-admin"


@dataclass(frozen=True)
class Credentials:
    """Paths of the PEM files and the token the API server needs to start."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    token: str


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable only by its owner (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _generate(pki_dir: Path) -> None:
    """A CA (10 years) and a serving certificate for 127.0.0.1/localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("local-cluster-ca"))
        .issuer_name(_name("local-cluster-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(pki_dir / "ca.crt", ca_cert.public_bytes(pem))
    _write_private(
        pki_dir / "ca.key",
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(pki_dir / "server.crt", cert.public_bytes(pem))
    _write_private(
        pki_dir / "server.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def ensure_credentials(state_dir: Path) -> Credentials:
    """Load the CA, serving certificate and token from `state_dir/pki`, creating them the first time."""
    pki_dir = state_dir / "pki"
    if not (pki_dir / "server.crt").exists() or not (pki_dir / "server.key").exists():
        _generate(pki_dir)
    token_file = pki_dir / "token"
    if not token_file.exists():
        _write_private(token_file, secrets.token_urlsafe(32).encode())
    return Credentials(
        ca_cert=pki_dir / "ca.crt",
        server_cert=pki_dir / "server.crt",
        server_key=pki_dir / "server.key",
        token=token_file.read_text().strip(),
    )


def kubeconfig(*, server: str, ca_pem: bytes, token: str, namespace: str = "default") -> dict[str, object]:
    """A kubeconfig document (as data) with one cluster, one token user and a current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": USER_NAME, "user": {"token": token}}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": USER_NAME, "namespace": namespace}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, *, server: str, credentials: Credentials) -> Path:
    """Write the kubeconfig for `server` (0600: it holds the token)."""
    doc = kubeconfig(server=server, ca_pem=credentials.ca_cert.read_bytes(), token=credentials.token)
    _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path
