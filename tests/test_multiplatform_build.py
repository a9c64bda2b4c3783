"""Multi-platform builds of target local through the real build activity, the Docker engine and the stack's registry.

Each platform's image is built by the engine (`platform=`), pushed under `<tag>-<os>-<arch>`, and an OCI
image index naming them is PUT under the tag: the registry must then list both platforms, each image's
config must report its own architecture, and a second build of the same source must reuse the index.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from pipeline import activities
from pipeline.builders.local import same_platform
from pipeline.models import BuildImageInput, BuildSpec, BuiltImage
from pipeline.registry import OCI_INDEX, SOURCE_HASH_LABEL, find_image
from tests.e2e.support import REGISTRY, listening
from tests.helpers.source import ship_spec

pytestmark = pytest.mark.skipif(not listening(REGISTRY), reason=f"no registry at {REGISTRY} (bootstrap/stack up)")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The stack's multi-platform base; MULTIPLATFORM_BASE_IMAGE names another index of it (e.g. a corrected copy).
BASE_INDEX = os.environ.get("MULTIPLATFORM_BASE_IMAGE", f"{REGISTRY}/pipeline-base:bookworm")
PLATFORMS = ("linux/amd64", "linux/arm64")


def _get(path: str, accept: str) -> tuple[dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()), dict(response.headers.items())


def base_is_multi_platform() -> bool:
    name, _, tag = BASE_INDEX.removeprefix(f"{REGISTRY}/").partition(":")
    try:
        index, _ = _get(f"{name}/manifests/{tag}", f"{OCI_INDEX}, application/vnd.docker.distribution.manifest.list.v2+json")
    except OSError:
        return False
    found = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index.get("manifests", []) if "platform" in m}
    return set(PLATFORMS) <= found


def build(request: BuildImageInput) -> BuiltImage:
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    built = env.run(activities.build_image, request)
    assert isinstance(built, BuiltImage)
    return built


def check_index(built: BuiltImage, source_hash: str) -> None:
    """The registry's index under the tag lists every platform; each image's config reports its architecture."""
    name = built.repository.split("/", 1)[1]
    index, headers = _get(f"{name}/manifests/{built.tag}", OCI_INDEX)
    assert headers["Docker-Content-Digest"] == built.digest and index["mediaType"] == OCI_INDEX
    listed = {f"{m['platform']['os']}/{m['platform']['architecture']}": m for m in index["manifests"]}
    assert sorted(listed) == sorted(PLATFORMS)
    assert [(p.platform, p.digest) for p in built.platforms] == [(p, listed[p]["digest"]) for p in PLATFORMS]
    for platform, entry in listed.items():
        manifest, _ = _get(f"{name}/manifests/{entry['digest']}", entry["mediaType"])
        config, _ = _get(f"{name}/blobs/{manifest['config']['digest']}", "*/*")
        assert f"{config['os']}/{config['architecture']}" == platform, f"the {platform} image is {config['architecture']}"
        assert config["config"]["Labels"][SOURCE_HASH_LABEL] == source_hash
    found = find_image(built.repository, built.tag)
    assert found is not None and found.is_index and found.digest == built.digest
    assert found.labels[SOURCE_HASH_LABEL] == source_hash
    assert sorted(found.architectures) == sorted(PLATFORMS)
    assert all(same_platform(reported, p) for p, reported in found.architectures.items()), found.architectures


def multi_platform_input(context: Path, *, target: str, build_args: dict[str, str]) -> BuildImageInput:
    app = f"mp-test-{uuid.uuid4().hex[:8]}"
    spec = BuildSpec(
        dockerfile="Dockerfile", target=target, repository=f"{REGISTRY}/{app}", build_args=build_args, platforms=PLATFORMS
    )
    return BuildImageInput(app=app, target="local", build=ship_spec(spec, context, app=app))


@pytest.fixture
def scratch_context(tmp_path: Path) -> Path:
    """No RUN step: every platform builds without emulation, fast."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text(f"hello {uuid.uuid4().hex}\n")
    return tmp_path


def test_a_two_platform_build_pushes_an_index_of_both_and_reuses_it(scratch_context: Path) -> None:
    request = multi_platform_input(scratch_context, target="", build_args={})
    assert request.build.source is not None
    built = build(request)
    assert not built.reused and built.tag.startswith("src-")
    check_index(built, request.build.source.source_hash)
    again = build(request)
    assert again.reused and again.digest == built.digest
    assert [(p.platform, p.digest) for p in again.platforms] == [(p.platform, p.digest) for p in built.platforms]


@pytest.mark.skipif(not base_is_multi_platform(), reason=f"{BASE_INDEX} is not an index of {', '.join(PLATFORMS)} yet")
def test_the_sample_worker_builds_for_amd64_and_arm64_and_is_reused(tmp_path: Path) -> None:
    request = multi_platform_input(REPO_ROOT, target="sample-worker", build_args={"BASE_IMAGE": BASE_INDEX})
    assert request.build.source is not None
    built = build(request)
    check_index(built, request.build.source.source_hash)
    again = build(request)
    assert again.reused and again.digest == built.digest
