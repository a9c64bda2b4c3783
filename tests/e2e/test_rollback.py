"""Looking before deploying, and stepping back during a deployment, with the real pipeline.

v1                 verified (the revision to come back to)
render             the manifests as YAML, nothing applied
deploy --dry-run   a replicas change shown, nothing started or changed
deploy --no-build  the build of the current source, deployed with no build step
a slow version     never ready (long progress deadline): while it rolls out, a second
                   `pipeline deploy` is refused in one line, and `pipeline rollback`
                   restores v1, verified polling
"""

from __future__ import annotations

import time

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client

from tests.conftest import eventually
from tests.e2e.support import (
    EXIT_ROLLED_BACK,
    NEVER_READY,
    REPLICAS,
    Deployed,
    E2eApp,
    activity_spans,
    assert_polling,
    deployed,
    history_of,
    rolling_out,
)

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(e2e_app: E2eApp) -> Deployed:
    return deployed(await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v1")), e2e_app)


async def test_render_prints_the_manifests_as_yaml(e2e_app: E2eApp, v1: Deployed) -> None:
    run = (await e2e_app.cli("render", config=e2e_app.config("v1"))).expect(0)
    objects = [o for o in yaml.safe_load_all(run.stdout) if o]
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "ConfigMap", "Deployment"], run.stdout
    assert run.stdout.startswith("---\napiVersion: v1\nkind: Namespace\n"), "helm-template-like: apiVersion and kind first"
    deployment = objects[-1]
    assert deployment["metadata"] == {**deployment["metadata"], "name": e2e_app.name, "namespace": e2e_app.namespace}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == v1.image, "render uses the registry's build of the current source, by digest"
    assert {"name": "BUILD_ID", "value": v1.build_id} in container["env"]
    live = e2e_app.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert live == v1.image, "what render prints is what the deployment applied"


async def test_dry_run_shows_a_replicas_change_and_starts_nothing(e2e_app: E2eApp, v1: Deployed, stack_client: Client) -> None:
    before = await stack_client.get_workflow_handle(e2e_app.workflow_id).describe()
    generation = e2e_app.deployment()["metadata"]["generation"]
    run = (await e2e_app.cli("deploy", "--dry-run", config=e2e_app.config("v1", replicas=REPLICAS + 1))).expect(0)
    assert f"Deployment {e2e_app.namespace}/{e2e_app.name}: changed" in run.stdout, run.output
    assert f"-  replicas: {REPLICAS}\n" in run.stdout and f"+  replicas: {REPLICAS + 1}\n" in run.stdout, run.output
    assert f"ConfigMap {e2e_app.namespace}/{e2e_app.name}-temporal: unchanged" in run.stdout, run.output
    assert "nothing was changed" in run.stdout
    assert "Web UI: " not in run.stdout, "a dry run starts no workflow"
    after = await stack_client.get_workflow_handle(e2e_app.workflow_id).describe()
    assert after.run_id == before.run_id, "a dry run started a deployment workflow"
    live = e2e_app.deployment()
    assert live["spec"]["replicas"] == REPLICAS and live["metadata"]["generation"] == generation, (
        "a dry run changed the Deployment"
    )


async def test_no_build_deploys_the_current_sources_image_without_a_build_step(
    e2e_app: E2eApp, v1: Deployed, stack_client: Client
) -> None:
    run = (await e2e_app.cli("deploy", "--no-build", config=e2e_app.config("v1"))).expect(0)
    assert f"Deployed {v1.image}: verified" in run.stdout, run.output
    activities = [s.activity for s in activity_spans(await history_of(stack_client, e2e_app, run))]
    assert "build_image" not in activities and "apply_manifests" in activities, activities
    await assert_polling(stack_client, e2e_app, v1)


async def test_rollback_during_a_rollout_restores_the_previous_revision(
    e2e_app: E2eApp, v1: Deployed, stack_client: Client, timings: dict[str, float]
) -> None:
    slow = e2e_app.config("v1", command=NEVER_READY, rollout={"progress_deadline_seconds": 600})
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await e2e_app.start(*args, config=slow)
    handle = stack_client.get_workflow_handle(e2e_app.workflow_id)
    try:
        slow_rolling_out = rolling_out(handle, e2e_app, command=NEVER_READY, after_run=v1.run.run_id)
        await eventually(slow_rolling_out, timeout=60, interval=0.5, what="the slow version rolling out")

        # A second deployment of the same app is refused while this one runs.
        second = await e2e_app.cli("deploy", config=e2e_app.config("v1"))
        assert second.code != 0, second.output
        refusal = second.stderr.strip().splitlines()
        assert len(refusal) == 1 and "already running" in refusal[0], f"not a one-line refusal:\n{second.output}"
        assert e2e_app.workflow_id in refusal[0] and f"pipeline rollback {e2e_app.name}" in refusal[0], refusal[0]

        reason = "e2e: the new version never gets ready"
        rollback = await e2e_app.cli("rollback", e2e_app.name, "--reason", reason, config=e2e_app.config("v1"))
        rollback.expect(0, diagnose=e2e_app.diagnose)
        assert f"Rolled back to {v1.image}: rollback requested: {reason}" in rollback.stderr, rollback.output
        assert rollback.web_ui_url.endswith("/history")
        timings["rollback: `pipeline rollback` -> rolled back and v1 verified"] = rollback.seconds
    finally:
        deploy = await e2e_app.finish(process, args, started=started, timeout=120)
    deploy.expect(EXIT_ROLLED_BACK, diagnose=e2e_app.diagnose)
    assert f"rollback requested: {reason}" in deploy.output
    await assert_polling(stack_client, e2e_app, v1)

    spans = activity_spans(await history_of(stack_client, e2e_app, deploy))
    # The signal cancelled the rollout wait; then v1 was re-applied, rolled out, verified and recorded.
    assert [(s.activity, s.cancel_requested) for s in spans[4:]] == [
        ("wait_for_rollout", True),
        ("apply_manifests", False),
        ("wait_for_rollout", False),
        ("verify_polling", False),
        ("record_revision", False),
    ], spans
    assert all(s.outcome == "completed" for s in spans[5:]), spans
    assert spans[-1].summary.startswith(f"Record {v1.build_id[7:19]}"), spans[-1]
