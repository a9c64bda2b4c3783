"""The Dockerfile's images built on the local base image, and what must never be in their layers.

For tests/test_sample_worker_image.py and tests/test_pipeline_worker_image.py (and
the wheelhouse for tests/cluster/test_sample_worker_rollout.py). `docker_client`,
`planted_secrets` and `containers` are fixtures: a test module imports them by name.
Before a build, `planted_secrets` plants a fake secret in the build context (a
`config.env` and a `secrets/` file, both gitignored and dockerignored) so the
layer scan proves they cannot leak, not merely that nobody happened to have them
lying around.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound
from docker.models.containers import Container
from docker.models.images import Image
from docker.utils.build import exclude_paths

from tests.helpers import REPO_ROOT, unique_name

# pipeline-base:bookworm is the bootstrap's debootstrap'd base: no registry is reachable here.
BASE_IMAGE = os.environ.get("SAMPLE_WORKER_BASE_IMAGE", "pipeline-base:bookworm")


@dataclass(frozen=True)
class PlantedSecrets:
    """Files written into the build context that must never reach an image layer."""

    names: tuple[str, ...]
    values: tuple[bytes, ...]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as err:
        if os.environ.get("CI"):
            pytest.fail(f"docker daemon unreachable in CI: {err}")
        pytest.skip(f"docker daemon unreachable ({err}); start it with `dockerd --bridge=none --iptables=false &`")
    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        pytest.fail(
            f"base image {BASE_IMAGE} is missing and cannot be pulled here; build it with the bootstrap "
            "(debootstrap + docker import) or point SAMPLE_WORKER_BASE_IMAGE at a local python:3.11-slim"
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def planted_secrets() -> Iterator[PlantedSecrets]:
    """A fake config.env and secrets/ file in the build context, removed afterwards.

    A developer's real config.env is never touched: if one exists it stays
    (and its name is still checked), only the planted secret value is checked then.
    """
    token = uuid.uuid4().hex
    created: list[Path] = []
    config_env = REPO_ROOT / "config.env"
    values = []
    if not config_env.exists():
        value = f"fake-config-secret-{token}"
        config_env.write_text(f"# planted by tests/test_sample_worker_image.py\nTEMPORAL_API_KEY={value}\n")
        created.append(config_env)
        values.append(value.encode())
    # Inside the package the Dockerfile copies wholesale: only .dockerignore keeps this out.
    inner_env = REPO_ROOT / "sample_worker" / "config.env"
    if not inner_env.exists():
        value = f"fake-inner-secret-{token}"
        inner_env.write_text(f"TEMPORAL_API_KEY={value}\n")
        created.append(inner_env)
        values.append(value.encode())
    secrets_dir = REPO_ROOT / "secrets"
    made_dir = not secrets_dir.exists()
    secrets_dir.mkdir(exist_ok=True)
    secret_file = secrets_dir / f"planted-{token}.key"
    file_value = f"fake-secret-file-{token}"
    secret_file.write_text(file_value)
    created.append(secret_file)
    values.append(file_value.encode())
    try:
        yield PlantedSecrets(names=("config.env", secret_file.name), values=tuple(values))
    finally:
        for path in created:
            path.unlink(missing_ok=True)
        if made_dir:
            secrets_dir.rmdir()


def ensure_wheelhouse() -> None:
    """The wheels the Dockerfile installs offline (what `python -m bootstrap wheelhouse` does)."""
    wheelhouse = REPO_ROOT / "wheelhouse"
    if any(wheelhouse.glob("temporalio-*.whl")):
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "-r",
            "sample_worker/requirements.txt",
            "-d",
            "wheelhouse",
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )


@contextlib.contextmanager
def built_image(docker_client: docker.DockerClient, target: str) -> Iterator[Image]:
    """The Dockerfile's `target`, built from the repository on the local base image, removed afterwards."""
    ensure_wheelhouse()
    tag = f"{target}:{unique_name('test')}"
    built, _logs = docker_client.images.build(
        path=str(REPO_ROOT), target=target, tag=tag, buildargs={"BASE_IMAGE": BASE_IMAGE}, rm=True, forcerm=True
    )
    try:
        yield built
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    """Every container a test starts goes here and is removed, whatever happens."""
    started: list[Container] = []
    yield started
    for container in started:
        try:
            container.remove(force=True)
        except DockerException:
            pass


def logs(container: Container) -> str:
    return str(container.logs().decode(errors="replace"))


def image_leaks(archive: Path, *, base_layers: int, secrets: PlantedSecrets, wheel_names: set[str]) -> list[str]:
    """Everything in a saved image that should not be there, as readable findings.

    Base layers may carry Debian's own pip/setuptools wheels and __pycache__;
    the layers this Dockerfile adds must carry none of those.
    """
    findings: list[str] = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for index, layer_name in enumerate(manifest[0]["Layers"]):
            ours = index >= base_layers
            layer_file = outer.extractfile(layer_name)
            assert layer_file is not None, layer_name
            with tarfile.open(fileobj=io.BytesIO(layer_file.read())) as layer:
                for member in layer:
                    name, where = Path(member.name).name, f"{member.name} (layer {index})"
                    if name in secrets.names or name.endswith(".env") or "secrets/" in member.name and ours:
                        findings.append(f"secret-looking file {where}")
                    if name in wheel_names or ours and name.endswith(".whl"):
                        findings.append(f"wheel {where}")
                    if ours and member.name.startswith("app/") and "__pycache__" in member.name:
                        findings.append(f"bytecode cache {where}")
                    if member.isfile():
                        data = layer.extractfile(member).read()  # type: ignore[union-attr]
                        findings += [f"planted secret inside {where}" for value in secrets.values if value in data]
    return findings


def build_context_paths() -> set[str]:
    """What `docker build .` sends the daemon, after .dockerignore."""
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return set(exclude_paths(str(REPO_ROOT), patterns, "Dockerfile"))


def leaks_in(docker_client: docker.DockerClient, image: Image, secrets: PlantedSecrets, work: Path) -> list[str]:
    """`image_leaks` of `image`'s own layers (above the base image's), saved to a tar under `work`."""
    archive = work / "image.tar"
    with archive.open("wb") as out:
        for chunk in image.save(named=False):
            out.write(chunk)
    return image_leaks(
        archive,
        base_layers=len(docker_client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]),
        secrets=secrets,
        wheel_names={p.name for p in (REPO_ROOT / "wheelhouse").glob("*.whl")},
    )


SDK_BASE_IMAGE = "pipeline-python-sdk:local"


def sdk_base_image(client: docker.DockerClient) -> str:
    """A Python image with the Temporal SDK on PATH, as `python:3.11-slim` plus `pip install temporalio` would be.

    For worker fixtures written as users write them (tests/fixtures/sdk_worker): nothing is pulled or
    downloaded here, so it is the Dockerfile's offline `deps` stage (a venv from wheelhouse/) on the
    local base, with the venv first on PATH. Docker's build cache makes a second call cheap.
    """
    ensure_wheelhouse()
    deps = "pipeline-python-sdk-deps:local"
    client.images.build(path=str(REPO_ROOT), target="deps", buildargs={"BASE_IMAGE": BASE_IMAGE}, tag=deps, rm=True)
    dockerfile = f"FROM {deps}\nENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=SDK_BASE_IMAGE, rm=True)
    return SDK_BASE_IMAGE
