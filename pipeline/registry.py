"""Just enough of the Docker Registry HTTP API v2 to ask "was this exact build already pushed?", and to push an image index.

A retried build activity must not build again what is already in the
registry. The question is answered from the registry itself (the source of
truth the cluster pulls from), not from the local engine's cache: the tag's
manifest digest, and the `pipeline.source-hash` label in its image config
(of every platform's image when the tag holds an image index).

A multi-platform build pushes each platform's image under its own tag, then
an OCI image index naming them (`image_index`, `push_index`) under the tag
itself: that index's digest is what is deployed, and each node pulls its
architecture's image from it. A registry that answers 401 with a Bearer
challenge (ACR) is asked again with the token a `TokenSource` gives (for ACR:
pipeline/azure/registry_token.py); tokens are used, never logged or returned.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    RegistryError as RegistryError,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json")
MANIFEST_TYPES = ", ".join(IMAGE_TYPES + INDEX_TYPES)
SOURCE_HASH_LABEL = "pipeline.source-hash"

# (realm, service, scope) -> a bearer token for that scope (asked only after a 401 with a Bearer challenge).
TokenSource = Callable[[str, str, str], str]


@dataclass(frozen=True)
class IndexEntry:
    """One platform's image as an image index names it."""

    platform: str  # "os/arch[/variant]"
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class RegistryImage:
    digest: str  # of what the tag names: an image manifest, or an image index
    labels: dict[str, str]  # an index: the labels every platform's image carries alike
    platform: str = ""  # an image: its config's "os/arch[/variant]"
    platforms: tuple[IndexEntry, ...] = ()  # an index: its images
    architectures: dict[str, str] = field(default_factory=dict)  # an index: platform -> its image config's platform

    @property
    def is_index(self) -> bool:
        return bool(self.platforms)


def platform_of(os_name: str, architecture: str, variant: str = "") -> str:
    return "/".join(p for p in (os_name, architecture, variant) if p)


def image_index(entries: Sequence[IndexEntry]) -> bytes:
    """The OCI image index naming `entries`, as the exact bytes to push (the same entries give the same digest)."""
    manifests = []
    for entry in entries:
        os_name, _, rest = entry.platform.partition("/")
        architecture, _, variant = rest.partition("/")
        platform = {"architecture": architecture, "os": os_name, **({"variant": variant} if variant else {})}
        manifests.append({"mediaType": entry.media_type, "digest": entry.digest, "size": entry.size, "platform": platform})
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(document, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_entry(
    repository: str, platform: str, digest: str, *, auth: TokenSource | None = None, timeout: float = 10.0
) -> IndexEntry:
    """What an index needs of the pushed image `repository@digest`: its size and media type (asked of the registry)."""
    host, _, name = repository.partition("/")
    body, headers = _call(
        host, "GET", f"/v2/{name}/manifests/{digest}", name=name, accept=MANIFEST_TYPES, auth=auth, timeout=timeout
    )
    if digest_of(body) != digest:
        raise RegistryError(f"registry {host} served a manifest for {name}@{digest} with another digest")
    media_type = json.loads(body).get("mediaType") or headers.get("Content-Type", "").split(";")[0]
    if media_type not in IMAGE_TYPES:
        raise RegistryError(f"{name}@{digest} is a {media_type or 'manifest of no media type'}, not an image manifest")
    return IndexEntry(platform=platform, digest=digest, size=len(body), media_type=media_type)


def push_index(
    repository: str, tag: str, entries: Sequence[IndexEntry], *, auth: TokenSource | None = None, timeout: float = 30.0
) -> str:
    """PUT the image index of `entries` under `repository:tag`; its digest (idempotent: the same entries, the same digest)."""
    host, _, name = repository.partition("/")
    document = image_index(entries)
    _, headers = _call(
        host,
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        name=name,
        data=document,
        content_type=OCI_INDEX,
        auth=auth,
        timeout=timeout,
        push=True,
    )
    digest = digest_of(document)
    answered = headers.get("Docker-Content-Digest", digest)
    if answered != digest:
        raise RegistryError(f"registry {host} stored the index of {name}:{tag} as {answered}, not {digest}")
    return digest


def find_image(repository: str, tag: str, *, timeout: float = 10.0, auth: TokenSource | None = None) -> RegistryImage | None:
    """The pushed image (or image index) `repository:tag` with its labels, or None if the registry has no such tag.

    `repository` is `host:port/name`; a loopback registry is spoken to over plain HTTP (the
    local target), any other over HTTPS with `auth` for its token.
    """
    host, _, name = repository.partition("/")
    try:
        manifest_bytes, headers = _call(
            host, "GET", f"/v2/{name}/manifests/{tag}", name=name, accept=MANIFEST_TYPES, auth=auth, timeout=timeout
        )
    except _NotFound:
        return None
    digest = headers.get("Docker-Content-Digest", "") or digest_of(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        return _index(host, name, tag, digest, manifest, auth=auth, timeout=timeout)
    labels, platform = _config(host, name, f"{name}:{tag}", manifest, auth=auth, timeout=timeout)
    return RegistryImage(digest=digest, labels=labels, platform=platform)


def _index(
    host: str, name: str, tag: str, digest: str, index: dict[str, Any], *, auth: TokenSource | None, timeout: float
) -> RegistryImage:
    """An index's images (attestations, platform "unknown/unknown", left out) and the labels they all carry."""
    entries: list[IndexEntry] = []
    seen: dict[str, str] = {}
    common: dict[str, str] | None = None
    for each in index.get("manifests", []):
        p = each.get("platform") or {}
        platform = platform_of(str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", "")))
        if not platform or "unknown" in platform:
            continue
        entries.append(
            IndexEntry(platform, str(each.get("digest", "")), int(each.get("size", 0)), str(each.get("mediaType", "")))
        )
        body, _ = _call(
            host,
            "GET",
            f"/v2/{name}/manifests/{each.get('digest')}",
            name=name,
            accept=MANIFEST_TYPES,
            auth=auth,
            timeout=timeout,
        )
        labels, seen[platform] = _config(host, name, f"{name}:{tag} ({platform})", json.loads(body), auth=auth, timeout=timeout)
        common = dict(labels) if common is None else {k: v for k, v in common.items() if labels.get(k) == v}
    return RegistryImage(digest=digest, labels=common or {}, platforms=tuple(entries), architectures=seen)


def _config(
    host: str, name: str, what: str, manifest: dict[str, Any], *, auth: TokenSource | None, timeout: float
) -> tuple[dict[str, str], str]:
    """(labels, "os/arch[/variant]") of an image manifest's config."""
    config_digest = manifest.get("config", {}).get("digest")
    if not config_digest:
        return {}, ""
    try:
        config_bytes, _ = _call(
            host, "GET", f"/v2/{name}/blobs/{config_digest}", name=name, accept="*/*", auth=auth, timeout=timeout
        )
    except _NotFound as exc:
        raise RegistryError(f"registry {host} did not serve the config of {what}") from exc
    config = json.loads(config_bytes)
    labels = config.get("config", {}).get("Labels") or {}
    return labels, platform_of(str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant", "")))


class _NotFound(Exception):
    """The registry answered 404."""


def is_loopback(host: str) -> bool:
    """Whether `host` ("host[:port]", "[v6][:port]") is this machine: spoken to over plain HTTP."""
    if host.startswith("[") and "]" in host:
        name = host[1 : host.index("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _call(
    host: str,
    method: str,
    path: str,
    *,
    name: str,
    accept: str = "*/*",
    data: bytes | None = None,
    content_type: str = "",
    auth: TokenSource | None,
    timeout: float,
    push: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """One registry request; a 401 with a Bearer challenge is answered once with `auth`'s token (never logged)."""
    url = f"{'http' if is_loopback(host) else 'https'}://{host}{path}"
    headers = {"Accept": accept, **({"Content-Type": content_type} if content_type else {})}
    bearer = ""
    for attempt in (1, 2):
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        if bearer:  # not sent on to where a blob redirects (ACR's storage takes its own SAS)
            request.add_unredirected_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read(), dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "") if exc.headers else ""
            if exc.code == 404:
                raise _NotFound(path) from exc
            if exc.code == 401 and attempt == 1 and auth is not None and challenge.lower().startswith("bearer "):
                params = dict(_CHALLENGE.findall(challenge))
                scope = f"repository:{name}:{'pull,push' if push else 'pull'}"
                bearer = auth(params.get("realm", ""), params.get("service", host), scope)
                continue
            raise RegistryError(f"registry {host} answered {exc.code} to {method} {path.split('/v2/', 1)[-1]}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"registry {host} is unreachable: {exc}") from exc
    raise RegistryError(f"registry {host} refused the token for {name}")
