"""OpenID Connect issuers as Entra ID sees them: the local cluster's issuer (AKS's `oidcIssuerProfile.issuerURL`)
and the signing keys of any issuer a federated assertion names.

With `--kubeconfig`, the local cluster is the AKS cluster: its issuer is the `issuer` of its discovery document
(`<server>/.well-known/openid-configuration`, fetched unauthenticated over HTTPS trusting the kubeconfig's
certificate-authority-data), byte for byte the `iss` of its ServiceAccount tokens. Until the document can be read
(the cluster may come up later) the kubeconfig's server URL stands in and discovery is retried in the background.

Keys: `iss` (trailing `/` removed) + `/.well-known/openid-configuration` -> `jwks_uri` -> `keys`, both over HTTPS
(the system's CAs plus the local cluster's CA), cached for `KEY_CACHE_SECONDS` and fetched again for an unknown
`kid`, as Entra ID does. RS256 only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

KEY_CACHE_SECONDS = 60.0
RETRY_SECONDS = 5.0
TIMEOUT = aiohttp.ClientTimeout(total=5)


class IssuerUnreachable(Exception):
    """The issuer's discovery document or key set could not be fetched (Entra ID: AADSTS50166)."""


class UnknownKey(Exception):
    """The assertion's `kid` is not in the issuer's key set, even after fetching it again (AADSTS7000272)."""


class BadSignature(Exception):
    """The signature does not verify with the issuer's key, or the algorithm is not RS256."""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _local_cluster(kubeconfig: Path) -> tuple[str, str | None]:
    """The current context's server URL and CA certificate (PEM) of a kubeconfig."""
    doc = yaml.safe_load(kubeconfig.read_text())
    current = doc.get("current-context") or doc["contexts"][0]["name"]
    context = next(c for c in doc["contexts"] if c["name"] == current)["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == context["cluster"])["cluster"]
    if cluster.get("certificate-authority-data"):
        return cluster["server"], base64.b64decode(cluster["certificate-authority-data"]).decode()
    if cluster.get("certificate-authority"):
        return cluster["server"], Path(cluster["certificate-authority"]).read_text()
    return cluster["server"], None


class OidcIssuers:
    def __init__(self, kubeconfig: Path | None) -> None:
        self.server: str | None = None
        self.discovered: str | None = None  # the local cluster's discovery `issuer`, once read
        self._keys: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._ssl = ssl.create_default_context()
        if kubeconfig is not None:
            self.server, ca_pem = _local_cluster(kubeconfig)
            if ca_pem:
                self._ssl.load_verify_locations(cadata=ca_pem)

    def cluster_issuer(self) -> str | None:
        """The issuer URL of the local cluster (None without a kubeconfig: AKS-shaped fake URLs then)."""
        return self.discovered or self.server

    async def _get_json(self, url: str) -> dict[str, Any]:
        if urllib.parse.urlsplit(url).scheme != "https":
            raise IssuerUnreachable(f"{url} is not an https URL")
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url, ssl=self._ssl) as response:
                if response.status != 200:
                    raise IssuerUnreachable(f"GET {url}: HTTP {response.status}")
                body = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IssuerUnreachable(f"GET {url}: {exc}") from exc
        if not isinstance(body, dict):
            raise IssuerUnreachable(f"GET {url}: not a JSON object")
        return body

    async def discover_cluster(self) -> bool:
        """Read the local cluster's discovery document; True once its issuer is known."""
        if self.server is None or self.discovered:
            return self.discovered is not None
        try:
            doc = await self._get_json(self.server.rstrip("/") + "/.well-known/openid-configuration")
        except IssuerUnreachable as exc:
            log.info("local cluster OIDC discovery not available yet: %s", exc)
            return False
        if isinstance(doc.get("issuer"), str) and doc["issuer"]:
            self.discovered = doc["issuer"]
            log.info("local cluster OIDC issuer: %s", self.discovered)
        return self.discovered is not None

    async def _fetch_keys(self, issuer: str) -> dict[str, dict[str, Any]]:
        config = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerUnreachable(f"{issuer}: no jwks_uri in the discovery document")
        keys = (await self._get_json(jwks_uri)).get("keys") or []
        found = {str(k.get("kid", "")): k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA"}
        self._keys[issuer] = (time.monotonic(), found)
        return found

    async def key(self, issuer: str, kid: str) -> dict[str, Any]:
        cached = self._keys.get(issuer)
        if cached and time.monotonic() - cached[0] < KEY_CACHE_SECONDS and kid in cached[1]:
            return cached[1][kid]
        keys = await self._fetch_keys(issuer)
        if kid not in keys:
            raise UnknownKey(kid)
        return keys[kid]

    async def verify(self, issuer: str, token: str) -> None:
        """Verify `token`'s RS256 signature with a key of `issuer`; raises IssuerUnreachable, UnknownKey or BadSignature."""
        head, body, signature = token.split(".")
        header = json.loads(_unb64(head))
        if header.get("alg") != "RS256":
            raise BadSignature(f"algorithm {header.get('alg')!r} is not RS256")
        jwk = await self.key(issuer, str(header.get("kid", "")))
        numbers = rsa.RSAPublicNumbers(int.from_bytes(_unb64(jwk["e"]), "big"), int.from_bytes(_unb64(jwk["n"]), "big"))
        try:
            numbers.public_key().verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError) as exc:
            raise BadSignature("the signature does not verify") from exc


async def discovery_context(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: read the local cluster's issuer at start, and retry in the background until it is known."""
    issuers: OidcIssuers = app["oidc"]

    async def retry() -> None:
        while not await issuers.discover_cluster():
            await asyncio.sleep(RETRY_SECONDS)

    task: asyncio.Task[None] | None = None
    if issuers.server is not None and not await issuers.discover_cluster():
        task = asyncio.create_task(retry())
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
