"""Multi-architecture builds on this machine: QEMU user emulation and OCI image indexes.

The Docker engine runs arm64 containers (and arm64 `RUN` steps of a build)
through qemu-user-static once the kernel's binfmt_misc knows the aarch64
interpreter with the F (fix-binary) flag: the kernel opens the interpreter when
it is registered, so it works inside containers that do not have it. Nothing
here runs systemd-binfmt, so the registration is done by hand, from the
package's own /usr/lib/binfmt.d file.

A multi-platform image in the local registry is one OCI image index whose
entries are the per-platform images already pushed there (registry HTTP API v2).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF_DIR = Path("/usr/lib/binfmt.d")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class MultiArchError(RuntimeError):
    """Emulation cannot be set up, or the registry refused an index."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    qemu: str | None  # the binfmt name of its QEMU interpreter (None: runs natively on amd64 hosts)

    @property
    def name(self) -> str:
        return f"{self.os}/{self.architecture}"


AMD64 = Platform("linux", "amd64", None)
ARM64 = Platform("linux", "arm64", "qemu-aarch64")
PLATFORMS = (AMD64, ARM64)


def ensure_emulation(platform: Platform = ARM64) -> bool:
    """Make the kernel run `platform`'s binaries through QEMU (F flag). True if it registered it now."""
    if platform.qemu is None:
        return False
    entry = BINFMT_DIR / platform.qemu
    if not (BINFMT_DIR / "register").exists():
        _mount_binfmt_misc()
    if entry.exists():
        flags = binfmt_flags(platform)
        if "F" not in flags:
            raise MultiArchError(
                f"{entry} is registered without the F (fix-binary) flag (flags {flags!r}); containers cannot use it: "
                f"`echo -1 > {entry}` and run `bootstrap/stack up` again"
            )
        _enable(entry)
        return False
    conf = BINFMT_CONF_DIR / f"{platform.qemu}.conf"
    try:
        line = conf.read_text().strip()
    except FileNotFoundError:
        raise MultiArchError(f"{conf} missing: install qemu-user-static (apt-get install qemu-user-static)") from None
    interpreter = line.split(":")[-2]
    if not Path(interpreter).exists():
        raise MultiArchError(f"{platform.qemu}: interpreter {interpreter} missing; reinstall qemu-user-static")
    try:
        (BINFMT_DIR / "register").write_text(line + "\n")
    except OSError as exc:
        raise MultiArchError(f"cannot register {platform.qemu} in {BINFMT_DIR}/register: {exc}") from None
    if "F" not in binfmt_flags(platform):
        raise MultiArchError(f"{platform.qemu} registered without the F flag; check {conf}")
    return True


def binfmt_flags(platform: Platform = ARM64) -> str:
    """The flags of `platform`'s binfmt_misc entry ('' when it is not registered)."""
    if platform.qemu is None:
        return ""
    try:
        text = (BINFMT_DIR / platform.qemu).read_text()
    except FileNotFoundError:
        return ""
    for row in text.splitlines():
        if row.startswith("flags:"):
            return row.split(":", 1)[1].strip()
    return ""


def _mount_binfmt_misc() -> None:
    result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise MultiArchError(
            f"cannot mount binfmt_misc at {BINFMT_DIR} ({reason[-1] if reason else result.returncode}); "
            "arm64 builds need it (root and a kernel with CONFIG_BINFMT_MISC)"
        )


def _enable(entry: Path) -> None:
    if entry.read_text().splitlines()[0].strip() != "enabled":
        entry.write_text("1")


# ----- the registry side: manifests and the index -----


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


def head_manifest(
    registry: str, repository: str, reference: str, *, accept: tuple[str, ...] = MANIFEST_TYPES
) -> Descriptor | None:
    """The descriptor of `repository:reference` in the registry at `registry` (host:port), or None if absent."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}", method="HEAD", headers={"Accept": ", ".join(accept)}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Descriptor(
                media_type=response.headers["Content-Type"].split(";")[0].strip(),
                digest=response.headers["Docker-Content-Digest"],
                size=int(response.headers["Content-Length"]),
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise MultiArchError(f"registry {registry}: HEAD {repository}:{reference} answered {exc.code}") from None
    except OSError as exc:
        raise MultiArchError(f"registry {registry} unreachable: {exc}") from None


def get_json(registry: str, repository: str, reference: str, *, accept: str) -> dict[str, Any] | None:
    """A manifest (or, with a digest and accept '*/*', a blob such as an image config) as JSON; None if absent."""
    kind = "blobs" if reference.startswith("sha256:") and accept == "*/*" else "manifests"
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/{kind}/{reference}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise MultiArchError(f"registry {registry}: GET {repository}/{kind}/{reference} answered {exc.code}") from None
    except OSError as exc:
        raise MultiArchError(f"registry {registry} unreachable: {exc}") from None


def index_document(entries: list[tuple[Platform, Descriptor]]) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": d.media_type,
                "digest": d.digest,
                "size": d.size,
                "platform": {"architecture": p.architecture, "os": p.os},
            }
            for p, d in entries
        ],
    }


def index_entries(index: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(os, architecture, digest) of each platform an OCI index lists; empty for anything else."""
    if index.get("mediaType") != OCI_INDEX or not isinstance(index.get("manifests"), list):
        return set()
    return {
        (m["platform"].get("os", ""), m["platform"].get("architecture", ""), m.get("digest", ""))
        for m in index["manifests"]
        if isinstance(m, dict) and isinstance(m.get("platform"), dict)
    }


def ensure_index(registry: str, repository: str, tag: str, entries: list[tuple[Platform, Descriptor]]) -> bool:
    """Make `repository:tag` the OCI index of `entries` unless it already is. True if it was pushed now."""
    wanted = index_document(entries)
    current = get_json(registry, repository, tag, accept=OCI_INDEX)
    if current is not None and index_entries(current) == {(p.os, p.architecture, d.digest) for p, d in entries}:
        return False
    body = json.dumps(wanted, separators=(",", ":")).encode()
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        data=body,
        method="PUT",
        headers={"Content-Type": OCI_INDEX},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status not in (200, 201):
                raise MultiArchError(f"registry {registry}: PUT index {repository}:{tag} answered {response.status}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise MultiArchError(f"registry {registry}: PUT index {repository}:{tag} answered {exc.code}: {detail}") from None
    except OSError as exc:
        raise MultiArchError(f"registry {registry} unreachable: {exc}") from None
    return True
