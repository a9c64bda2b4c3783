"""Custom search attributes that make the Web UI's workflow list read like a deployment log.

They must be registered on the Temporal server before a workflow can upsert them;
`bootstrap` registers them on the local dev server from `ALL`, and on a managed
server an operator registers the same names (`temporal operator search-attribute create`).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

DEPLOYMENT_APP = SearchAttributeKey.for_keyword("DeploymentApp")
DEPLOYMENT_ENVIRONMENT = SearchAttributeKey.for_keyword("DeploymentEnvironment")
DEPLOYMENT_IMAGE = SearchAttributeKey.for_keyword("DeploymentImage")
DEPLOYMENT_OUTCOME = SearchAttributeKey.for_keyword("DeploymentOutcome")

ALL: tuple[SearchAttributeKey[str], ...] = (
    DEPLOYMENT_APP,
    DEPLOYMENT_ENVIRONMENT,
    DEPLOYMENT_IMAGE,
    DEPLOYMENT_OUTCOME,
)


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
