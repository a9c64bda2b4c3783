"""The cluster's credentials: a self-signed CA, a serving certificate, a bearer token, the kubeconfig,
and the ServiceAccount token signing key (`sa.key`, RSA 2048, see tokens.py).

Everything is generated once per state directory and kept there (0600), so a
restarted cluster serves the same certificate and accepts the same token, and a
kubeconfig handed out earlier stays valid. Clients verify the server against
the CA (`certificate-authority-data`), never with `insecure-skip-tls-verify`,
which is how a real cluster's kubeconfig works too.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap import tls
from bootstrap.tls import write_private as _write_private

CLUSTER_NAME = "local"
USER_NAME = "local-admin"


@dataclass(frozen=True)
class Credentials:
    """Paths of the PEM files and the token the API server needs to start."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    token: str


def _generate(pki_dir: Path) -> None:
    """A CA (10 years) and a serving certificate for 127.0.0.1/localhost/kubernetes signed by it."""
    pems = tls.generate(
        ca_name="local-cluster-ca",
        server_name="kube-apiserver",
        dns_names=("localhost", "kubernetes", "kubernetes.default"),
    )
    _write_private(pki_dir / "ca.crt", pems.ca_cert)
    _write_private(pki_dir / "ca.key", pems.ca_key)
    _write_private(pki_dir / "server.crt", pems.server_cert)
    _write_private(pki_dir / "server.key", pems.server_key)


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


def ensure_service_account_key(state_dir: Path) -> Path:
    """`state_dir/pki/sa.key`: the RSA 2048 key ServiceAccount tokens are signed with (PKCS#8 PEM, 0600), made once."""
    path = state_dir / "pki" / "sa.key"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        _write_private(path, pem)
    return path


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
