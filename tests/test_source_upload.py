"""The build source through the stack's registry (127.0.0.1:5000): upload as a blob, fetch it checked, build from it.

Target local's half of pipeline/source.py: what the CLI does before a deploy
(HEAD, else POST + PUT ?digest=) and what the build activity does with it
(GET, sha256 checked, `docker build` of the archive with the source-hash label).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import docker
import pytest
import requests

from pipeline import source
from pipeline.builders.local import BuildRequest, build_and_push
from pipeline.errors import BuildError
from pipeline.models import BuildSpec
from pipeline.registry import SOURCE_HASH_LABEL, find_image
from tests.e2e.support import REGISTRY, listening
from tests.helpers.source import ship_spec

pytestmark = pytest.mark.skipif(not listening(REGISTRY), reason=f"no registry at {REGISTRY} (bootstrap/stack up)")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text(f"hello {uuid.uuid4().hex}\n")  # a source no earlier run uploaded
    return tmp_path


@pytest.fixture
def repository() -> str:
    return f"{REGISTRY}/source-test-{uuid.uuid4().hex[:8]}"


def test_an_upload_is_seen_by_head_and_a_second_one_sends_nothing(context: Path, repository: str) -> None:
    packed = source.pack(context, dockerfile="Dockerfile", target="", build_args={})
    assert not source.blob_exists(repository, packed.digest)
    location, sent = source.upload_blob(repository, packed)
    assert (location, sent) == (f"{repository}@{packed.digest}", packed.size)
    assert source.blob_exists(repository, packed.digest)
    head = requests.head(f"http://{REGISTRY}/v2/{repository.partition('/')[2]}/blobs/{packed.digest}", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == packed.size
    assert source.upload_blob(repository, source.pack(context, dockerfile="Dockerfile", target="", build_args={})) == (
        location,
        0,
    )


def test_ship_says_what_travelled_in_one_line(context: Path, repository: str) -> None:
    lines: list[str] = []
    spec = ship_spec(BuildSpec(dockerfile="Dockerfile", target="", repository=repository), context, say=lines.append)
    assert spec.source is not None and spec.source.location == f"{repository}@{spec.source.digest}"
    [line] = lines
    assert line.startswith(f"source {spec.source.digest[:19]}… (") and ", 2 files): uploaded " in line, line
    again: list[str] = []
    assert ship_spec(replace(spec, source=None), context, say=again.append).source == spec.source
    assert again == [line.split(": uploaded")[0] + ": already in the registry, 0 bytes uploaded"]


def test_fetch_checks_the_digest(context: Path, repository: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ship_spec(BuildSpec(dockerfile="Dockerfile", target="", repository=repository), context)
    assert spec.source is not None
    data = source.fetch_blob(spec.source)
    assert data == source.pack(context, dockerfile="Dockerfile", target="", build_args={}).archive
    lying = replace(spec.source, location=f"{repository}@sha256:{'0' * 64}")  # the location names another archive
    with pytest.raises(BuildError, match="was not uploaded"):
        source.fetch_blob(lying)
    missing = replace(spec.source, location=f"{repository}-none@{spec.source.digest}")
    with pytest.raises(BuildError, match="is not in"):
        source.fetch_blob(missing)
    real_get = requests.get

    def tampered(url: str, **kwargs: object) -> requests.Response:
        response = real_get(url, **kwargs)  # type: ignore[arg-type]
        response._content = response.content + b"tampered"
        return response

    monkeypatch.setattr(source.requests, "get", tampered)
    with pytest.raises(BuildError, match=f"not {spec.source.digest}: refusing to build it"):
        source.fetch_blob(spec.source)


def test_a_build_from_the_fetched_archive_carries_the_source_hash_label(context: Path, repository: str) -> None:
    spec = ship_spec(BuildSpec(dockerfile="Dockerfile", target="", repository=repository), context)
    assert spec.source is not None
    tag = f"src-{spec.source.source_hash[:16]}"
    client = docker.from_env(timeout=300)
    try:
        pushed = build_and_push(
            client,
            BuildRequest(
                archive=source.fetch_blob(spec.source),
                dockerfile="Dockerfile",
                target=None,
                repository=repository,
                tag=tag,
                labels={SOURCE_HASH_LABEL: spec.source.source_hash},
            ),
        )
    finally:
        client.close()
    found = find_image(repository, tag)
    assert found is not None and found.digest == pushed.digest
    assert found.labels[SOURCE_HASH_LABEL] == spec.source.source_hash
