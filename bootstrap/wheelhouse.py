"""The host-built wheelhouse that image builds install from, offline.

Builds cannot reach PyPI through the intercepting TLS proxy, so the wheels the
images need are downloaded on the host (which trusts the proxy's CA) into
`wheelhouse/` at the repo root, and the Dockerfile installs them with
`--no-index`. A stamp of the requirement files makes a repeated `up` free.

The same folder also holds the linux/arm64 wheels (CPython 3.11, as in the
bookworm base images), so an arm64 build finds its compiled wheels there; pure
Python wheels serve both platforms.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REQUIREMENT_FILES = ("sample_worker/requirements.txt", "pipeline/requirements.txt")
# pip's arguments for the foreign platforms' wheels (the host's own come from a plain `pip download`).
# Bookworm's glibc is 2.36; pip also accepts the older manylinux tags below each one named here.
FOREIGN_PLATFORMS: tuple[tuple[str, ...], ...] = (
    (
        "--platform=manylinux2014_aarch64",
        "--platform=manylinux_2_17_aarch64",
        "--platform=manylinux_2_28_aarch64",
        "--platform=manylinux_2_36_aarch64",
        "--python-version=3.11",
        "--implementation=cp",
    ),
)


class WheelhouseError(RuntimeError):
    """pip could not download the wheels the images need."""


def ensure(repo_root: Path, *, log_file: Path) -> bool:
    """Download the wheels unless the stamp says they are current. True if it downloaded now."""
    target = repo_root / "wheelhouse"
    requirements = [repo_root / name for name in REQUIREMENT_FILES]
    missing = [str(path) for path in requirements if not path.exists()]
    if missing:
        raise WheelhouseError(f"requirement file missing: {', '.join(missing)}")
    digest = _digest(requirements, extra=repr(FOREIGN_PLATFORMS))
    stamp = target / ".stamp"
    if stamp.exists() and stamp.read_text() == digest:
        return False
    target.mkdir(exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(target)]
    for req in requirements:
        base += ["-r", str(req)]
    with log_file.open("ab") as log:
        for extra in ((), *FOREIGN_PLATFORMS):
            result = subprocess.run([*base, *extra], stdout=log, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                which = " ".join(extra) or "this host"
                raise WheelhouseError(f"pip download ({which}) failed with code {result.returncode}; see {log_file}")
    stamp.write_text(digest)
    return True


def _digest(files: list[Path], *, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()
