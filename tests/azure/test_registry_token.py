"""The ACR data-plane token exchange (pipeline/azure/registry_token.py) and the registry's answer to a Bearer challenge.

No Azure here: `requests.post` and the Entra ID credential are doubles, and a tiny HTTP registry on loopback
answers 401 with ACR's challenge until it is sent the access token.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.azure import registry_token
from pipeline.errors import PipelineError
from pipeline.registry import IndexEntry, push_index

pytestmark = pytest.mark.unit

ENTRA, REFRESH, ACCESS = "entra-token-" + "e" * 20, "acr-refresh-" + "r" * 20, "acr-access-" + "a" * 20
LOGIN = "myacr.azurecr.io"


class _Token:
    token = ENTRA


class _Credential:
    def get_token(self, *scopes: str) -> _Token:
        assert scopes == (registry_token.ACR_SCOPE,)
        return _Token()


class _Response:
    def __init__(self, status: int, body: dict[str, str]) -> None:
        self.status_code, self._body = status, body

    def json(self) -> dict[str, str]:
        return self._body


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    sent: list[tuple[str, dict[str, str]]] = []

    def post(url: str, *, data: dict[str, str], **_: Any) -> _Response:
        sent.append((url, dict(data)))
        if url.endswith("/oauth2/exchange"):
            return _Response(200, {"refresh_token": REFRESH})
        return _Response(200, {"access_token": ACCESS})

    monkeypatch.setattr(registry_token.requests, "post", post)
    monkeypatch.setattr(registry_token, "default_credential", _Credential)
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    return sent


def test_the_entra_token_is_exchanged_for_a_refresh_then_an_access_token(posts: list[tuple[str, dict[str, str]]]) -> None:
    token = registry_token.token_source(LOGIN)(f"https://{LOGIN}/oauth2/token", LOGIN, "repository:app:pull,push")
    assert token == ACCESS
    assert posts == [
        (
            f"https://{LOGIN}/oauth2/exchange",
            {"grant_type": "access_token", "service": LOGIN, "access_token": ENTRA, "tenant": "tenant-1"},
        ),
        (
            f"https://{LOGIN}/oauth2/token",
            {"grant_type": "refresh_token", "service": LOGIN, "scope": "repository:app:pull,push", "refresh_token": REFRESH},
        ),
    ]


def test_a_refused_exchange_is_one_line_without_any_token(monkeypatch: pytest.MonkeyPatch, posts: list[Any]) -> None:
    monkeypatch.setattr(registry_token.requests, "post", lambda url, **_: _Response(401, {"error": ENTRA}))
    with pytest.raises(PipelineError) as info:
        registry_token.token_source(LOGIN)(f"https://{LOGIN}/oauth2/token", LOGIN, "repository:app:pull")
    message = str(info.value)
    assert "\n" not in message and "AcrPush" in message
    assert all(secret not in message for secret in (ENTRA, REFRESH, ACCESS))


@pytest.fixture
def challenging_registry() -> Iterator[tuple[str, list[str]]]:
    """A loopback registry that wants `Bearer ACCESS`: (host:port, the Authorization headers it saw)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if auth != f"Bearer {ACCESS}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="https://{LOGIN}/oauth2/token",service="{LOGIN}"')
                self.end_headers()
                return
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_bearer_challenge_is_answered_with_a_push_scoped_token(
    challenging_registry: tuple[str, list[str]], posts: list[tuple[str, dict[str, str]]]
) -> None:
    host, seen = challenging_registry
    entries = [IndexEntry("linux/amd64", "sha256:" + "a" * 64, 10, "application/vnd.oci.image.manifest.v1+json")]
    digest = push_index(f"{host}/app", "v1", entries, auth=registry_token.token_source(LOGIN))
    assert digest.startswith("sha256:")
    assert seen == ["", f"Bearer {ACCESS}"]
    assert posts[1][1]["scope"] == "repository:app:pull,push"


def test_without_a_token_source_a_challenge_is_one_line(challenging_registry: tuple[str, list[str]]) -> None:
    host, _ = challenging_registry
    with pytest.raises(PipelineError, match="answered 401"):
        push_index(f"{host}/app", "v1", [IndexEntry("linux/amd64", "sha256:" + "a" * 64, 10, "x")])
