"""One ARM imitation process per test session, reached only through the real Azure SDKs.

`azure_arm` is the session's `bootstrap.azure_arm.Imitation` (endpoint, CA bundle,
client env, subscription id, resource group, registry and cluster names, and the
admin API: `inject(...)`, `count(...)`, `requests()`, `reset()`). Tests isolate
themselves by image names and run ids, never by restarting it; `arm` is the same
object with faults cleared after each test. The kubeconfig handed out by
listClusterUserCredential is the running stack's cluster
(`.stack/cluster/kubeconfig`, or `ARM_IMITATION_KUBECONFIG`); override the
`arm_kubeconfig` fixture to point it at another cluster. `empty_arm` / `nothing`
is a second imitation that starts with no resource group, registry or cluster,
for `pipeline bootstrap --azure` "from nothing" (tests/azure/test_bootstrap_azure.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential

from bootstrap.azure_arm import Imitation, start
from tests.helpers.secrets import never_leak

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def arm_kubeconfig() -> Path | None:
    path = Path(os.environ.get("ARM_IMITATION_KUBECONFIG") or REPO_ROOT / ".stack/cluster/kubeconfig")
    return path if path.exists() else None


def register_secrets(imitation: Imitation) -> None:
    """Every secret the imitation holds now (client secrets, registry passwords, signing keys), for the
    session-wide history scan (tests/conftest.py): registries created during the session included."""
    seed = json.loads((imitation.state_dir / "seed.json").read_text())
    for client in seed.get("clients") or []:
        never_leak(f"the client secret of Azure principal {client.get('display_name')}", str(client.get("secret") or ""))
    for registry in seed.get("registries") or []:
        for password in registry.get("passwords") or []:
            never_leak(f"a password of registry {registry.get('name')}", str(password))
    for key in ("token_key", "sas_key"):
        never_leak(f"the imitation's {key}", str(seed.get(key) or ""))


@pytest.fixture(scope="session")
def azure_arm(tmp_path_factory: pytest.TempPathFactory, arm_kubeconfig: Path | None) -> Iterator[Imitation]:
    """`python -m bootstrap.azure_arm serve` on a free port with a temporary state directory."""
    imitation = start(tmp_path_factory.mktemp("azure-arm"), kubeconfig=arm_kubeconfig)
    try:
        yield imitation
    finally:
        register_secrets(imitation)
        imitation.stop()


@pytest.fixture(scope="session")
def empty_arm(tmp_path_factory: pytest.TempPathFactory, arm_kubeconfig: Path | None) -> Iterator[Imitation]:
    """A second imitation started with nothing in it (no resource group, registry or cluster): Azure "from nothing".

    Its created clusters' credentials are the same local cluster's kubeconfig. Tests isolate themselves by
    resource group and resource names (`unique_azure_names`), never by restarting it.
    """
    imitation = start(tmp_path_factory.mktemp("azure-arm-empty"), kubeconfig=arm_kubeconfig, empty=True)
    try:
        yield imitation
    finally:
        register_secrets(imitation)
        imitation.stop()


@pytest.fixture
def nothing(empty_arm: Imitation) -> Iterator[Imitation]:
    """The empty imitation, with any fault a test left pending cleared afterwards."""
    yield empty_arm
    empty_arm.clear_faults()


@pytest.fixture
def arm(azure_arm: Imitation) -> Iterator[Imitation]:
    """The session imitation, with any fault a test left pending cleared afterwards."""
    yield azure_arm
    azure_arm.clear_faults()


@pytest.fixture
def arm_env(arm: Imitation, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The client environment (AZURE_*, REQUESTS_CA_BUNDLE, SSL_CERT_FILE) set in os.environ for one test."""
    for key, value in arm.env.items():
        monkeypatch.setenv(key, value)
    return arm.env


@pytest.fixture
def arm_credential(arm: Imitation) -> ClientSecretCredential:
    """The `pipeline` principal, configured the way production code must be to reach the imitation."""
    return ClientSecretCredential(
        arm.tenant_id,
        arm.client_id,
        arm.client_secret,
        authority=arm.endpoint,
        disable_instance_discovery=True,  # else MSAL asks login.microsoftonline.com about the unknown host
        connection_verify=str(arm.ca_bundle),
    )
