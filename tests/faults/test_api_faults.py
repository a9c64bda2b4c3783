"""The cluster API misbehaves (through a fault proxy on loopback): hiccups are retried, a refusal fails at once.

The module's app reaches the local cluster only through `FaultProxy`
(faultproxy.py), via a kubeconfig pointing at it; its `pipeline worker` and
CLI use that kubeconfig, the test's own checks use the real one.

    bursts  for 3 s once the deployment starts, and again for 3 s when the rollout wait starts,
            every request is answered 429, 500 or dropped in turn: the activities retry with
            back-off and the deployment is verified
    403     every PATCH of a Deployment is refused (a Kubernetes Status 403 Forbidden): the
            deployment fails at once, with one line naming the refusal, after one apply attempt
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.e2e.support import EXIT_FAILED, activity_spans, deployed, history_of
from tests.faults.chaos_fixtures import (
    FaultApp,
    attempts_of,
    new_fault_app,
    pending_activity,
    slow_worker,
    through_fault_proxy,
    worker_running,
)
from tests.faults.faultproxy import DROP, Answer, Decision, FaultProxy, Rule
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

ACTIVITIES = (
    "read_revision",
    "build_image",
    "render_manifests",
    "apply_manifests",
    "wait_for_rollout",
    "verify_polling",
    "record_revision",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proxied(request: pytest.FixtureRequest, stack_client: Client) -> AsyncIterator[tuple[FaultApp, FaultProxy]]:
    app = new_fault_app(request)
    async with through_fault_proxy(app) as proxy, worker_running(app, stack_client):
        yield app, proxy


def burst(seconds: float) -> Rule:
    """For `seconds` from the first request it sees, answer 429, 500 or drop the connection, in turn."""
    faults = itertools.cycle([Answer(429, "TooManyRequests"), Answer(500, "InternalError"), DROP])
    began: list[float] = []

    def rule(method: str, path: str) -> Decision:
        began[:] = began or [time.monotonic()]
        fault: Decision = next(faults)  # type: ignore[assignment]  # itertools.cycle of a union
        return fault if time.monotonic() - began[0] < seconds else None

    return rule


async def test_bursts_of_429_500_and_drops_are_retried_and_the_deployment_completes(
    proxied: tuple[FaultApp, FaultProxy], stack_client: Client
) -> None:
    app, proxy = proxied
    args = ("deploy", "--follow")
    # The idle worker sends the cluster nothing: the burst's clock starts with read_revision's first request.
    # (Waiting to see read_revision pending instead races it: it takes some 30 ms.)
    proxy.rule = burst(3)
    started = time.monotonic()
    process = await app.start(*args, config=app.config("v1", command=slow_worker(start=4)))
    handle = stack_client.get_workflow_handle(app.workflow_id)

    async def step(activity: str) -> None:
        assert activity in await pending_activity(handle), f"{activity} is not running yet"

    await eventually(lambda: step("wait_for_rollout"), timeout=90, interval=0.05, what="wait_for_rollout running")
    proxy.rule = burst(3)
    run = await app.finish(process, args, started=started, timeout=180)
    proxy.rule = lambda method, path: None

    deployed(run, app)
    history = await history_of(stack_client, app, run)
    attempts = {a: attempts_of(history, a) for a in ACTIVITIES}
    retries = {a: max(n) - 1 for a, n in attempts.items() if n and max(n) > 1}
    faults = {k: v for k, v in proxy.seen.items() if k != "passed"}
    assert faults.get("429") and faults.get("500") and faults.get("dropped"), f"the proxy injected too little: {proxy.seen}"
    assert retries, f"no activity was retried although the proxy injected {faults}: attempts {attempts}"
    for activity in ACTIVITIES:
        outcomes = [s.outcome for s in activity_spans(history) if s.activity == activity]
        assert outcomes == ["completed"], f"{activity}: {outcomes}"
    print(f"API faults injected {faults}; activity retries (attempt - 1) {retries}; deploy took {run.seconds:.1f}s")


async def test_a_permanent_403_fails_at_once_with_one_clear_line(
    proxied: tuple[FaultApp, FaultProxy], stack_client: Client
) -> None:
    app, proxy = proxied

    def forbid_deployment_patches(method: str, path: str) -> Decision:
        if method == "PATCH" and "/deployments/" in path:
            return Answer(403, "Forbidden", 'deployments.apps is forbidden: User "pipeline" cannot patch resource "deployments"')
        return None

    proxy.rule = forbid_deployment_patches
    try:
        run = await app.cli("deploy", "--follow", config=app.config("v2", rollout={"auto_rollback": False}))
    finally:
        proxy.rule = lambda method, path: None

    run.expect(EXIT_FAILED, diagnose=app.diagnose)
    history = await history_of(stack_client, app, run)
    assert attempts_of(history, "apply_manifests") == [1], "a 403 must not be retried"
    failures = [s for s in activity_spans(history) if s.activity == "apply_manifests"]
    assert [s.outcome for s in failures] == ["failed"]
    assert "403" in failures[0].failure and "forbidden" in failures[0].failure.lower(), failures[0].failure
    reason = [line for line in run.output.splitlines() if line.startswith("Deployment failed:")]
    assert len(reason) == 1 and "KubeForbidden" in reason[0] and "403" in reason[0], f"no one-line reason:\n{run.output}"
    assert "HTTP response" not in run.output, f"the reason dumps the client library's exception:\n{run.output}"
    assert f"Deployment {app.namespace}/{app.name}" in reason[0], f"the reason does not name the Deployment: {reason[0]}"
    assert proxy.seen["403"] == 1, f"the Deployment PATCH was tried {proxy.seen['403']} times"
    print(f"403: failed in {run.seconds:.1f}s, reason: {reason[-1]}")
