"""The product's built-in role ids are Microsoft's, as copied from its role documentation (never the imitation's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.azure import provision

DOC_COPY = Path(__file__).parent / "examples" / "builtin-roles.json"

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("constant", "role_name"),
    [
        ("ACR_PULL_ROLE", "AcrPull"),
        ("ACR_TASKS_CONTRIBUTOR_ROLE", "Container Registry Tasks Contributor"),
        ("ACR_PUSH_ROLE", "AcrPush"),
        ("AKS_CLUSTER_USER_ROLE", "Azure Kubernetes Service Cluster User Role"),
    ],
)
def test_role_ids_are_the_documented_ones(constant: str, role_name: str) -> None:
    documented = {role["roleName"]: role["id"] for role in json.loads(DOC_COPY.read_text())}
    assert getattr(provision, constant) == documented[role_name]


def test_the_tasks_role_covers_every_acr_tasks_call_the_worker_makes() -> None:
    """What pipeline/azure/acr.py calls as the in-cluster worker, in ARM's action names."""
    role = next(r for r in json.loads(DOC_COPY.read_text()) if r["id"] == provision.ACR_TASKS_CONTRIBUTOR_ROLE)
    needed = {
        "Microsoft.ContainerRegistry/registries/scheduleRun/action",
        "Microsoft.ContainerRegistry/registries/runs/read",
        "Microsoft.ContainerRegistry/registries/runs/listLogSasUrl/action",
        "Microsoft.ContainerRegistry/registries/runs/cancel/action",
        "Microsoft.ContainerRegistry/registries/read",
    }
    assert needed <= set(role["actions"])
