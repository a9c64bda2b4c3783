"""The deployment workflow as its clients see it: type, id scheme, query and signal.

`pipeline deploy`, `status` and `rollback` talk to DeploymentWorkflow by these
names, so the CLI never imports the workflow module, which pulls in every
activity and with them the Kubernetes, Docker and Azure clients (about half a
second of a CLI run). workflows.py defines the workflow with the same names,
and tests/test_workflow.py checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

WORKFLOW_TYPE = "DeploymentWorkflow"
STATUS_QUERY = "status"
ROLLBACK_SIGNAL = "rollback"


@dataclass(frozen=True)
class RollbackRequest:
    """The rollback signal's payload."""

    reason: str = ""
    requested_by: str = ""


def deployment_workflow_id(environment: str, app: str) -> str:
    """One id per app and environment: Temporal itself refuses a second concurrent deployment."""
    return f"deploy-{environment}-{app}"
