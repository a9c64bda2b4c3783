"""`pipeline bootstrap --azure` through the ARM imitation, then `pipeline teardown --azure --yes` (issue 23's "Done when").

The whole command, as a person runs it: into a resource group that already held another resource (a managed
identity of someone else's), bootstrap creates the registry, cluster, identity, federated credential and role
assignments, builds the pipeline worker with an ACR run and deploys it to the cluster the AKS API hands out
(a local cluster, in this test's own namespace and task queue). Teardown then removes everything
bootstrap made and leaves the group and that resource, checked through the real Azure SDKs.

An imitation process of this module's own (empty), whose AKS clusters hand out the kubeconfig of a local
cluster of this module's own; the stack's Temporal dev server, registry and Docker engine are shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.azure_arm import Imitation, start
from tests.helpers.azure import Clients
from tests.helpers.cluster import LocalCluster
from tests.helpers.teardown import LOCATION, AzureSetup, gone, msi

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def imitation(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imitation]:
    """An empty imitation whose clusters' credentials are a cluster of this module's own."""
    cluster = LocalCluster(tmp_path_factory.mktemp("teardown-aks") / "state")
    cluster.start()
    arm = start(tmp_path_factory.mktemp("teardown-arm"), kubeconfig=cluster.kubeconfig, empty=True)
    try:
        yield arm
    finally:  # the imitated cluster's deletion cannot stop what runs in the local one: this does
        arm.stop()
        cluster.stop()
        cluster.remove_containers()


@pytest.fixture
def setup(imitation: Imitation, tmp_path: Path) -> AzureSetup:
    return AzureSetup.fresh(imitation, tmp_path)


def test_teardown_azure_after_bootstrap_azure_leaves_what_existed_and_removes_the_rest(setup: AzureSetup) -> None:
    az, identities = Clients(setup.arm), msi(setup.arm)
    az.groups.create_or_update(setup.group, {"location": LOCATION})
    other = identities.user_assigned_identities.create_or_update(setup.group, f"other-{setup.uid}", {"location": LOCATION})

    boot = setup.cli("bootstrap", "--azure", timeout=600)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert f"resource group {setup.group}: exists" in boot.stdout and "Handed over" in boot.stdout, boot.stdout

    done = setup.cli("teardown", "--azure", "--yes", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "teardown done: 8 deleted" in done.stdout, done.stdout
    assert f"resource group {setup.group}: existed before bootstrap" in done.stdout

    assert az.groups.get(setup.group).name == setup.group
    assert identities.user_assigned_identities.get(setup.group, other.name).principal_id == other.principal_id
    assert gone(lambda: az.acr.registries.get(setup.group, setup.registry))
    assert gone(lambda: az.aks.get(setup.group, setup.cluster))
    assert gone(lambda: identities.user_assigned_identities.get(setup.group, setup.identity))

    again = setup.cli("teardown", "--azure")
    assert again.returncode == 0 and "nothing to delete" in again.stdout, again.stdout + again.stderr
