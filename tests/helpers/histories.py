"""What the tests read out of workflow histories."""

from __future__ import annotations

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import WorkflowHistory

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
