"""What the tests read out of workflow histories."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionDescription, WorkflowHistory

# No failure of the workflow's code: a Reset marks its reset point with a failed workflow task of
# cause RESET_WORKFLOW, and the server answers UNHANDLED_COMMAND when an event (say, a cancelled
# activity's confirmation) arrives while the workflow completes; the SDK then runs the task again.
_BENIGN = (
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
)


def failed_workflow_tasks(history: WorkflowHistory) -> list[str]:
    """The failure messages of every failed workflow task (a handler that raised, a non-determinism, ...)."""
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in history.events
        if e.HasField("workflow_task_failed_event_attributes") and e.workflow_task_failed_event_attributes.cause not in _BENIGN
    ]


BUILD_ACTIVITIES = ("build_image", "build_platform_image")


def heartbeated_run_ids(description: WorkflowExecutionDescription) -> list[str]:
    """The ACR run ids the pending build activities (one, or one per platform) last heartbeated."""
    found = []
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name not in BUILD_ACTIVITIES:
            continue
        for payload in pending.heartbeat_details.payloads:
            details = json.loads(payload.data or b"null")
            if isinstance(details, dict) and details.get("run_id"):
                found.append(str(details["run_id"]))
    return found


def heartbeated_run_id(description: WorkflowExecutionDescription) -> str:
    """The ACR run id a pending build activity last heartbeated ("" = none yet)."""
    return next(iter(heartbeated_run_ids(description)), "")


def started_identities(history: WorkflowHistory, activity_type: str) -> list[tuple[int, str]]:
    """(attempt, worker identity) of each started event of `activity_type`."""
    scheduled = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return [
        (e.activity_task_started_event_attributes.attempt, e.activity_task_started_event_attributes.identity)
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
