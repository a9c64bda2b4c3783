"""Build with the local Docker engine and push to a registry it can reach.

This is the builder of the `local` target (and of a developer laptop). The
result is always the pushed image *by digest*, so that what Kubernetes runs
is exactly what was built, whatever later happens to the tag.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.build import exclude_paths

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    BuildError as BuildError,
)
from pipeline.models import BuildSpec, PlatformImage
from pipeline.registry import SOURCE_HASH_LABEL, RegistryImage, TokenSource, find_image, index_entry, push_index


@dataclass(frozen=True)
class BuildRequest:
    archive: bytes  # the build context as tar.gz (pipeline/source.py packs it)
    dockerfile: str  # relative to the archive's root
    target: str | None
    repository: str  # e.g. "127.0.0.1:5000/sample-worker"
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: str = ""  # "" = the engine's own platform (as single-platform builds always were)
    pull: bool = False  # pull every base image afresh: for `platform` (the engine takes a local tag of any platform)
    nocache: bool = False  # build every step again (the engine's cache took another platform's layers)


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
            pull=request.pull,
            nocache=request.nocache,
            **({"platform": request.platform} if request.platform else {}),
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


# `docker info`'s Architecture (the kernel's name) as an OCI architecture.
_ENGINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}


def platform_tag(tag: str, platform: str) -> str:
    """The tag one platform's image of a multi-platform build is pushed under: "src-abc-linux-arm64"."""
    return f"{tag}-{platform.replace('/', '-')}"


def same_platform(reported: str, wanted: str) -> bool:
    """Whether an image config's "os/arch[/variant]" is `wanted` (a config that names no variant matches any)."""
    have, want = reported.split("/"), wanted.split("/")
    return have[:2] == want[:2] and (len(have) < 3 or len(want) < 3 or have[2] == want[2])


def is_multi_platform_build_of(found: RegistryImage | None, digest_of_source: str, platforms: Sequence[str]) -> bool:
    """True if the tag holds an image index of exactly `platforms`, every image of it built from this source."""
    return (
        found is not None
        and found.is_index
        and sorted(e.platform for e in found.platforms) == sorted(platforms)
        and is_build_of(found, digest_of_source)
    )


def is_complete_build_of(found: RegistryImage | None, digest_of_source: str, platforms: Sequence[str]) -> bool:
    """The tag already holds this build: one platform, an image (not an index) of this source; several, their index."""
    if len(platforms) > 1:
        return is_multi_platform_build_of(found, digest_of_source, platforms)
    return found is not None and not found.is_index and is_build_of(found, digest_of_source)


def build_platforms(
    client: docker.DockerClient,
    request: BuildRequest,
    platforms: Sequence[str],
    *,
    source_hash: str,
    on_progress: Callable[[str], None] = lambda line: None,
) -> tuple[str, tuple[PlatformImage, ...]]:
    """Build and push one image per platform (each under `platform_tag`), then their image index under the tag.

    A platform whose image is already under its tag, built from this source, is not built
    again (a retried activity resumes where the last attempt stopped). Returns (index digest, images).
    """
    native = _ENGINE_ARCH.get(str(client.info().get("Architecture", "")), "")
    built: dict[str, PlatformImage] = {}
    bases: set[str] = set()
    ran: list[str] = []  # the architectures the engine built for, in order
    done = False

    def note(line: str) -> None:
        if found := _FROM_STEP.match(line):  # the engine shows FROM unexpanded: "${BASE_IMAGE}"
            bases.add(_ARG.sub(lambda m: request.build_args.get(m[1] or m[2], m[0]), found[1]))
        on_progress(line)

    try:
        _build_each(client, request, platforms, native, built, ran, source_hash=source_hash, on_progress=note)
        done = True
    finally:
        foreign = any(arch != native for arch in ran)
        if bases and foreign and (not done or ran[-1] != native):
            _restore_native_bases(client, bases, native)
    images = tuple(built[p] for p in platforms)
    return push_platform_index(request.repository, request.tag, images), images


_ARG = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_FROM_STEP = re.compile(r"^Step \d+/\d+ : FROM (?:--platform=\S+ )?(\S+)", re.IGNORECASE)


def _restore_native_bases(client: docker.DockerClient, bases: set[str], native: str) -> None:
    """After a failed build for another platform: the engine's own image of each registry base under its local tag again.

    With the classic image store a local tag names one platform's image, and that build re-pointed it; a later
    build that names no platform would start from the other platform's base. Bases only built locally stay.
    """
    for base in sorted(bases):
        if base.lower() == "scratch" or "/" not in base or "$" in base:
            continue
        repository, _, tag = base.rpartition(":") if ":" in base.rsplit("/", 1)[-1] else (base, "", "latest")
        try:
            client.api.pull(repository, tag=tag, platform=f"linux/{native}")
        except docker.errors.DockerException:  # best effort, in a finally: never mask the build's own error
            continue


def _build_each(
    client: docker.DockerClient,
    request: BuildRequest,
    platforms: Sequence[str],
    native: str,
    built: dict[str, PlatformImage],
    ran: list[str],
    *,
    source_hash: str,
    on_progress: Callable[[str], None],
) -> None:
    # The engine's own platform last. With the classic image store a local tag names one platform's image, and
    # the engine starts FROM a local tag whatever its platform: each platform's build pulls its base afresh
    # (re-pointing the tag), so the engine's own build, last, points it back for builds that name no platform.
    for platform in sorted(platforms, key=lambda p: p.split("/")[1] == native):
        tag = platform_tag(request.tag, platform)
        found = find_image(request.repository, tag)
        if found is not None and is_build_of(found, source_hash) and same_platform(found.platform, platform):
            on_progress(f"{request.repository}:{tag} already pushed as {found.digest}; not rebuilding")
            built[platform] = PlatformImage(platform, found.digest, tag)
            continue
        on_progress(f"building {request.repository}:{tag} for {platform}")
        each = replace(request, tag=tag, platform=platform, pull=True)
        ran.append(platform.split("/")[1])
        pushed = build_and_push(client, each, on_progress=on_progress)
        made = find_image(request.repository, pushed.digest)
        if made is not None and made.platform and not same_platform(made.platform, platform):
            # The classic builder's cache does not tell platforms apart where a stage has no parent
            # image (FROM scratch): the first platform's layers came back. Build it again without the cache.
            on_progress(f"{request.repository}:{tag} came out {made.platform}; building {platform} again without the cache")
            pushed = build_and_push(client, replace(each, nocache=True), on_progress=on_progress)
        built[platform] = PlatformImage(platform, pushed.digest, tag)


def push_platform_index(repository: str, tag: str, images: Sequence[PlatformImage], *, auth: TokenSource | None = None) -> str:
    """Check each platform's pushed image is of its platform, then PUT their OCI image index under `tag`; its digest."""
    entries = []
    for image in images:
        found = find_image(repository, image.digest, auth=auth)
        if found is None:
            raise BuildError(f"{repository}@{image.digest} ({image.platform}) is not in the registry; build again")
        if found.platform and not same_platform(found.platform, image.platform):
            raise BuildError(
                f"the {image.platform} image of {repository}:{tag} was built for {found.platform}: "
                "the builder ignored the platform (is its base image published for every platform?)"
            )
        entries.append(index_entry(repository, image.platform, image.digest, auth=auth))
    return push_index(repository, tag, entries, auth=auth)


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
