"""Custom search attributes that make the Web UI's workflow list read like a deployment log.

They must be registered on the Temporal server before a workflow can upsert them:
the local stack starts its dev server with them (`dev_server_flags`), and
`pipeline bootstrap` makes sure they exist in the configured namespace (`ensure`):
it adds them through the operator service where that is allowed, and on Temporal
Cloud, which refuses that, checks them and prints the `tcld` command that adds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

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


# ----- `pipeline bootstrap`: make sure they exist -----
#
# Observed state -> a pure plan -> a thin executor. Where the operator service may add
# search attributes (a self-hosted server, the dev server) bootstrap adds the missing ones;
# where it refuses (Temporal Cloud answers PermissionDenied or Unimplemented) it only checks,
# and prints the exact command that adds them.

KEYWORD = "Keyword"
# Temporal Cloud's frontends: <ns>.<account>.tmprl.cloud:7233, and the regional API-key endpoints.
_CLOUD_SUFFIXES = (".tmprl.cloud", ".api.temporal.io")
# The operator service's refusals that mean "not allowed here", not "broken".
REFUSED = frozenset({RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED})


@dataclass(frozen=True)
class Plan:
    """Which of ALL exist as Keyword, which are missing, which exist with another type (name, type)."""

    present: tuple[str, ...]
    missing: tuple[str, ...]
    wrong_type: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Outcome:
    """What `ensure` found and did; `commands` are for a person when `ok` is False."""

    ok: bool
    lines: tuple[str, ...]
    commands: tuple[str, ...] = ()


def plan(existing: Mapping[str, str]) -> Plan:
    """`existing`: custom attribute name -> type name ("Keyword", "Text", ...) as the server lists them."""
    wanted = [key.name for key in ALL]
    return Plan(
        present=tuple(n for n in wanted if existing.get(n) == KEYWORD),
        missing=tuple(n for n in wanted if n not in existing),
        wrong_type=tuple((n, existing[n]) for n in wanted if n in existing and existing[n] != KEYWORD),
    )


def is_cloud(address: str) -> bool:
    host = address.rsplit(":", 1)[0].lower()
    return host.endswith(_CLOUD_SUFFIXES)


def add_commands(missing: Sequence[str], *, namespace: str, address: str) -> list[str]:
    """The exact commands that add `missing` (tcld on Temporal Cloud, the temporal CLI elsewhere)."""
    if not missing:
        return []
    if is_cloud(address):
        flags = " ".join(f'--search-attribute "{name}={KEYWORD}"' for name in missing)
        return [f"tcld namespace search-attributes add --namespace {namespace} {flags}"]
    return [
        f"temporal operator search-attribute create --address {address} --namespace {namespace} --name {name} --type {KEYWORD}"
        for name in missing
    ]


def _type_name(value: int) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")  # type: ignore[arg-type]


async def observe(client: Client, *, namespace: str) -> tuple[dict[str, str], bool]:
    """(custom attributes name -> type, listed): from the operator service, or, where it refuses to list,
    by asking visibility about each of ALL (an unknown attribute makes a query InvalidArgument)."""
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError as error:
        if error.status not in REFUSED:
            raise
    else:
        return {name: _type_name(kind) for name, kind in listed.custom_attributes.items()}, True
    found: dict[str, str] = {}
    for key in ALL:
        try:
            await client.count_workflows(f"{key.name} = 'pipeline-bootstrap-check'")
        except RPCError as error:
            if error.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
        else:
            found[key.name] = KEYWORD  # a query on it is accepted: it exists (its type is not shown here)
    return found, False


async def ensure(client: Client, *, namespace: str, address: str) -> Outcome:
    """Add the missing ones where the server allows it; else say which are missing and how to add them."""
    existing, _ = await observe(client, namespace=namespace)
    p = plan(existing)
    if p.wrong_type:
        wrong = ", ".join(f"{n} is {t}" for n, t in p.wrong_type)
        return Outcome(
            False,
            (f"search attributes of namespace {namespace} have the wrong type ({wrong}; the pipeline needs {KEYWORD})",),
            tuple(f"remove {n} from namespace {namespace} and run `pipeline bootstrap` again" for n, _ in p.wrong_type),
        )
    if not p.missing:
        return Outcome(True, (f"search attributes {', '.join(p.present)} exist in namespace {namespace}",))
    request = AddSearchAttributesRequest(
        namespace=namespace, search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in p.missing}
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as error:
        if error.status not in REFUSED:
            raise
        return Outcome(
            False,
            (
                f"search attributes {', '.join(p.missing)} are missing in namespace {namespace}, and {address} does not "
                f"let this client add them ({error.status.name}); add them with:",
            ),
            tuple(add_commands(p.missing, namespace=namespace, address=address)),
        )
    return Outcome(True, (f"added search attributes {', '.join(p.missing)} ({KEYWORD}) to namespace {namespace}",))
