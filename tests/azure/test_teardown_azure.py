"""`pipeline teardown --azure` against the empty ARM imitation (issue 23 item 5's "Done when").

Each test has its own resource group in the shared empty imitation. What `bootstrap --azure` makes in Azure
(`provision.provision`, the same call the command makes before it deploys) goes into a resource group that
already held another resource (a managed identity of someone else's); the real console script then tears
down, and the real Azure SDKs check the result: the group and that resource are still there, everything
bootstrap made is gone (404), and a second teardown finds nothing. Without --yes and without a terminal it
refuses in one line (exit 2) and deletes nothing. A registry bootstrap reused (not tagged) is left, and only
bootstrap's role assignments on it go.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.azure_arm import Imitation
from pipeline.azure import credentials, provision
from pipeline.teardown import AZURE_TAG
from tests.helpers.azure import Clients
from tests.helpers.teardown import LOCATION, AzureSetup, credential_env, gone, msi


@pytest.fixture
def setup(nothing: Imitation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureSetup]:
    for key, value in credential_env(nothing).items():  # for the in-process provision (the CLI gets them itself)
        monkeypatch.setenv(key, value)
    credentials.reset()
    yield AzureSetup.fresh(nothing, tmp_path)
    credentials.reset()


def test_teardown_leaves_the_existing_group_and_its_resource_and_removes_what_bootstrap_made(setup: AzureSetup) -> None:
    az, identities = Clients(setup.arm), msi(setup.arm)
    rg = setup.group
    az.groups.create_or_update(rg, {"location": LOCATION})
    other = identities.user_assigned_identities.create_or_update(rg, f"other-{setup.uid}", {"location": LOCATION})
    outcomes = provision.provision(setup.plan(), say=lambda _: None)
    assert [o.kind for o in outcomes if not o.created] == ["resource group"]
    # Tagged only when bootstrap created it: the existing group is not.
    registry = az.acr.registries.get(rg, setup.registry)
    cluster = az.aks.get(rg, setup.cluster)
    identity = identities.user_assigned_identities.get(rg, setup.identity)
    for created in (registry, cluster, identity):
        assert (created.tags or {}).get(AZURE_TAG[0]) == AZURE_TAG[1], created.id
    assert not az.groups.get(rg).tags
    kubelet = str((cluster.properties.identity_profile or {})["kubeletidentity"].object_id)
    assignments = {
        (str(registry.id), provision.role_assignment_name(scope=str(registry.id), principal_id=kubelet, role=provision.ACR_PULL_ROLE)),
        (str(cluster.id), provision.role_assignment_name(scope=str(cluster.id), principal_id=str(identity.principal_id), role=provision.AKS_CLUSTER_USER_ROLE)),
    }  # fmt: skip
    for scope, name in assignments:
        assert az.roles.get(scope, name).principal_id

    # No terminal and no --yes: the plan, one line on stderr, exit 2, nothing deleted.
    refused = setup.cli("teardown", "--azure")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.strip()] == [
        "pipeline teardown --azure: not deleting the 8 listed above without confirmation, and there is no terminal "
        "to ask on; run `pipeline teardown --azure --yes`"
    ]
    assert f"resource group {rg}: existed before bootstrap" in refused.stdout
    assert az.aks.get(rg, setup.cluster).id and az.acr.registries.get(rg, setup.registry).id

    waits = {op: setup.arm.count(op) for op in ("ManagedClusters_DeleteOperationResult", "Registries_GetOperationStatus")}
    done = setup.cli("teardown", "--azure", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stderr
    # The cluster's and the registry's long-running deletes were followed to their end (their Location polled).
    assert all(setup.arm.count(op) > before for op, before in waits.items()), waits
    lines = done.stdout.splitlines()
    deleted = [line for line in lines if line.startswith("deleted ")]
    assert len(deleted) == 8, done.stdout
    # In a safe order: role assignments, credential, identity, then the cluster and the registry they named.
    order = [line.split()[1] for line in deleted]
    assert order.index("AKS") < order.index("registry") and order.index("managed") < order.index("AKS"), order
    assert lines[-1] == "teardown done: 8 deleted; `pipeline teardown --azure` again finds nothing of them"

    # What existed before is still there; everything bootstrap made is gone.
    assert az.groups.get(rg).name == rg
    assert identities.user_assigned_identities.get(rg, other.name).principal_id == other.principal_id
    assert gone(lambda: az.acr.registries.get(rg, setup.registry))
    assert gone(lambda: az.aks.get(rg, setup.cluster))
    assert gone(lambda: identities.user_assigned_identities.get(rg, setup.identity))
    for scope, name in assignments:
        assert gone(lambda scope=scope, name=name: az.roles.get(scope, name))

    # Idempotent: a second run finds nothing, says so and asks nothing (no --yes needed).
    again = setup.cli("teardown", "--azure")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to delete: nothing `pipeline bootstrap` made is left" in again.stdout
    assert f"resource group {rg}: existed before bootstrap" in again.stdout


def test_a_group_bootstrap_created_goes_and_a_second_run_finds_no_group(setup: AzureSetup) -> None:
    provision.provision(setup.plan(), say=lambda _: None)
    az = Clients(setup.arm)
    assert (az.groups.get(setup.group).tags or {}).get(AZURE_TAG[0]) == AZURE_TAG[1]
    done = setup.cli("teardown", "--azure", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deleted resource group {setup.group}" in done.stdout
    assert gone(lambda: az.groups.get(setup.group))
    again = setup.cli("teardown", "--azure", "--yes")
    assert again.returncode == 0 and "nothing to delete" in again.stdout, again.stdout + again.stderr


def test_a_reused_registry_is_left_and_only_bootstraps_role_assignments_on_it_go(setup: AzureSetup) -> None:
    az = Clients(setup.arm)
    az.groups.create_or_update(setup.group, {"location": LOCATION})
    body = {"location": LOCATION, "sku": {"name": "Standard"}, "properties": {"roleAssignmentMode": "LegacyRegistryPermissions"}}
    az.acr.registries.begin_create(setup.group, setup.registry, body).result()
    provision.provision(setup.plan(), say=lambda _: None)
    registry = az.acr.registries.get(setup.group, setup.registry)
    assert not registry.tags
    done = setup.cli("teardown", "--azure", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"registry {setup.registry}: existed before bootstrap" in done.stdout
    assert az.acr.registries.get(setup.group, setup.registry).id == registry.id
    left = list(az.roles.list_for_scope(str(registry.id), filter="atScope()"))
    assert not [a for a in left if str(a.scope).lower() == str(registry.id).lower()], [a.name for a in left]
