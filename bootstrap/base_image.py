"""The local base image: a minimal Debian bookworm with python3, made with debootstrap.

No public registry can be pulled from here, so the Dockerfile's public default
(`python:3.11-slim-bookworm`) is replaced by this image through the
`BASE_IMAGE` build argument. It is built once per machine: the Docker engine's
image store is the cache.

One rootfs per platform: `pipeline-base:bookworm` (amd64, native) and
`pipeline-base:bookworm-arm64` (debootstrap `--arch=arm64`, its second stage
running under QEMU user emulation). `publish` pushes both to the local registry
as `<registry>/pipeline-base:bookworm-<arch>` and puts the OCI image index
`<registry>/pipeline-base:bookworm` over them, so a `FROM` of that name resolves
to the builder's platform.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import docker
import docker.errors

from bootstrap.multiarch import (
    AMD64,
    PLATFORMS,
    Descriptor,
    MultiArchError,
    Platform,
    ensure_index,
    get_json,
    head_manifest,
    index_entries,
)

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv")
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


class BaseImageError(RuntimeError):
    """debootstrap or the import into Docker failed."""


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def platform_tag(tag: str, platform: Platform) -> str:
    """The local tag of `platform`'s base image: `tag` itself for amd64 (as it always was), else `tag-<arch>`."""
    return tag if platform == AMD64 else f"{tag}-{platform.architecture}"


def ensure(client: docker.DockerClient, tag: str, *, work_dir: Path, log_file: Path, platform: Platform = AMD64) -> bool:
    """Build `platform_tag(tag, platform)` unless it exists. True if it was built now."""
    tag = platform_tag(tag, platform)
    if exists(client, tag) and architecture(client, tag) == platform.architecture:
        return False
    work_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        with log_file.open("ab") as log:
            _run(
                [
                    "debootstrap",
                    f"--arch={platform.architecture}",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(rootfs),
                    apt_mirror(),
                ],
                log,
                log_file,
            )
            for cache in ("var/cache/apt", "var/lib/apt/lists"):
                shutil.rmtree(rootfs / cache, ignore_errors=True)
                (rootfs / cache).mkdir(parents=True, exist_ok=True)
            if platform != AMD64:
                _load(rootfs, tag, platform, log, log_file)
                return True
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=log)
            _run(
                ["docker", "import", "--platform", platform.name, "-c", 'CMD ["python3"]', "-", tag],
                log,
                log_file,
                stdin=tar.stdout,
            )
            if tar.wait() != 0:
                raise BaseImageError(f"tar of the base rootfs failed; see {log_file}")
    return True


def architecture(client: docker.DockerClient, tag: str) -> str:
    """The architecture `tag`'s image config declares."""
    return str(client.images.get(tag).attrs.get("Architecture", ""))


def _load(rootfs: Path, tag: str, platform: Platform, log: IO[bytes], log_file: Path) -> None:
    """`docker load` a one-layer image of `rootfs` whose config declares `platform`.

    Not `docker import --platform`: Docker 20.10 writes the host's architecture
    into an imported image's config whatever the flag says, and the index and
    `--platform` builds go by that config.
    """
    layer = rootfs.parent / "layer.tar"
    with layer.open("wb") as out:
        if subprocess.run(["tar", "-C", str(rootfs), "-c", "."], stdout=out, stderr=log).returncode != 0:
            raise BaseImageError(f"tar of the base rootfs failed; see {log_file}")
    digest = hashlib.sha256()
    with layer.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = json.dumps(
        {
            "architecture": platform.architecture,
            "os": platform.os,
            "created": created,
            "config": {"Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
            "history": [{"created": created, "created_by": f"debootstrap --arch={platform.architecture} {SUITE}"}],
        },
        separators=(",", ":"),
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    bundle = rootfs.parent / "image.tar"
    with tarfile.open(bundle, "w") as tar:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer, arcname="layer.tar")
    layer.unlink()
    _run(["docker", "load", "-i", str(bundle)], log, log_file)


def publish(client: docker.DockerClient, tag: str, *, registry: str, log_file: Path) -> list[str]:
    """Push each platform's image and the OCI index `<registry>/<tag>` over them; skip what is there.

    Returns what it pushed now (references), empty when the registry was already current.
    """
    repository, _, version = tag.rpartition(":")
    if not repository:
        repository, version = tag, "latest"
    pushed: list[str] = []
    entries: list[tuple[Platform, Descriptor]] = []
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for platform in PLATFORMS:
        local = client.images.get(platform_tag(tag, platform))
        reference = f"{version}-{platform.architecture}"
        descriptor = _head(registry, repository, reference)
        if descriptor is None or _config_digest(registry, repository, descriptor) != local.id:
            local.tag(f"{registry}/{repository}", reference)
            with log_file.open("ab") as log:
                _run(["docker", "push", f"{registry}/{repository}:{reference}"], log, log_file)
            descriptor = _head(registry, repository, reference)
            if descriptor is None:
                raise BaseImageError(f"{registry}/{repository}:{reference} is not in the registry after its push")
            pushed.append(f"{registry}/{repository}:{reference}")
        entries.append((platform, descriptor))
    try:
        if ensure_index(registry, repository, version, entries):
            pushed.append(f"{registry}/{repository}:{version}")
    except MultiArchError as exc:
        raise BaseImageError(str(exc)) from None
    return pushed


def published(registry: str, tag: str) -> bool:
    """Whether `<registry>/<tag>` is an index listing every platform."""
    repository, _, version = tag.rpartition(":")
    try:
        index = get_json(registry, repository, version, accept="application/vnd.oci.image.index.v1+json")
    except MultiArchError:
        return False
    listed = {(os, arch) for os, arch, _ in index_entries(index)} if index else set()
    return all((p.os, p.architecture) in listed for p in PLATFORMS)


def _head(registry: str, repository: str, reference: str) -> Descriptor | None:
    try:
        return head_manifest(registry, repository, reference)
    except MultiArchError as exc:
        raise BaseImageError(str(exc)) from None


def _config_digest(registry: str, repository: str, descriptor: Descriptor) -> str | None:
    try:
        manifest = get_json(registry, repository, descriptor.digest, accept=descriptor.media_type)
    except MultiArchError:
        return None
    config = manifest.get("config") if manifest else None
    return config.get("digest") if isinstance(config, dict) else None


def apt_mirror() -> str:
    """The Debian mirror this machine's apt already uses, so debootstrap reaches the same place."""
    for path in APT_SOURCES:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        deb822 = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE)
        if deb822:
            return deb822.group(1)
        one_line = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s+\S+", text, re.MULTILINE)
        if one_line:
            return one_line.group(1)
    raise BaseImageError("no Debian mirror found in /etc/apt/sources.list*; debootstrap needs one")


def _run(argv: list[str], log: IO[bytes], log_file: Path, stdin: IO[bytes] | None = None) -> None:
    result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=stdin)
    if result.returncode != 0:
        raise BaseImageError(f"{argv[0]} failed with code {result.returncode}; see {log_file}")
