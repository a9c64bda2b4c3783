"""A two-platform deployment of target local end to end: build both, push the index, deploy it by digest, verify.

The pipeline worker (a subprocess of this checkout) builds linux/amd64 and linux/arm64 of the sample worker
from the stack's multi-platform base, pushes their OCI image index, and the cluster runs the index by digest
on its amd64 node (`architecture = "amd64"`: a nodeSelector). `pipeline status` then names each platform's digest.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.config._render import to_toml
from pipeline.registry import find_image
from tests.e2e.support import REGISTRY, E2eApp, deployed

pytestmark = pytest.mark.e2e
BASE = f"{REGISTRY}/pipeline-base:bookworm"
PLATFORMS = ["linux/amd64", "linux/arm64"]


def multi_platform_config(app: E2eApp) -> Path:
    data = tomllib.loads(app.config("mp1").read_text())
    settings = data["apps"][app.name]
    settings.update(platforms=PLATFORMS, architecture="amd64")
    settings["build_args"] = {**settings.get("build_args", {}), "BASE_IMAGE": BASE}
    path = app.directory / "config-multiplatform.toml"
    path.write_text(to_toml(data))
    return path


async def test_a_two_platform_image_deploys_by_its_index_and_status_names_each_platform(e2e_app: E2eApp) -> None:
    base = find_image(f"{REGISTRY}/pipeline-base", "bookworm")
    if base is None or sorted(base.architectures) != PLATFORMS:
        pytest.skip(f"{BASE} is not an index of {', '.join(PLATFORMS)}")
    config = multi_platform_config(e2e_app)
    run = await e2e_app.cli("deploy", "--follow", config=config, timeout=1500)
    done = deployed(run, e2e_app)
    assert "an index of linux/amd64, linux/arm64" in run.stdout, run.output
    index = find_image(e2e_app.repository, done.build_id)  # what runs is the index, by its digest
    assert index is not None and index.is_index and sorted(index.architectures) == PLATFORMS
    deployment = e2e_app.deployment()
    template = deployment["spec"]["template"]["spec"]
    assert template["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert template["containers"][0]["image"] == done.image
    assert deployment["metadata"]["annotations"]["pipeline.temporal.io/platforms"] == "linux/amd64,linux/arm64"
    status = await e2e_app.cli("status", config=config)
    assert "index of 2 platforms:" in status.stdout, status.output
    for entry in index.platforms:
        assert entry.platform in status.stdout and entry.digest in status.stdout, status.output
