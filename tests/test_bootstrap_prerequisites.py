"""`pipeline bootstrap`'s manual steps done for the user: the credentials' Secrets and the search attributes.

The decisions are pure functions tested on data; `search_attributes.ensure` also runs
against the session's dev server, in a namespace of its own that starts without them,
and against a double of Temporal Cloud's operator service, which refuses to add them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pipeline import client_secrets, search_attributes
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import PipelineError
from tests.helpers import eventually, unique_name
from tests.helpers.config import write_config

pytestmark = pytest.mark.unit

NAMES = [key.name for key in search_attributes.ALL]
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nSECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n"


# ----- search attributes: the plan and the commands -----


def test_plan_sorts_the_attributes_into_present_missing_and_wrong_type() -> None:
    existing = {NAMES[0]: "Keyword", NAMES[1]: "Text", "SomethingElse": "Keyword"}
    plan = search_attributes.plan(existing)
    assert plan.present == (NAMES[0],)
    assert plan.wrong_type == ((NAMES[1], "Text"),)
    assert plan.missing == tuple(NAMES[2:])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (
            "prod.a1b2c.tmprl.cloud:7233",
            [
                'tcld namespace search-attributes add --namespace prod.a1b2c --search-attribute "DeploymentApp=Keyword" '
                '--search-attribute "DeploymentOutcome=Keyword"'
            ],
        ),
        (
            "temporal.internal:7233",
            [
                "temporal operator search-attribute create --address temporal.internal:7233 --namespace prod.a1b2c "
                "--name DeploymentApp --type Keyword",
                "temporal operator search-attribute create --address temporal.internal:7233 --namespace prod.a1b2c "
                "--name DeploymentOutcome --type Keyword",
            ],
        ),
    ],
    ids=["Temporal Cloud: tcld", "self-hosted: temporal CLI"],
)
def test_the_command_that_adds_what_is_missing(address: str, expected: list[str]) -> None:
    assert (
        search_attributes.add_commands(["DeploymentApp", "DeploymentOutcome"], namespace="prod.a1b2c", address=address)
        == expected
    )
    assert search_attributes.add_commands([], namespace="prod.a1b2c", address=address) == []


def test_cloud_addresses_are_recognized() -> None:
    assert search_attributes.is_cloud("ns.acct.tmprl.cloud:7233")
    assert search_attributes.is_cloud("us-east-1.aws.api.temporal.io:7233")
    assert not search_attributes.is_cloud("127.0.0.1:7233") and not search_attributes.is_cloud("tmprl.cloud.example.com:7233")


class _CloudLike:
    """Temporal Cloud's answers to a namespace API key: no listing or adding through the operator service;
    a visibility query names an unknown attribute with InvalidArgument."""

    def __init__(self, registered: set[str], refusal: RPCStatusCode) -> None:
        self.registered = registered
        self.refusal = refusal
        self.operator_service = self
        self.added: list[Any] = []

    def _refuse(self) -> RPCError:
        return RPCError("Request unauthorized.", self.refusal, b"")

    async def list_search_attributes(self, request: Any) -> Any:
        raise self._refuse()

    async def add_search_attributes(self, request: Any) -> Any:
        self.added.append(request)
        raise self._refuse()

    async def count_workflows(self, query: str) -> int:
        name = query.split(" ", 1)[0]
        if name not in self.registered:
            raise RPCError(f"invalid query: unknown search attribute: {name}", RPCStatusCode.INVALID_ARGUMENT, b"")
        return 0


@pytest.mark.parametrize("refusal", [RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED])
async def test_where_adding_is_refused_it_checks_and_prints_the_command(refusal: RPCStatusCode) -> None:
    cloud = _CloudLike({"DeploymentApp", "DeploymentImage"}, refusal)
    outcome = await search_attributes.ensure(cloud, namespace="prod.a1b2c", address="prod.a1b2c.tmprl.cloud:7233")  # type: ignore[arg-type]
    assert not outcome.ok
    assert outcome.lines == (
        "search attributes DeploymentEnvironment, DeploymentOutcome are missing in namespace prod.a1b2c, and "
        f"prod.a1b2c.tmprl.cloud:7233 does not let this client add them ({refusal.name}); add them with:",
    )
    assert outcome.commands == (
        'tcld namespace search-attributes add --namespace prod.a1b2c --search-attribute "DeploymentEnvironment=Keyword" '
        '--search-attribute "DeploymentOutcome=Keyword"',
    )


async def test_where_adding_is_refused_and_all_exist_it_is_ok() -> None:
    cloud = _CloudLike(set(NAMES), RPCStatusCode.PERMISSION_DENIED)
    outcome = await search_attributes.ensure(cloud, namespace="prod.a1b2c", address="prod.a1b2c.tmprl.cloud:7233")  # type: ignore[arg-type]
    assert outcome.ok and not cloud.added and outcome.commands == ()


# ----- search attributes: against the session's dev server -----


async def _new_namespace(client: Client) -> str:
    name = unique_name("sa")
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=name, workflow_execution_retention_period={"seconds": 86400})  # type: ignore[arg-type]
    )
    return name


async def test_ensure_adds_them_on_a_server_that_allows_it(client: Client, temporal_address: str) -> None:
    namespace = await _new_namespace(client)

    async def listed() -> Mapping[str, int]:
        answer = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
        return dict(answer.custom_attributes)

    async def registered() -> None:
        try:
            await listed()
        except RPCError as error:  # the namespace is not in the frontend's cache yet
            raise AssertionError(error.message) from None

    await eventually(registered, timeout=30, what=f"namespace {namespace} known to the frontend")
    assert not set(NAMES) & set(await listed())

    first = await search_attributes.ensure(client, namespace=namespace, address=temporal_address)
    assert first.ok and first.lines == (f"added search attributes {', '.join(NAMES)} (Keyword) to namespace {namespace}",)

    async def all_there() -> None:
        assert set(NAMES) <= set(await listed())

    await eventually(all_there, timeout=30, what="the added search attributes listed")
    again = await search_attributes.ensure(client, namespace=namespace, address=temporal_address)
    assert again.ok and again.lines == (f"search attributes {', '.join(NAMES)} exist in namespace {namespace}",)


# ----- the credentials' Secrets: the plan -----


def _config(tmp_path: Path, *edits: tuple[str, str, str], env: Mapping[str, str] | None = None) -> PipelineConfig:
    return load_config(write_config(tmp_path, *edits), env=dict(env or {}))


API_KEY_SECRET = ("temporal", "api_key_secret", '"temporal-api-key/api-key"')


@pytest.mark.parametrize(
    ("env", "existing", "action"),
    [
        ({"TEMPORAL_API_KEY": "k-123"}, {}, "write"),
        ({"TEMPORAL_API_KEY": "k-123"}, {"temporal-api-key": frozenset({"api-key"})}, "write"),
        ({}, {"temporal-api-key": frozenset({"api-key"})}, "keep"),
        ({}, {"temporal-api-key": frozenset({"other"})}, "missing"),
        ({}, {}, "missing"),
    ],
    ids=["value here", "value here, Secret exists", "no value, Secret has the key", "no value, key absent", "nothing"],
)
def test_api_key_secret_plan(tmp_path: Path, env: dict[str, str], existing: dict[str, frozenset[str]], action: str) -> None:
    config = _config(tmp_path, API_KEY_SECRET, env=env)
    (plan,) = client_secrets.plan(config, existing=existing, env=env)
    assert (plan.name, plan.namespace, plan.kind, plan.action, plan.keys) == (
        "temporal-api-key",
        "temporal-workers",
        "api-key",
        action,
        ("api-key",),
    )
    line = client_secrets.describe(plan)
    assert "k-123" not in line
    if action == "missing":
        assert line == (
            "Secret temporal-workers/temporal-api-key is missing api-key: export TEMPORAL_API_KEY=<the API key> and run "
            "`pipeline bootstrap` again, or `kubectl create secret generic temporal-api-key -n temporal-workers "
            "--from-literal=api-key=<the API key>`"
        )


def test_tls_secret_plan_names_files_and_the_exact_command(tmp_path: Path) -> None:
    config = _config(
        tmp_path, ("temporal", "tls_secret", '"temporal-client-tls"'), ("temporal", "tls_server_ca_cert_path", '"ca.pem"')
    )
    (plan,) = client_secrets.plan(config, existing={}, env={})
    assert (plan.kind, plan.action, plan.keys) == ("tls", "missing", ("tls.crt", "tls.key", "ca.crt"))
    assert plan.fix.endswith(
        "`kubectl create secret generic temporal-client-tls -n temporal-workers --type=kubernetes.io/tls "
        "--from-file=tls.crt=<client.pem> --from-file=tls.key=<client.key> --from-file=ca.crt=<ca.pem>`"
    )
    env = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "c.key")}
    config = load_config(tmp_path / "config.toml", env=env)
    (plan,) = client_secrets.plan(config, existing={}, env=env)
    assert plan.action == "write" and plan.source == f"{tmp_path / 'c.pem'}, {tmp_path / 'c.key'}, {tmp_path / 'ca.pem'}"


def test_nothing_named_nothing_planned(tmp_path: Path) -> None:
    assert client_secrets.plan(_config(tmp_path), existing={}, env={"TEMPORAL_API_KEY": "k"}) == []


def test_the_secret_objects_hold_the_values_and_only_the_secrets_do(tmp_path: Path) -> None:
    for name, data in (("c.pem", PEM), ("c.key", KEY), ("ca.pem", PEM)):
        (tmp_path / name).write_bytes(data)
    env = {
        "TEMPORAL_API_KEY": "k-123",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "c.key"),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "ca.pem"),
    }
    config = _config(tmp_path, API_KEY_SECRET, ("temporal", "tls_secret", '"temporal-client-tls"'), env=env)
    api, tls = client_secrets.plan(config, existing={}, env=env)
    api_obj = client_secrets.secret_object(api, config, env)
    tls_obj = client_secrets.secret_object(tls, config, env)
    assert api_obj["data"] == {"api-key": base64.b64encode(b"k-123").decode()}
    assert tls_obj["type"] == "kubernetes.io/tls"
    assert tls_obj["data"] == {k: base64.b64encode(v).decode() for k, v in (("tls.crt", PEM), ("tls.key", KEY), ("ca.crt", PEM))}
    assert tls_obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "temporal-deploy-pipeline"}  # type: ignore[index]
    for plan in (api, tls):
        assert "k-123" not in client_secrets.describe(plan) and "SECRET-KEY-MATERIAL" not in client_secrets.describe(plan)


def test_an_unreadable_certificate_stops_before_anything_is_written(tmp_path: Path) -> None:
    env = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "gone.pem"), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "c.key")}
    config = _config(tmp_path, ("temporal", "tls_secret", '"temporal-client-tls"'), env=env)
    (plan,) = client_secrets.plan(config, existing={}, env=env)
    with pytest.raises(
        PipelineError,
        match=r"the Temporal client certificate .*gone\.pem \(\[temporal\]\.tls_client_cert_path / "
        r"TEMPORAL_TLS_CLIENT_CERT_PATH\) does not exist$",
    ):
        client_secrets.secret_object(plan, config, env)


# ----- bootstrap's first step, as `pipeline bootstrap` runs it -----


async def test_bootstrap_prerequisites_on_a_dev_server_and_on_cloud(
    tmp_path: Path, client: Client, temporal_address: str
) -> None:
    from pipeline.selfdeploy import prerequisites

    namespace = await _new_namespace(client)
    edits = (("temporal", "namespace", f'"{namespace}"'), ("temporal", "address", f'"{temporal_address}"'))
    config = _config(tmp_path, *edits)
    said: list[str] = []

    async def added() -> None:
        said.clear()
        try:
            ok = await prerequisites(config, client, cluster=None, say=said.append)  # type: ignore[arg-type]
        except PipelineError as error:  # the namespace not in the frontend's cache yet
            raise AssertionError(error.message) from None
        assert ok, said

    await eventually(added, timeout=30, what="bootstrap's prerequisites on a new namespace")
    assert said == [f"added search attributes {', '.join(NAMES)} (Keyword) to namespace {namespace}"]

    cloud_config = _config(
        tmp_path, ("temporal", "namespace", '"prod.a1b2c"'), ("temporal", "address", '"prod.a1b2c.tmprl.cloud:7233"')
    )
    said.clear()
    cloud = _CloudLike(set(), RPCStatusCode.PERMISSION_DENIED)
    assert not await prerequisites(cloud_config, cloud, cluster=None, say=said.append)  # type: ignore[arg-type]
    assert said[-1].startswith("tcld namespace search-attributes add --namespace prod.a1b2c --search-attribute")
