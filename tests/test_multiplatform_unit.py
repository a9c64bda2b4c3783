"""Multi-platform builds without a registry: config, render, the image index document, revisions, the ACR token exchange."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import revisions
from pipeline.builders.local import is_multi_platform_build_of, platform_tag, same_platform
from pipeline.config import load_config
from pipeline.config._render import to_dict, to_toml
from pipeline.inputs import app_spec
from pipeline.models import Manifests, PlatformImage, Revision
from pipeline.registry import OCI_INDEX, IndexEntry, RegistryImage, digest_of, image_index, is_loopback
from pipeline.render import render_manifests
from tests.helpers.config import write_config
from tests.helpers.render import sample_render_input, with_app

pytestmark = pytest.mark.unit

AMD, ARM = "sha256:" + "a" * 64, "sha256:" + "b" * 64
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_platforms_default_to_amd64_and_architecture_to_any_node(workdir: Path) -> None:
    write_config(workdir)
    app = load_config(Path("config.toml"), env={}).app("sample-worker")
    assert app.platforms == ("linux/amd64",) and app.architecture == ""


def test_platforms_and_architecture_reach_the_build_spec_and_pipeline_config(workdir: Path) -> None:
    app_key = "apps.sample-worker"
    write_config(workdir, (app_key, "platforms", '["linux/amd64", "linux/arm64/v8"]'), (app_key, "architecture", '"arm64"'))
    config = load_config(Path("config.toml"), env={})
    app = config.app("sample-worker")
    assert app.platforms == ("linux/amd64", "linux/arm64/v8") and app.architecture == "arm64"
    spec = app_spec(config, app)
    assert spec.build is not None and spec.build.platforms == ("linux/amd64", "linux/arm64/v8")
    assert spec.architecture == "arm64"
    shown = to_toml(to_dict(config, app="sample-worker"))
    assert 'platforms = ["linux/amd64", "linux/arm64/v8"]' in shown and 'architecture = "arm64"' in shown


def test_architecture_renders_a_node_selector_and_the_deployment_lists_its_platforms() -> None:
    spec = sample_render_input()
    assert spec.app.build is not None
    spec = with_app(spec, architecture="arm64", build=replace(spec.app.build, platforms=("linux/amd64", "linux/arm64")))
    deployment = next(o for o in render_manifests(spec).objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert deployment["metadata"]["annotations"] == {"pipeline.temporal.io/platforms": "linux/amd64,linux/arm64"}
    plain = next(o for o in render_manifests(sample_render_input()).objects if o["kind"] == "Deployment")
    assert "nodeSelector" not in plain["spec"]["template"]["spec"]


def test_the_image_index_names_every_platform_with_digest_size_media_type_and_platform() -> None:
    entries = [IndexEntry("linux/amd64", AMD, 1234, DOCKER_V2), IndexEntry("linux/arm/v7", ARM, 999, DOCKER_V2)]
    data = image_index(entries)
    assert json.loads(data) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_V2, "digest": AMD, "size": 1234, "platform": {"architecture": "amd64", "os": "linux"}},
            {
                "mediaType": DOCKER_V2,
                "digest": ARM,
                "size": 999,
                "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
            },
        ],
    }
    assert image_index(entries) == data and digest_of(data).startswith("sha256:")  # same images, same digest


def test_an_index_is_reused_only_when_it_holds_exactly_these_platforms_of_this_source() -> None:
    entries = (IndexEntry("linux/amd64", AMD, 1, DOCKER_V2), IndexEntry("linux/arm64", ARM, 1, DOCKER_V2))
    index = RegistryImage("sha256:" + "c" * 64, {"pipeline.source-hash": "h"}, platforms=entries)
    assert is_multi_platform_build_of(index, "h", ["linux/arm64", "linux/amd64"])
    assert not is_multi_platform_build_of(index, "other", ["linux/amd64", "linux/arm64"])
    assert not is_multi_platform_build_of(index, "h", ["linux/amd64"])
    single = RegistryImage(AMD, {"pipeline.source-hash": "h"}, platform="linux/amd64")
    assert not is_multi_platform_build_of(single, "h", ["linux/amd64", "linux/arm64"])
    assert not is_multi_platform_build_of(None, "h", ["linux/amd64", "linux/arm64"])


def test_platform_tags_and_platform_matching() -> None:
    assert platform_tag("src-0123", "linux/arm64") == "src-0123-linux-arm64"
    assert platform_tag("v1", "linux/arm/v7") == "v1-linux-arm-v7"
    assert same_platform("linux/arm64", "linux/arm64/v8") and same_platform("linux/arm64/v8", "linux/arm64")
    assert not same_platform("linux/amd64", "linux/arm64") and not same_platform("linux/arm/v6", "linux/arm/v7")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("localhost:5000", True), ("[::1]:5000", True), ("myacr.azurecr.io", False)],
)
def test_loopback_registries_are_spoken_to_over_plain_http(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_revision_keeps_its_platforms_and_an_old_record_reads_without_them() -> None:
    images = (PlatformImage("linux/amd64", AMD, "t-linux-amd64"), PlatformImage("linux/arm64", ARM, "t-linux-arm64"))
    revision = Revision("r@sha256:" + "c" * 64, "sha256:" + "c" * 64, Manifests(objects=[]), platforms=images)
    assert revisions.from_json(json.loads(json.dumps(asdict(revision)))) == revision
    old: dict[str, Any] = {"image": "r@" + AMD, "build_id": AMD, "manifests": {"objects": []}}
    assert revisions.from_json(old).platforms == ()


def test_status_lists_each_platforms_digest_under_the_index() -> None:
    from pipeline.commands import platform_lines

    assert platform_lines([]) == []
    lines = platform_lines([PlatformImage("linux/amd64", AMD), PlatformImage("linux/arm/v7", ARM)])
    assert lines == ["  index of 2 platforms:", f"    linux/amd64   {AMD}", f"    linux/arm/v7  {ARM}"]


def test_a_failed_foreign_build_pulls_the_engines_own_base_back_under_its_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """The classic image store keeps one platform per tag: an arm64 build that fails leaves the amd64 base restored."""
    from pipeline.builders import local

    pulled: list[tuple[str, str, str]] = []

    class Api:
        def build(self, **kwargs: Any) -> Any:
            yield {"stream": "Step 1/3 : FROM ${BASE_IMAGE} AS deps\n"}
            yield {"stream": "Step 2/3 : FROM scratch\n"}
            yield {"error": "exec format error"}

        def pull(self, repository: str, *, tag: str, platform: str) -> None:
            pulled.append((repository, tag, platform))

    class Client:
        api = Api()

        def info(self) -> dict[str, str]:
            return {"Architecture": "x86_64"}

    monkeypatch.setattr(local, "find_image", lambda *a, **k: None)
    request = local.BuildRequest(
        archive=b"",
        dockerfile="Dockerfile",
        target=None,
        repository="127.0.0.1:5000/app",
        tag="t",
        build_args={"BASE_IMAGE": "127.0.0.1:5000/pipeline-base:bookworm"},
    )
    with pytest.raises(local.BuildError, match="exec format error"):
        local.build_platforms(Client(), request, ["linux/amd64", "linux/arm64"], source_hash="h")  # type: ignore[arg-type]
    assert pulled == [("127.0.0.1:5000/pipeline-base", "bookworm", "linux/amd64")]
