"""The readiness gate's judgement, without services: which pods wait for it, and which poller lets one pass.

The controller itself runs against the real cluster and Temporal in tests/e2e/test_sdk_worker.py
(and in every end-to-end deployment, since every rendered pod carries the gate).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.markers import POLLING_CONDITION, QUEUE_TYPES_ANNOTATION, TASK_QUEUE_ANNOTATION, TEMPORAL_NAMESPACE_ANNOTATION
from pipeline.models import Poller
from pipeline.readiness import GatedPod, seen_polling, waiting_pod

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 3, 12, 0, 0)


def raw_pod(
    name: str = "w-1",
    *,
    phase: str = "Running",
    gate: bool = True,
    passed: str | None = None,
    namespace: str = "default",
    types: str = "workflow,activity",
    deleting: bool = False,
) -> dict[str, Any]:
    conditions = [{"type": "ContainersReady", "status": "True"}]
    if passed is not None:
        conditions.append({"type": POLLING_CONDITION, "status": passed})
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "annotations": {
            TASK_QUEUE_ANNOTATION: "q",
            QUEUE_TYPES_ANNOTATION: types,
            TEMPORAL_NAMESPACE_ANNOTATION: namespace,
        },
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T12:00:09Z"
    return {
        "metadata": meta,
        "spec": {"readinessGates": [{"conditionType": POLLING_CONDITION}] if gate else []},
        "status": {
            "phase": phase,
            "startTime": START.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            "conditions": conditions,
        },
    }


def poller(identity: str, queue_type: str, seconds_after_start: float) -> Poller:
    when = (START + timedelta(seconds=seconds_after_start)).isoformat() + "Z"
    return Poller(identity=identity, task_queue_type=queue_type, build_id="", last_access_time=when)


def test_a_running_gated_pod_of_our_namespace_waits_with_what_to_look_for() -> None:
    pod = waiting_pod(raw_pod(), temporal_namespace="default")
    assert pod == GatedPod(name="w-1", uid="uid-w-1", task_queue="q", queue_types=("workflow", "activity"), started_at=START)


@pytest.mark.parametrize(
    "raw",
    [
        raw_pod(gate=False),  # not ours to gate
        raw_pod(phase="Pending"),  # not started: nothing can poll yet
        raw_pod(passed="True"),  # already passed
        raw_pod(namespace="other"),  # another Temporal namespace: another controller's
        raw_pod(deleting=True),  # stopping
    ],
)
def test_pods_that_do_not_wait(raw: dict[str, Any]) -> None:
    assert waiting_pod(raw, temporal_namespace="default") is None


def test_a_gate_set_false_still_waits() -> None:
    assert waiting_pod(raw_pod(passed="False"), temporal_namespace="default") is not None


def test_both_identity_shapes_on_every_queue_type_since_the_pod_started_pass() -> None:
    pod = waiting_pod(raw_pod(), temporal_namespace="default")
    assert pod is not None
    sdk = [poller("1@w-1", "workflow", 1), poller("1@w-1", "activity", 1)]
    ours = [poller("w-1@sha256:ab", "workflow", 1), poller("w-1@sha256:ab", "activity", 2)]
    assert seen_polling(pod, sdk) is not None and seen_polling(pod, ours) is not None
    assert seen_polling(pod, sdk[:1]) is None  # the activity queue is not polled yet
    assert seen_polling(pod, [poller("1@w-1", "workflow", -30), sdk[1]]) is None  # a poll from before the pod started
    assert seen_polling(pod, [poller("1@w-10", "workflow", 1), poller("1@w-10", "activity", 1)]) is None


def test_an_activity_only_worker_passes_on_its_one_queue_type() -> None:
    pod = waiting_pod(raw_pod(types="activity"), temporal_namespace="default")
    assert pod is not None and pod.queue_types == ("activity",)
    assert seen_polling(pod, [poller("1@w-1", "activity", 1)]) is not None
