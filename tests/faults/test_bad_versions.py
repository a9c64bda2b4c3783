"""Versions that cannot work are recognised with the right reason and rolled back automatically (issue 7, item 4).

One app, v1 deployed and verified first; then, each from v1:

    unpullable   `--image` names a digest the registry does not have (a typo, a garbage-collected
                 build; the CLI keeps a digest reference as given): the pull fails (ErrImagePull,
                 then ImagePullBackOff); the rollout wait fails fast on the first
    never ready  the container runs but never answers its readiness probe: the Deployment's
                 progress deadline (8 s here) passes; the rollout wait fails on ProgressDeadlineExceeded

Each must end with exit 3, the reason in the CLI's output and the workflow result, v1's pod template
back in the Deployment and v1's pods verified polling. The crash case (CrashLoopBackOff) and the
wrong-task-queue case (verification fails) are tests/e2e/test_lifecycle.py's v3 and v4. The time
from the failed version's apply to the restored version's verification is printed, from the history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
from temporalio.client import Client

from pipeline.models import DeploymentResult
from tests.e2e.support import (
    EXIT_ROLLED_BACK,
    NEVER_READY,
    Deployed,
    activity_spans,
    assert_polling,
    deployed,
    history_of,
    seconds_between,
)
from tests.faults.chaos_fixtures import FaultApp, new_fault_app, worker_running

pytestmark = pytest.mark.e2e

MISSING_DIGEST = "sha256:" + "0" * 63 + "1"
PROGRESS_DEADLINE = 8


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[FaultApp]:
    app = new_fault_app(request)
    async with worker_running(app, stack_client):
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(app: FaultApp, stack_client: Client) -> Deployed:
    version = deployed(await app.cli("deploy", "--follow", config=app.config("v1")), app)
    await assert_polling(stack_client, app, version)
    return version


async def roll_back_from(
    app: FaultApp, client: Client, v1: Deployed, *args: str, command: Sequence[str] = (), reasons: Sequence[str]
) -> float:
    """Deploy a bad version; assert it was rolled back for one of `reasons` to v1, verified; seconds from its apply to that."""
    config = app.config("v1", command=command, rollout={"progress_deadline_seconds": PROGRESS_DEADLINE})
    run = await app.cli("deploy", "--follow", *args, config=config, timeout=240)
    run.expect(EXIT_ROLLED_BACK, diagnose=app.diagnose)
    assert any(r in run.output for r in reasons), f"the output names none of {reasons}:\n{run.output}"
    result = await client.get_workflow_handle(app.workflow_id, run_id=run.run_id, result_type=DeploymentResult).result()
    assert result.outcome == "rolled_back", result
    assert result.restored_image == v1.image, result
    assert any(r in result.reason for r in reasons), result.reason
    template = app.deployment()["spec"]["template"]["spec"]["containers"][0]
    assert template["image"] == v1.image, f"the Deployment runs {template['image']}, not v1's {v1.image}"
    await assert_polling(client, app, v1)
    spans = activity_spans(await history_of(client, app, run))
    applies = [s for s in spans if s.activity == "apply_manifests"]
    verified = [s for s in spans if s.activity == "verify_polling" and s.outcome == "completed"]
    assert len(applies) == 2 and verified, [(s.activity, s.outcome) for s in spans]
    return seconds_between(applies[0].scheduled, verified[-1].closed)


async def test_an_image_that_cannot_be_pulled_is_rolled_back(app: FaultApp, v1: Deployed, stack_client: Client) -> None:
    missing = f"{app.repository}@{MISSING_DIGEST}"
    seconds = await roll_back_from(app, stack_client, v1, "--image", missing, reasons=("ErrImagePull", "ImagePullBackOff"))
    print(f"unpullable image: apply -> v1 verified again in {seconds:.1f}s")


async def test_a_version_that_never_becomes_ready_is_rolled_back(app: FaultApp, v1: Deployed, stack_client: Client) -> None:
    seconds = await roll_back_from(app, stack_client, v1, command=NEVER_READY, reasons=("ProgressDeadlineExceeded",))
    # Kubernetes condition times have whole seconds, so the deadline may pass up to 1 s "early".
    assert seconds >= PROGRESS_DEADLINE - 1, "rolled back before the progress deadline could have passed"
    print(f"never ready: apply -> v1 verified again in {seconds:.1f}s (progress deadline {PROGRESS_DEADLINE}s)")
