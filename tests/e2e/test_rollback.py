"""Looking before deploying, and stepping back during a deployment, with the real pipeline.

v1                 verified (the revision to come back to)
render             the manifests as YAML, nothing applied
deploy --dry-run   a replicas change shown, nothing started or changed
deploy --no-build  the build of the current source, deployed with no build step
a slow version     never ready (long progress deadline): while it rolls out, a second
                   `pipeline deploy` is refused in one line, and `pipeline rollback`
                   restores v1, verified polling
v2                 verified; then `pipeline rollback` with none running restores v1 (the one
                   before the current, like `kubectl rollout undo`), and `--to` v2 again
v3                 never ready, terminated with `temporal workflow terminate` mid-rollout:
                   `deploy`, `status` and `history` name the drift; `rollback --to` v2 ends it
reset              `temporal workflow reset` of the last deployment re-runs it: still v2, verified
"""

from __future__ import annotations

import time

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client

from pipeline import revisions
from pipeline.models import DeploymentResult
from pipeline.revisions import RevisionLog
from tests.e2e.support import (
    EXIT_BAD_INPUT,
    EXIT_ROLLED_BACK,
    EXIT_TERMINATED,
    NEVER_READY,
    REPLICAS,
    Deployed,
    E2eApp,
    activity_spans,
    assert_polling,
    deployed,
    failed_workflow_tasks,
    history_of,
    rolling_out,
    temporal,
)
from tests.helpers import eventually

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


# ----- rolling back with no deployment running, and what Temporal's own tools do to a deployment -----


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v2(e2e_app: E2eApp, v1: Deployed) -> Deployed:
    return deployed(await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v2")), e2e_app)


def recorded_revision(app: E2eApp) -> RevisionLog:
    with app.kube_client() as kc:
        return revisions.read(kc, app=app.name, namespace=app.namespace)


async def test_rollback_with_no_deployment_running_restores_the_revision_before_the_current(
    e2e_app: E2eApp, v1: Deployed, v2: Deployed, stack_client: Client, timings: dict[str, float]
) -> None:
    assert [r.image for r in recorded_revision(e2e_app).history[:2]] == [v2.image, v1.image]
    undo = await e2e_app.cli("rollback", e2e_app.name, "--reason", "e2e: undo v2", config=e2e_app.config("v1"))
    undo.expect(0, diagnose=e2e_app.diagnose)
    assert f"Rolling back {e2e_app.name} in local: workflow {e2e_app.workflow_id}" in undo.stdout, undo.output
    assert f"Rolled back to {v1.image}: rollback to the verified revision of" in undo.stderr, undo.output
    assert "e2e: undo v2" in undo.stderr
    timings["`pipeline rollback` with none running -> previous verified"] = undo.seconds
    await assert_polling(stack_client, e2e_app, v1)
    assert [r.image for r in recorded_revision(e2e_app).history[:2]] == [v1.image, v2.image], "undo twice comes back"
    activities = [s.activity for s in activity_spans(await history_of(stack_client, e2e_app, undo))]
    assert activities == ["read_revision", "apply_manifests", "wait_for_rollout", "verify_polling", "record_revision"]
    assert e2e_app.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == v1.image

    # --to an older verified one (by digest prefix), then one that was never verified: one line, exit 2.
    to = await e2e_app.cli("rollback", e2e_app.name, "--to", v2.build_id[7:23], config=e2e_app.config("v1"))
    to.expect(0, diagnose=e2e_app.diagnose)
    assert f"Rolled back to {v2.image}" in to.stderr, to.output
    await assert_polling(stack_client, e2e_app, v2)
    unknown = "127.0.0.1:5000/nothing@sha256:" + "0" * 64
    bad = await e2e_app.cli("rollback", e2e_app.name, "--to", unknown, config=e2e_app.config("v1"))
    assert bad.code == EXIT_BAD_INPUT and bad.stderr.count("\n") == 1, bad.output
    assert f"--to {unknown}: not a verified revision of {e2e_app.name}" in bad.stderr and v1.image in bad.stderr


async def test_a_terminated_deployment_leaves_a_drift_that_status_history_and_deploy_name(
    e2e_app: E2eApp, v2: Deployed, stack_client: Client
) -> None:
    handle = stack_client.get_workflow_handle(e2e_app.workflow_id)
    before = (await handle.describe()).run_id
    broken = e2e_app.config("v3", command=NEVER_READY, rollout={"progress_deadline_seconds": 600})
    args = ("deploy", "--follow")
    started = time.monotonic()
    process = await e2e_app.start(*args, config=broken)
    try:
        await eventually(
            rolling_out(handle, e2e_app, command=NEVER_READY, after_run=before), timeout=120, interval=0.5, what="v3 rolling out"
        )
        await temporal("workflow", "terminate", "--workflow-id", e2e_app.workflow_id, "--reason", "e2e: stopped by hand")
    finally:
        deploy = await e2e_app.finish(process, args, started=started, timeout=60)
    deploy.expect(EXIT_TERMINATED, diagnose=e2e_app.diagnose)
    running = e2e_app.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert running != v2.image
    expected = f"drift: {e2e_app.name} runs {running}, but its last verified revision is {v2.image}"
    assert "Deployment terminated: the deployment workflow was terminated" in deploy.stderr, deploy.output
    assert expected in deploy.stderr, deploy.output

    status = (await e2e_app.cli("status", e2e_app.name, config=e2e_app.config("v1"))).expect(0)
    assert "is terminated" in status.stdout and [line for line in status.output.splitlines() if line.startswith(expected)], (
        status.output
    )

    async def history_names_it() -> None:  # `history` reads Temporal's visibility, which catches up on its own time
        history = (await e2e_app.cli("history", e2e_app.name, config=e2e_app.config("v1"))).expect(0)
        assert "terminated" in history.stdout.splitlines()[1], history.output
        assert expected in history.stderr, history.output

    await eventually(history_names_it, timeout=30, interval=0.5, what="`pipeline history` showing the termination")

    # The drift line's own advice: restore the verified revision; then there is no drift.
    restore = await e2e_app.cli("rollback", e2e_app.name, "--to", v2.image, config=e2e_app.config("v1"))
    restore.expect(0, diagnose=e2e_app.diagnose)
    await assert_polling(stack_client, e2e_app, v2)
    clean = (await e2e_app.cli("status", e2e_app.name, config=e2e_app.config("v1"))).expect(0)
    assert "cluster:  runs the last verified revision" in clean.stdout and "drift" not in clean.output, clean.output


async def test_a_reset_of_a_finished_deployment_re_runs_its_steps_without_harm(
    e2e_app: E2eApp, v2: Deployed, stack_client: Client
) -> None:
    """The Web UI's Reset (here `temporal workflow reset`, the same API) re-runs every step: idempotent, still verified."""
    handle = stack_client.get_workflow_handle(e2e_app.workflow_id)
    before = await handle.describe()
    generation = e2e_app.deployment()["metadata"]["generation"]
    await temporal(
        "workflow", "reset", "--workflow-id", e2e_app.workflow_id, "--run-id", before.run_id,
        "--type", "FirstWorkflowTask", "--reason", "e2e: reset",
    )  # fmt: skip
    after = await handle.describe()
    assert after.run_id != before.run_id, "the reset started no new run"
    result = await stack_client.get_workflow_handle(
        e2e_app.workflow_id, run_id=after.run_id, result_type=DeploymentResult
    ).result()
    assert result.outcome == "rolled_back" and result.restored_image == v2.image, result
    history = await stack_client.get_workflow_handle(e2e_app.workflow_id, run_id=after.run_id).fetch_history()
    assert not failed_workflow_tasks(history), failed_workflow_tasks(history)
    assert e2e_app.deployment()["metadata"]["generation"] == generation, "re-applying the same revision changed the Deployment"
    await assert_polling(stack_client, e2e_app, v2)
