"""The ACR Tasks builder through the real build activity, the real azure-mgmt-containerregistry and the ARM imitation.

Builds really run on the local Docker engine behind the imitation and push to
the local registry, so a digest here is the registry's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from bootstrap.azure_arm import Imitation
from pipeline import activities, source
from pipeline.builders import acr as acr_builder
from pipeline.registry import SOURCE_HASH_LABEL, find_image
from tests.azure.pipeline_support import (
    Heartbeats,
    WorkerKilled,
    activity_log,
    azure_env,  # noqa: F401  (fixture)
    build_input,
    registry_digest,
)

pytestmark = pytest.mark.usefixtures("azure_env")


def run_activity(request: object, heartbeats: Heartbeats, *, resume: object = None) -> object:
    env = ActivityEnvironment()
    env.on_heartbeat = heartbeats
    if resume is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=[resume], attempt=2)
    return env.run(activities.build_image, request)


@pytest.fixture
def small_context(tmp_path: Path) -> Path:
    """A tiny build context (fast), with a .dockerignore that must keep `secret.txt` out of the upload."""
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS app\nCOPY . /ctx/\nRUN ls /ctx && test ! -e /ctx/secret.txt && echo context-ok\n"
    )
    (tmp_path / "hello.txt").write_text(f"hello {tmp_path.name}\n")
    (tmp_path / "secret.txt").write_text("do-not-upload\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    return tmp_path


def test_sample_worker_built_by_acr_tasks_reports_the_registry_digest(arm: Imitation, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    request = build_input(arm)
    heartbeats = Heartbeats()
    scheduled = arm.count("Registries_ScheduleRun")
    built = run_activity(request, heartbeats)
    assert built.repository == request.build.repository and built.tag.startswith("src-")  # type: ignore[attr-defined]
    assert built.digest == registry_digest(built.repository, built.tag)  # type: ignore[attr-defined]
    assert arm.count("Registries_ScheduleRun") == scheduled + 1
    [run_id] = heartbeats.run_ids()
    log = activity_log(caplog)
    assert f"scheduled ACR run {run_id}" in log and f"Run ID: {run_id} was successful" in log  # the run log reached the logger
    assert any(
        "Successfully pushed image" in str(d.get("line", "")) or d.get("status") == "Succeeded" for d in heartbeats.details
    )
    image = find_image(built.repository, built.tag)  # type: ignore[attr-defined]
    assert image is not None and SOURCE_HASH_LABEL in image.labels

    again = run_activity(request, Heartbeats())  # the same sources again: reused, no second run
    assert again.reused and again.digest == built.digest  # type: ignore[attr-defined]
    assert arm.count("Registries_ScheduleRun") == scheduled + 1


def test_retried_activity_resumes_the_run_instead_of_scheduling_another(arm: Imitation, small_context: Path) -> None:
    request = build_input(arm, context=small_context, target="app")
    scheduled = arm.count("Registries_ScheduleRun")
    arm.inject(kind="runDelay", seconds=2)  # the run is still going when the worker "dies"
    first = Heartbeats(stop_after_run_id=True)
    with pytest.raises(WorkerKilled):
        run_activity(request, first)
    [run_id] = first.run_ids()
    retry = Heartbeats()
    built = run_activity(request, retry, resume=first.details[-1])
    assert arm.count("Registries_ScheduleRun") == scheduled + 1  # exactly one run, resumed
    assert retry.run_ids() == {run_id}
    assert built.digest == registry_digest(built.repository, built.tag)  # type: ignore[attr-defined]


def test_archive_honours_dockerignore_and_labels_the_target_stage(small_context: Path) -> None:
    import io
    import tarfile

    packed = source.pack(small_context, dockerfile="Dockerfile", target="app", build_args={}, label=True)
    with tarfile.open(fileobj=io.BytesIO(packed.archive), mode="r:gz") as tar:
        names = set(tar.getnames())
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert "secret.txt" not in names and {"Dockerfile", "hello.txt"} <= names
    assert dockerfile.endswith(f'LABEL {SOURCE_HASH_LABEL}="{packed.source_hash}"\n')


def test_label_goes_into_the_target_stage_only() -> None:
    text = "FROM base AS deps\nRUN a\n\nFROM base AS app\nRUN b\n\nFROM app AS other\nRUN c"
    labelled = acr_builder.labelled_dockerfile(text, target="app", label_value="h")
    assert labelled == (
        "FROM base AS deps\nRUN a\n\nFROM base AS app\nRUN b\n"
        f'# added by the pipeline (ACR Tasks has no --label)\nLABEL {SOURCE_HASH_LABEL}="h"\n'
        "\nFROM app AS other\nRUN c\n"
    )
    assert acr_builder.labelled_dockerfile(text, target="", label_value="h").endswith(
        'RUN c\n# added by the pipeline (ACR Tasks has no --label)\nLABEL pipeline.source-hash="h"\n'
    )


def test_failing_dockerfile_fails_with_the_log_tail_and_is_not_retried(arm: Imitation, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS app\nRUN echo about-to-break && exit 7\n")
    with pytest.raises(ApplicationError) as raised:
        run_activity(build_input(arm, context=tmp_path, target="app"), Heartbeats())
    err = raised.value
    assert err.type == "AcrRunFailed" and err.non_retryable
    assert "ended Failed" in err.message and "about-to-break" in err.message and "non-zero code: 7" in err.message


def test_throttling_and_server_errors_are_retried_to_success(arm: Imitation, small_context: Path) -> None:
    before = arm.requests()["counts"]
    arm.inject(operation="Blob_Put", status=503, count=1)  # the upload (the CLI's, here build_input's) is retried too
    request = build_input(arm, context=small_context, target="app")
    arm.inject(operation="Registries_ScheduleRun", status=429, count=2, retryAfter=1)
    arm.inject(operation="Runs_Get", status=500, count=2)
    built = run_activity(request, Heartbeats())
    after = arm.requests()["counts"]
    assert built.digest == registry_digest(built.repository, built.tag)  # type: ignore[attr-defined]
    assert after["Registries_ScheduleRun"] - before.get("Registries_ScheduleRun", 0) == 3  # 2 throttled + 1
    assert after["Blob_Put"] - before.get("Blob_Put", 0) == 2
    assert not arm.requests()["pending"]["http"]  # every injected fault was met and retried past
