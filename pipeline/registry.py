"""Just enough of the Docker Registry HTTP API v2 to ask "was this exact build already pushed?".

A retried build activity must not build again what is already in the
registry. The question is answered from the registry itself (the source of
truth the cluster pulls from), not from the local engine's cache: the tag's
manifest digest, and the `pipeline.source-hash` label in its image config.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    RegistryError as RegistryError,
)

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)
SOURCE_HASH_LABEL = "pipeline.source-hash"


@dataclass(frozen=True)
class RegistryImage:
    digest: str
    labels: dict[str, str]


def find_image(repository: str, tag: str, *, timeout: float = 10.0) -> RegistryImage | None:
    """The pushed image `repository:tag` with its labels, or None if the registry has no such tag.

    `repository` is `host:port/name` of a registry served over plain HTTP on
    loopback (the local target); other registries are asked by their builders.
    """
    host, _, name = repository.partition("/")
    base = f"http://{host}/v2/{name}"
    try:
        manifest_bytes, headers = _get(f"{base}/manifests/{tag}", accept=MANIFEST_TYPES, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise RegistryError(f"registry {host} answered {exc.code} for {name}:{tag}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryError(f"registry {host} is unreachable: {exc}") from exc
    digest = headers.get("Docker-Content-Digest", "")
    manifest = json.loads(manifest_bytes)
    config_digest = manifest.get("config", {}).get("digest")
    labels: dict[str, str] = {}
    if config_digest:
        try:
            config_bytes, _ = _get(f"{base}/blobs/{config_digest}", accept="*/*", timeout=timeout)
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"registry {host} did not serve the config of {name}:{tag}: {exc}") from exc
        labels = json.loads(config_bytes).get("config", {}).get("Labels") or {}
    if not digest:
        raise RegistryError(f"registry {host} sent no Docker-Content-Digest for {name}:{tag}")
    return RegistryImage(digest=digest, labels=labels)


def _get(url: str, *, accept: str, timeout: float) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read(), dict(response.headers.items())
