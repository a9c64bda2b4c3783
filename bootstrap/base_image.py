"""The local base image: a minimal Debian bookworm with python3, made with debootstrap.

No public registry can be pulled from here, so the Dockerfile's public default
(`python:3.11-slim-bookworm`) is replaced by this image through the
`BASE_IMAGE` build argument. It is built once per machine: the Docker engine's
image store is the cache.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

import docker
import docker.errors

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


def ensure(client: docker.DockerClient, tag: str, *, work_dir: Path, log_file: Path) -> bool:
    """Build `tag` unless it exists. True if it was built now."""
    if exists(client, tag):
        return False
    work_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        with log_file.open("ab") as log:
            _run(
                [
                    "debootstrap",
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
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=log)
            _run(["docker", "import", "-c", 'CMD ["python3"]', "-", tag], log, log_file, stdin=tar.stdout)
            if tar.wait() != 0:
                raise BaseImageError(f"tar of the base rootfs failed; see {log_file}")
    return True


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
