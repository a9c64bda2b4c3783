"""The stack builds for linux/amd64 and linux/arm64: QEMU user emulation and the multi-platform base image.

`bootstrap/stack up` registers qemu-aarch64 in binfmt_misc (fix-binary flag, so
containers use it), debootstraps one base image per platform and pushes both
to the local registry under one OCI image index.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import REGISTRY

BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def registry_json(path: str, accept: str) -> tuple[dict[str, Any], str]:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()), response.headers["Content-Type"]


def test_qemu_aarch64_is_registered_with_the_fix_binary_flag(stack: None) -> None:
    lines = BINFMT.read_text().splitlines()
    assert lines[0] == "enabled", lines
    flags = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:"))
    assert "F" in flags, f"without F, containers cannot find the interpreter: {lines}"
    interpreter = next(line.split(" ", 1)[1] for line in lines if line.startswith("interpreter "))
    assert Path(interpreter).exists()


def test_the_registrys_base_image_is_an_index_of_amd64_and_arm64(stack: None) -> None:
    index, content_type = registry_json("pipeline-base/manifests/bookworm", INDEX)
    assert content_type.split(";")[0] == INDEX
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]): m for m in index["manifests"]}
    assert set(platforms) == {("linux", "amd64"), ("linux", "arm64")}
    for (_, architecture), entry in platforms.items():
        manifest, _ = registry_json(f"pipeline-base/manifests/{entry['digest']}", entry["mediaType"])
        config, _ = registry_json(f"pipeline-base/blobs/{manifest['config']['digest']}", "*/*")
        assert (config["os"], config["architecture"]) == ("linux", architecture)
        tagged, _ = registry_json(f"pipeline-base/manifests/bookworm-{architecture}", MANIFESTS)
        assert tagged["config"]["digest"] == manifest["config"]["digest"]


def test_an_arm64_container_runs_under_emulation(stack: None) -> None:
    result = subprocess.run(
        ["docker", "run", "--rm", "--network=host", "--platform", "linux/arm64", "pipeline-base:bookworm-arm64", "uname", "-m"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "aarch64"


@pytest.mark.parametrize("architecture", ["amd64", "arm64"])
def test_each_local_base_image_reports_its_architecture(stack: None, architecture: str) -> None:
    tag = "pipeline-base:bookworm" if architecture == "amd64" else "pipeline-base:bookworm-arm64"
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", tag], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"linux/{architecture}"
