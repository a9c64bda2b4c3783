"""The deployment workflow as its clients see it: type, id scheme, query, signal and update.

`pipeline deploy`, `status` and `rollback` talk to DeploymentWorkflow by these
names, so the CLI never imports the workflow module, which pulls in every
activity and with them the Kubernetes, Docker and Azure clients (about half a
second of a CLI run). workflows.py defines the workflow with the same names,
and tests/test_workflow.py checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WORKFLOW_TYPE = "DeploymentWorkflow"
STATUS_QUERY = "status"
# The same name serves a signal (fire and forget; what the Web UI's "Send a Signal" sends) and an
# update (the caller gets an answer: accepted and what will be restored, or why not).
ROLLBACK_SIGNAL = "rollback"
ROLLBACK_UPDATE = "rollback"
# Operator verbs of a versioned deployment (`pipeline promote|pause|resume APP`): updates that
# answer with the deployment's status, or refuse with the reason.
PROMOTE_UPDATE = "promote"
PAUSE_UPDATE = "pause"
RESUME_UPDATE = "resume"
# What a canceled deployment restored (a canceled workflow has no result): in its memo.
OUTCOME_MEMO = "outcome"


@dataclass(frozen=True)
class RollbackRequest:
    """The rollback signal's (and update's) payload; every field may be left out, and so may the payload."""

    reason: str = ""
    requested_by: str = ""


@dataclass(frozen=True)
class RollbackAnswer:
    """The rollback update's answer: the rollback is under way, to this image."""

    restoring: str
    interrupted_step: str


def read_rollback_request(value: Any, *, unreadable: str = "") -> tuple[RollbackRequest, bool]:
    """A RollbackRequest from whatever a person sent, and whether it could be read as one.

    Readable: nothing, {"reason": ..., "requested_by": ...}, or a bare string. Anything
    else (a number, a list, a reason that is not text, bytes that are not JSON) is not an
    error: the rollback goes ahead and its reason says that the input could not be read.
    `unreadable` is the decoder's complaint when the payload was not even JSON.
    """
    if unreadable:
        return RollbackRequest(reason=f"(the rollback's input could not be read: {unreadable[:120]})"), False
    if value is None:
        return RollbackRequest(), True
    if isinstance(value, str):
        return RollbackRequest(reason=value[:500]), True
    if isinstance(value, dict):
        reason, by = value.get("reason", ""), value.get("requested_by", "")
        if isinstance(reason, str) and isinstance(by, str):
            return RollbackRequest(reason=reason[:500], requested_by=by[:200]), True
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    expected = '{"reason": "...", "requested_by": "..."}'
    return RollbackRequest(reason=f"(the rollback's input could not be read: expected {expected}, got {shown})"), False


def deployment_workflow_id(environment: str, app: str) -> str:
    """One id per app and environment: Temporal itself refuses a second concurrent deployment."""
    return f"deploy-{environment}-{app}"
