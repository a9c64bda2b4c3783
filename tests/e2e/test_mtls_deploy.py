"""A deployment verified through a TLS terminator that demands a client certificate (issue 23, item 3).

In front of the stack's dev server, tests/helpers/mtls.py's terminator; everything of this
module talks to Temporal through it only:

    the CLI                 [temporal].address = the terminator, client certificate and key, server CA
    its `pipeline worker`   the same config (its activities connect with its own certificate)
    the deployed pods       the sample worker, its certificate from the kubernetes.io/tls Secret
                            [temporal].tls_secret (written by bootstrap's `client_secrets.ensure`),
                            mounted as files named by TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH

Without the certificate `pipeline status` fails in one line; with it a deploy is verified (pods
polling, as Temporal lists them through the terminator), and the key is in no output or history.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import tomlkit
from temporalio.client import Client

from bootstrap.process import stop_child
from pipeline import client_secrets, kube
from pipeline.config import load_config
from tests.e2e.support import TEMPORAL_ADDRESS, E2eApp, assert_polling, deployed, start_pipeline_worker
from tests.helpers.mtls import Pki, TlsTerminator, make_pki
from tests.helpers.secrets import never_leak

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = make_pki(tmp_path_factory.mktemp("mtls-e2e"))
    for line in pki.client_key.read_text().splitlines():
        if "-----" not in line and len(line) > 20:
            never_leak("a line of the e2e client key", line)
    return pki


@pytest.fixture(scope="module")
def terminator(pki: Pki) -> Iterator[TlsTerminator]:
    with TlsTerminator(pki, upstream=TEMPORAL_ADDRESS) as proxy:
        yield proxy


def mtls_config(app: E2eApp, pki: Pki, terminator: TlsTerminator, *, with_certificate: bool = True) -> Path:
    """The app's config with [temporal] pointed at the terminator, and (or not) the client certificate."""
    base = app.config()
    data = tomlkit.parse(base.read_text())
    temporal = data["temporal"]
    temporal["address"] = terminator.address  # type: ignore[index]
    temporal["tls_server_ca_cert_path"] = str(pki.ca)  # type: ignore[index]
    temporal["tls_secret"] = f"{app.name}-tls"  # type: ignore[index]
    if with_certificate:
        temporal["tls_client_cert_path"] = str(pki.client_cert)  # type: ignore[index]
        temporal["tls_client_key_path"] = str(pki.client_key)  # type: ignore[index]
    path = base.with_name(f"config-mtls-{'cert' if with_certificate else 'nocert'}.toml")
    path.write_text(tomlkit.dumps(data))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mtls_app(stack_client: Client, pki: Pki, terminator: TlsTerminator) -> AsyncIterator[E2eApp]:
    """An app whose `pipeline worker` reaches Temporal through the terminator only; its namespace deleted after."""
    name = f"e2e-mtls-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    app = E2eApp(name=name, directory=directory, worker_log=directory / "pipeline-worker.log")
    config = mtls_config(app, pki, terminator)
    with app.kube_client() as kc:  # what `pipeline bootstrap` does first: the Secret the pods mount
        said: list[str] = []
        assert client_secrets.ensure(kc, load_config(config, env={}), env={}, say=said.append), said
        assert said == [
            f"Secret {app.namespace}/{name}-tls: tls.crt, tls.key, ca.crt written from "
            f"{pki.client_cert}, {pki.client_key}, {pki.ca} (values not shown)"
        ], said
    app.worker = await start_pipeline_worker(app, config, stack_client)
    try:
        yield app
    finally:
        stop_child(app.worker, grace=30)
        with app.kube_client() as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=app.namespace)


async def test_without_the_client_certificate_one_line_and_non_zero(
    mtls_app: E2eApp, pki: Pki, terminator: TlsTerminator
) -> None:
    run = await mtls_app.cli("status", config=mtls_config(mtls_app, pki, terminator, with_certificate=False), timeout=60)
    assert run.code != 0, run.output
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cannot reach Temporal at {terminator.address}"), run.output


async def test_with_it_a_deploy_is_verified_through_the_terminator(
    mtls_app: E2eApp, pki: Pki, terminator: TlsTerminator, stack_client: Client
) -> None:
    before = terminator.connections
    run = await mtls_app.cli("deploy", config=mtls_config(mtls_app, pki, terminator), timeout=420)
    version = deployed(run, mtls_app)
    await assert_polling(stack_client, mtls_app, version)
    pods = [p for p in mtls_app.raw_pods() if not p["metadata"].get("deletionTimestamp")]
    for pod in pods:
        mounts = pod["spec"]["containers"][0].get("volumeMounts") or []
        assert {"name": "temporal-tls", "mountPath": "/etc/temporal/tls", "readOnly": True} in mounts, mounts
    # The pods and the pipeline worker came through the terminator: each connection is one accepted handshake.
    assert terminator.connections >= before + len(pods), (before, terminator.connections)
    key_lines = [line for line in pki.client_key.read_text().splitlines() if "-----" not in line]
    assert not any(line in run.output for line in key_lines)
