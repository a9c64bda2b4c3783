"""Target aks, two platforms: one ACR run per platform (build_platform_image), then the image index (push_image_index).

Through the real activities, azure-mgmt-containerregistry and the ARM imitation, whose runs build on the local
Docker engine and push to the local registry (its login server 127.0.0.1:5000 is anonymous: no token exchange).
A scratch Dockerfile has no RUN step, so both platforms build without emulation.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from bootstrap.azure_arm import Imitation
from pipeline import activities
from pipeline.models import BuildPlatformInput, BuiltImage, PushIndexInput
from pipeline.registry import OCI_INDEX
from tests.azure.pipeline_support import Heartbeats, WorkerKilled, azure_env, build_input  # noqa: F401  (azure_env is a fixture)

pytestmark = pytest.mark.usefixtures("azure_env")
PLATFORMS = ("linux/amd64", "linux/arm64")


def run(fn: object, request: object, heartbeats: Heartbeats, *, resume: object = None) -> BuiltImage:
    env = ActivityEnvironment()
    env.on_heartbeat = heartbeats
    if resume is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=[resume], attempt=2)
    built = env.run(fn, request)  # type: ignore[arg-type]
    assert isinstance(built, BuiltImage)
    return built


def test_one_run_per_platform_then_an_index_of_both(arm: Imitation, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch AS app\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text(f"hello {uuid.uuid4().hex}\n")
    base = build_input(arm, context=tmp_path, target="app", build_args={})
    base = dataclasses.replace(base, build=dataclasses.replace(base.build, platforms=PLATFORMS))
    scheduled = arm.count("Registries_ScheduleRun")
    # At once, as the workflow runs them (one after the other, the engine's cache would hand the second
    # FROM-scratch build the first one's layers: it does not tell platforms apart without a parent image).
    with ThreadPoolExecutor(len(PLATFORMS)) as pool:
        results = pool.map(lambda p: run(activities.build_platform_image, BuildPlatformInput(base, p), Heartbeats()), PLATFORMS)
        built = dict(zip(PLATFORMS, results, strict=True))
    assert arm.count("Registries_ScheduleRun") == scheduled + 2
    assert {b.tag.rsplit("-", 2)[-2] + "/" + b.tag.rsplit("-", 1)[-1] for b in built.values()} == set(PLATFORMS)

    images = tuple(b.platforms[0] for b in built.values())
    index = run(activities.push_image_index, PushIndexInput(base, images), Heartbeats())
    host, _, name = index.repository.partition("/")
    request = urllib.request.Request(f"http://{host}/v2/{name}/manifests/{index.tag}", headers={"Accept": OCI_INDEX})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == index.digest
        document = json.loads(response.read())
    assert {m["digest"]: f"{m['platform']['os']}/{m['platform']['architecture']}" for m in document["manifests"]} == {
        b.digest: p for p, b in built.items()
    }

    again = run(activities.build_platform_image, BuildPlatformInput(base, "linux/arm64"), Heartbeats())
    assert again.reused and again.digest == built["linux/arm64"].digest  # no second run
    assert arm.count("Registries_ScheduleRun") == scheduled + 2


def test_a_retried_platform_build_resumes_its_own_run_and_schedules_no_second(arm: Imitation, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch AS app\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text(f"hello {uuid.uuid4().hex}\n")
    base = build_input(arm, context=tmp_path, target="app", build_args={})
    request = BuildPlatformInput(
        dataclasses.replace(base, build=dataclasses.replace(base.build, platforms=PLATFORMS)), "linux/arm64"
    )
    scheduled = arm.count("Registries_ScheduleRun")
    arm.inject(kind="runDelay", seconds=2)  # the run is still going when the worker "dies"
    first = Heartbeats(stop_after_run_id=True)
    with pytest.raises(WorkerKilled):
        run(activities.build_platform_image, request, first)
    [run_id] = first.run_ids()
    retry = Heartbeats()
    built = run(activities.build_platform_image, request, retry, resume=first.details[-1])
    assert arm.count("Registries_ScheduleRun") == scheduled + 1 and retry.run_ids() == {run_id}
    assert built.tag.endswith("-linux-arm64") and built.platforms[0].platform == "linux/arm64"
