"""Build with the local Docker engine and push to a registry it can reach.

This is the builder of the `local` target (and of a developer laptop). The
result is always the pushed image *by digest*, so that what Kubernetes runs
is exactly what was built, whatever later happens to the tag.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.build import exclude_paths

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    BuildError as BuildError,
)
from pipeline.models import BuildSpec
from pipeline.registry import SOURCE_HASH_LABEL, RegistryImage


@dataclass(frozen=True)
class BuildRequest:
    archive: bytes  # the build context as tar.gz (pipeline/source.py packs it)
    dockerfile: str  # relative to the archive's root
    target: str | None
    repository: str  # e.g. "127.0.0.1:5000/sample-worker"
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str  # "sha256:..."

    @property
    def by_digest(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def by_tag(self) -> str:
        return f"{self.repository}:{self.tag}"


def build_and_push(
    client: docker.DockerClient,
    request: BuildRequest,
    *,
    on_progress: Callable[[str], None] = lambda line: None,
) -> PushedImage:
    """Build `request` with the engine behind `client`, push it, and return its registry digest."""
    tail: list[str] = []

    def note(line: str) -> None:
        line = line.rstrip()
        if line:
            tail.append(line)
            del tail[:-30]
            on_progress(line)

    try:
        for chunk in client.api.build(
            fileobj=io.BytesIO(request.archive),
            custom_context=True,
            encoding="gzip",
            dockerfile=request.dockerfile,
            target=request.target,
            tag=f"{request.repository}:{request.tag}",
            buildargs=dict(request.build_args),
            labels=dict(request.labels),
            rm=True,
            forcerm=True,
            decode=True,
        ):
            _raise_on_error(chunk, "build", tail)
            note(str(chunk.get("stream", "")))
        digest = ""
        for chunk in client.api.push(request.repository, tag=request.tag, stream=True, decode=True):
            _raise_on_error(chunk, "push", tail)
            if "status" in chunk:
                note(f"{chunk['status']} {chunk.get('progress', '')}")
            digest = chunk.get("aux", {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise BuildError(
            f"docker engine refused the request for {request.repository}:{request.tag}: {exc.explanation or exc}"
        ) from exc
    if not digest:
        raise BuildError(f"push of {request.repository}:{request.tag} reported no digest; last lines:\n" + "\n".join(tail))
    return PushedImage(request.repository, request.tag, digest)


def _raise_on_error(chunk: dict[str, Any], step: str, tail: list[str]) -> None:
    if "error" in chunk:
        detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
        raise BuildError(f"docker {step} failed: {detail}; last lines:\n" + "\n".join(tail[-15:]))


def context_files(context: Path, *, dockerfile: str) -> list[str]:
    """The build context's regular files the engine would be sent, after .dockerignore, relative and sorted.

    Shared by `source_hash` and the uploaded archive (pipeline/source.py), so what is
    hashed is exactly what is uploaded.
    """
    patterns: list[str] = []
    ignore_file = context / ".dockerignore"
    if ignore_file.exists():
        patterns = [line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    selected = []
    for rel in sorted(exclude_paths(str(context), patterns, dockerfile=dockerfile)):
        path = context / rel
        if path.is_file() and not path.is_symlink():
            selected.append(rel)
    return selected


def source_hash(context: Path, *, dockerfile: str, target: str | None, build_args: Mapping[str, str]) -> str:
    """A content hash of exactly what the engine would be sent (after .dockerignore), and how it is built.

    Two builds with the same hash produce the same image, so the hash both
    names the default tag and tells a retried build that its work is done.
    """
    files = ((rel, (context / rel).read_bytes()) for rel in context_files(context, dockerfile=dockerfile))
    return source_hash_of(files, dockerfile=dockerfile, target=target, build_args=build_args)


def source_hash_of(
    files: Iterable[tuple[str, bytes]], *, dockerfile: str, target: str | None, build_args: Mapping[str, str]
) -> str:
    """`source_hash` of files already read ((relative path, content), in `context_files` order)."""
    h = hashlib.sha256()
    h.update(f"dockerfile={dockerfile}\ntarget={target or ''}\n".encode())
    for key in sorted(build_args):
        h.update(f"arg {key}={build_args[key]}\n".encode())
    for rel, data in files:
        h.update(f"file {rel}\n".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def source_and_tag(spec: BuildSpec, tag: str = "") -> tuple[str, str]:
    """(source hash, tag): the tag defaults to one named after the source, so equal sources share it.

    The hash comes with the request (`spec.source`, set by the CLI): the pipeline worker never reads a context.
    """
    if spec.source is None:
        raise BuildError(
            f"the build of {spec.repository} carries no source (BuildSpec.source): deploy with a CLI that uploads it"
        )
    digest_of_source = spec.source.source_hash
    return digest_of_source, tag or f"src-{digest_of_source[:16]}"


def is_build_of(found: RegistryImage | None, digest_of_source: str) -> bool:
    """True if the registry's image under the tag was built from exactly this source (its label says so)."""
    return found is not None and found.labels.get(SOURCE_HASH_LABEL) == digest_of_source
