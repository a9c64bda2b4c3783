"""mTLS to Temporal, end to end through the CLI: a TLS terminator that demands a client certificate
(tests/helpers/mtls.py) in front of the session's dev server, and `pipeline history`, which needs only Temporal.

Without a client certificate, with one the terminator's CA did not sign, or with one that cannot be
read: one clear line and a non-zero exit. With it (named by envconfig's variables, or by config.toml):
the command succeeds. The key's and certificate's contents appear in no output.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from pipeline import search_attributes
from tests.helpers import eventually, unique_name
from tests.helpers.cli import clean_env, run
from tests.helpers.config import write_config
from tests.helpers.mtls import Pki, TlsTerminator, make_pki

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def terminator(pki: Pki, temporal_address: str) -> Iterator[TlsTerminator]:
    with TlsTerminator(pki, upstream=temporal_address) as proxy:
        yield proxy


@pytest.fixture
async def namespace(client: Client) -> str:
    """A namespace of its own with the pipeline's search attributes (what `pipeline history` queries)."""
    name = unique_name("mtls")
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=name, workflow_execution_retention_period={"seconds": 86400})  # type: ignore[arg-type]
    )

    async def ready() -> None:
        try:
            outcome = await search_attributes.ensure(client, namespace=name, address="dev server")
        except RPCError as error:
            raise AssertionError(error.message) from None
        assert outcome.ok, outcome.lines
        await client.count_workflows("DeploymentApp = 'x' AND DeploymentEnvironment = 'local'")  # queryable now

    await eventually(ready, timeout=30, what=f"namespace {name} with the search attributes")
    return name


def _history(tmp_path: Path, terminator: TlsTerminator, namespace: str, **env: str) -> subprocess.CompletedProcess[str]:
    write_config(tmp_path, ("temporal", "address", f'"{terminator.address}"'), ("temporal", "namespace", f'"{namespace}"'))
    return run(tmp_path, "history", env=clean_env(**env))


def _secrets(pki: Pki) -> list[str]:
    return [line for path in (pki.client_key, pki.client_cert) for line in path.read_text().splitlines() if "-----" not in line]


def test_without_a_client_certificate_one_line_and_non_zero(
    tmp_path: Path, pki: Pki, terminator: TlsTerminator, namespace: str
) -> None:
    refused_before = terminator.handshakes_refused
    result = _history(tmp_path, terminator, namespace, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki.ca))
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cannot reach Temporal at {terminator.address} (namespace {namespace}): "), lines[0]
    assert (
        "if the server demands a client certificate (mTLS), name it and its key with [temporal].tls_client_cert_path" in lines[0]
    )
    assert terminator.handshakes_refused > refused_before  # refused by the terminator, not lost on the way


def test_with_a_certificate_of_another_ca_one_line_and_non_zero(
    tmp_path: Path, pki: Pki, terminator: TlsTerminator, namespace: str
) -> None:
    result = _history(
        tmp_path,
        terminator,
        namespace,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki.ca),
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(pki.stranger_cert),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(pki.stranger_key),
    )
    assert result.returncode != 0, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot reach Temporal at" in result.stderr


def test_an_unreadable_certificate_is_one_line_and_exit_2(tmp_path: Path, pki: Pki, terminator: TlsTerminator) -> None:
    result = _history(
        tmp_path,
        terminator,
        "default",
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "missing.pem"),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(pki.client_key),
    )
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip().splitlines() == [
        f"the Temporal client certificate {tmp_path / 'missing.pem'} "
        "([temporal].tls_client_cert_path / TEMPORAL_TLS_CLIENT_CERT_PATH) does not exist"
    ]


def test_with_the_client_certificate_from_envconfig_variables_it_works(
    tmp_path: Path, pki: Pki, terminator: TlsTerminator, namespace: str
) -> None:
    result = _history(
        tmp_path,
        terminator,
        namespace,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki.ca),
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(pki.client_cert),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(pki.client_key),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "no deployments found"
    for secret_line in _secrets(pki):
        assert secret_line not in result.stdout + result.stderr


def test_with_the_client_certificate_from_a_profile_it_works(
    tmp_path: Path, pki: Pki, terminator: TlsTerminator, namespace: str
) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        f'[profile.mtls]\naddress = "{terminator.address}"\nnamespace = "{namespace}"\n'
        f'[profile.mtls.tls]\nclient_cert_path = "{pki.client_cert}"\nclient_key_path = "{pki.client_key}"\n'
        f'server_ca_cert_path = "{pki.ca}"\nserver_name = "localhost"\n'
    )
    write_config(tmp_path)  # config.toml says 127.0.0.1:7233, "default": the selected profile wins
    result = run(tmp_path, "history", env=clean_env(TEMPORAL_CONFIG_FILE=str(profile), TEMPORAL_PROFILE="mtls"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "no deployments found"
