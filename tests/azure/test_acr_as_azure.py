"""ACR Tasks as Azure really runs them (issue 22 items 3, 5, 6, 7), through the real SDKs and the ARM imitation.

- isolation: a run's FROM sees only its stages, its own registry and the public stand-ins; a host-only image
  fails the run with Docker's `pull access denied ...` line; the builder sends a base-image build argument as
  the registry's copy (what `pipeline bootstrap --azure` puts there), so config.toml's
  `BASE_IMAGE = "pipeline-base:bookworm"` builds on both targets;
- the run log: its last lines and the blob's `Complete` mark come a moment after the run turned terminal; the
  builder's error for a failing build still holds the log's last line;
- TasksOperationsNotAllowed: ACR's 400, and the builder's one line (not retried, no run created);
- throttling: ARM's token buckets (scaled down by 10) answer 429 with Retry-After and the remaining counts;
  20 concurrent builds through them all succeed, with at most 20 ARM reads per build.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from temporalio.exceptions import ApplicationError

from bootstrap.azure_arm import Imitation
from tests.azure.pipeline_support import (
    Heartbeats,
    azure_env,  # noqa: F401  (fixture)
    build_input,
    registry_digest,
)
from tests.azure.test_acr_builder import run_activity
from tests.azure.test_arm_imitation import acr_client, context_archive, fetch_log, schedule_build, wait_for_run
from tests.helpers.azure import ARM_SCOPE

PULL_DENIED = (
    "pull access denied for pipeline-base, repository does not exist or may require 'docker login': "
    "denied: requested access to the resource is denied"
)
pytestmark = pytest.mark.usefixtures("azure_env")
THROTTLE_SCALE = 10  # Azure's figures / 10: 25 reads (2.5 a second), 20 writes (1 a second) per principal


# -- 3. isolation ---------------------------------------------------------------------------------


def test_a_host_only_base_fails_the_run_with_the_agents_line(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    refused = schedule_build(arm, client, context_archive("FROM pipeline-base:bookworm\nRUN true\n"), image="isolation:host")
    done = wait_for_run(arm, client, refused.run_id)
    log = fetch_log(arm, client, refused.run_id)
    assert done.status == "Failed" and PULL_DENIED in log, log
    assert "Container failed during run: build" in log

    missing = schedule_build(arm, client, context_archive(f"FROM {arm.login_server}/no-such-base:1\n"), image="isolation:missing")
    assert wait_for_run(arm, client, missing.run_id).status == "Failed"
    assert f"manifest for {arm.login_server}/no-such-base:1 not found: manifest unknown" in fetch_log(arm, client, missing.run_id)


def test_stages_the_registry_and_public_stand_ins_resolve(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    dockerfile = (
        "FROM python:3.11-slim-bookworm AS public\nRUN python3 -c 'print(\"stand-in-ok\")'\n"
        f"FROM {arm.login_server}/pipeline-base:bookworm AS own\nRUN true\n"
        "FROM public\nRUN echo from-a-stage\n"
    )
    run = schedule_build(arm, client, context_archive(dockerfile), image=f"isolation:ok-{int(time.time())}")
    done = wait_for_run(arm, client, run.run_id, timeout=120)
    log = fetch_log(arm, client, run.run_id)
    assert done.status == "Succeeded", log
    assert "stand-in-ok" in log and "from-a-stage" in log and "pull access denied" not in log


def test_the_builder_sends_a_host_only_base_as_the_registrys_copy(
    arm: Imitation, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level("INFO")
    (tmp_path / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}} AS app\nRUN echo {tmp_path.name}\n")
    request = build_input(arm, context=tmp_path, target="app", build_args={"BASE_IMAGE": "pipeline-base:bookworm"})
    built: Any = run_activity(request, Heartbeats())
    assert built.digest == registry_digest(built.repository, built.tag)
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert f"BASE_IMAGE=pipeline-base:bookworm: the registry's copy {arm.login_server}/pipeline-base:bookworm" in log


# -- 5. the log and its Complete mark ---------------------------------------------------------------


def test_the_logs_last_lines_come_with_the_complete_mark(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    client = acr_client(arm, arm_credential)
    arm.inject(kind="logCompleteDelay", seconds=3)
    archive = context_archive(f"FROM {arm.login_server}/pipeline-base:bookworm\nRUN echo about-to-fail && exit 4\n")
    run = schedule_build(arm, client, archive, image="complete-mark:fails")
    assert wait_for_run(arm, client, run.run_id).status == "Failed"
    link = client.runs.get_log_sas_url(arm.resource_group, arm.registry_name, run.run_id).log_link
    early = requests.get(link, verify=str(arm.ca_bundle), timeout=10)
    assert "x-ms-meta-Complete" not in early.headers  # terminal, and the log not complete yet ...
    assert f"Run ID: {run.run_id} failed after" not in early.text  # ... its last line still to come
    log = fetch_log(arm, client, run.run_id)  # waits for the mark, as az acr does
    assert f"Run ID: {run.run_id} failed after" in log and "about-to-fail" in log
    assert requests.head(link, verify=str(arm.ca_bundle), timeout=10).headers["x-ms-meta-Complete"] == "Failed"


def test_a_failing_builds_error_holds_the_logs_last_line_despite_a_late_mark(arm: Imitation, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS app\nRUN echo step-output && exit 9\n")
    request = build_input(arm, context=tmp_path, target="app")
    arm.inject(kind="logCompleteDelay", seconds=4)
    heartbeats = Heartbeats()
    with pytest.raises(ApplicationError) as raised:
        run_activity(request, heartbeats)
    [run_id] = heartbeats.run_ids()
    message = raised.value.message
    assert raised.value.type == "AcrRunFailed" and "step-output" in message and "non-zero code: 9" in message
    assert message.rstrip().splitlines()[-1].startswith(f"Run ID: {run_id} failed after"), message
    assert any(d.get("line") for d in heartbeats.details if isinstance(d, dict))  # the log streamed into the heartbeats


# -- 6. Tasks not allowed ---------------------------------------------------------------------------


def test_tasks_not_allowed_is_acrs_400_and_one_line_from_the_builder(
    arm: Imitation, arm_credential: ClientSecretCredential, tmp_path: Path
) -> None:
    client = acr_client(arm, arm_credential)
    (tmp_path / "Dockerfile").write_text("FROM scratch AS app\nCOPY Dockerfile /\n")
    request = build_input(arm, context=tmp_path, target="app")
    runs_before = len(list(client.runs.list(arm.resource_group, arm.registry_name)))
    arm.inject(kind="tasksNotAllowed")
    with pytest.raises(HttpResponseError) as raw:
        schedule_build(arm, client, context_archive("FROM scratch\n"), image="tasks:refused")
    assert raw.value.status_code == 400 and raw.value.error is not None
    assert raw.value.error.code == "TasksOperationsNotAllowed"
    assert raw.value.error.message == (
        f"ACR Tasks requests for the registry {arm.registry_name} and {arm.subscription_id} are not permitted. "
        "Please file an Azure support request at http://aka.ms/azuresupport for assistance."
    )
    heartbeats = Heartbeats()
    with pytest.raises(ApplicationError) as raised:
        run_activity(request, heartbeats)
    err = raised.value
    assert err.type == "AcrTasksNotAllowed" and err.non_retryable and "\n" not in err.message
    assert "TasksOperationsNotAllowed" in err.message and "--image" in err.message and "free-trial" in err.message
    assert not heartbeats.run_ids()
    assert len(list(client.runs.list(arm.resource_group, arm.registry_name))) == runs_before  # no run was created


# -- 7. throttling ----------------------------------------------------------------------------------


def test_arm_answers_429_with_retry_after_when_a_bucket_is_empty(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    arm.inject(kind="throttle", scale=THROTTLE_SCALE)
    token = arm_credential.get_token(ARM_SCOPE).token
    url = (
        f"{arm.endpoint}/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
        f"Microsoft.ContainerRegistry/registries/{arm.registry_name}?api-version=2025-11-01"
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.verify = str(arm.ca_bundle)
    remaining: list[int] = []
    refused = None
    for _ in range(40):
        response = session.get(url, timeout=10)
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200
        remaining.append(int(response.headers["x-ms-ratelimit-remaining-subscription-reads"]))
        assert int(response.headers["x-ms-ratelimit-remaining-subscription-global-reads"]) >= remaining[-1]
    assert refused is not None, f"no 429 after {len(remaining)} reads: {remaining}"
    assert remaining[0] == 24 and remaining == sorted(remaining, reverse=True)  # a bucket of 25, one token each
    assert refused.json() == {"error": {"code": "TooManyRequests", "message": "The request is being throttled."}}
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    time.sleep(int(refused.headers["Retry-After"]))
    assert session.get(url, timeout=10).status_code == 200  # refilled
    writes = session.post(url.replace("?", "/listCredentials?"), timeout=10)  # another type: its own bucket
    assert writes.status_code == 200 and writes.headers["x-ms-ratelimit-remaining-subscription-writes"] == "19"


def test_publish_copies_a_host_only_base_into_the_registry_once(arm: Imitation, arm_credential: ClientSecretCredential) -> None:
    """What `pipeline bootstrap --azure` does for config.toml's BASE_IMAGE, with a host-only image of its own name."""
    import docker

    from pipeline.azure import base_image

    name = f"host-only-base-{uuid.uuid4().hex[:8]}:t"
    engine = docker.from_env()
    engine.images.get("pipeline-base:bookworm").tag(*name.split(":"))
    lines: list[str] = []
    try:
        assert base_image.host_only(engine, name) is not None and base_image.host_only(engine, "no-such-image:1") is None
        [first] = base_image.publish(
            [{"BASE_IMAGE": name}, {"OTHER": "python:3.11-slim-bookworm"}], arm.login_server, say=lines.append
        )
        assert first.pushed and first.target == f"{arm.login_server}/{name}"
        [again] = base_image.publish([{"BASE_IMAGE": name}], arm.login_server, say=lines.append)
        assert not again.pushed and lines[-1] == f"base image {name}: already in {arm.login_server}/{name}"
        client = acr_client(arm, arm_credential)
        run = schedule_build(
            arm, client, context_archive(f"FROM {arm.login_server}/{name}\nRUN true\n"), image=f"isolation:{uuid.uuid4().hex[:6]}"
        )
        assert wait_for_run(arm, client, run.run_id).status == "Succeeded", fetch_log(arm, client, run.run_id)
    finally:
        for tag in (name, f"{arm.login_server}/{name}"):
            engine.images.remove(tag, noprune=True)
        engine.close()
