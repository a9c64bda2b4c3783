"""Per-action authorization (issue 22 items 1 and 2): Azure's built-in roles in the imitation and the product, and
`pipeline bootstrap --azure` as Owner, Contributor and Reader.

ids          every role GUID in pipeline/ and bootstrap/azure_arm/ is one of builtin-roles.json's (Azure's own
             definitions); the "granted by" lists bootstrap prints are what those definitions say.
imitation    the seeded Contributor and Reader clients (DIR/env.contributor, DIR/env.reader) are refused with ARM's
             AuthorizationFailed exactly where their roles stop; assignments made through the API take effect at
             their scope and below only; the permissions API answers for the caller.
matrix       through the real CLI against the empty imitation: Owner passes the checks; Contributor stops before any
             PUT naming Microsoft.Authorization/roleAssignments/write; with --no-role-assignments it creates the
             rest and writes `az role assignment create` commands, which an Owner makes through the SDK, after which
             `pipeline doctor` shows them; Reader stops at once.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.resource.resources import ResourceManagementClient

from bootstrap.azure_arm import Imitation, authorization
from bootstrap.azure_arm.state import ROLE_CLIENTS
from pipeline.azure import errors as azure_errors, provision, roles
from tests.azure.test_bootstrap_azure import (
    PIPELINE,
    PUTS,
    Names,
    azure_env as azure_env,  # noqa: F401 - the fixture, used by name
    delta,
    puts,
    run_cli,
)
from tests.helpers.azure import ARM_SCOPE

REPO = Path(__file__).resolve().parents[2]
BUILTIN = json.loads((Path(__file__).parent / "examples" / "builtin-roles.json").read_text())
BY_NAME = {r["roleName"]: r for r in BUILTIN}
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# GUIDs in the sources that are no role: the AKS server application, the Azure CLI's public client (kubelogin),
# ACR's refresh-token user name and a placeholder in a config message.
NOT_ROLES = {
    "6dae42f8-4368-4678-94ff-3960e28e3630",
    "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
    "00000000-0000-0000-0000-000000000000",
}
CANDIDATES = ("Owner", "Contributor", "Reader", "User Access Administrator", "Role Based Access Control Administrator",
              "Managed Identity Contributor")  # fmt: skip
ASSIGN = "Microsoft.Authorization/roleAssignments/write"


def _grants(role_name: str, action: str) -> bool:
    return authorization.role_allows(BY_NAME[role_name], action)


# ----- ids and definitions (no imitation) -----


@pytest.mark.unit
def test_the_role_copies_are_azures_file_byte_for_byte() -> None:
    shared = Path(__file__).parent / "examples" / "builtin-roles.json"
    assert (REPO / "bootstrap/azure_arm/builtin-roles.json").read_bytes() == shared.read_bytes()


@pytest.mark.unit
def test_every_role_id_in_product_and_imitation_is_a_builtin_one() -> None:
    documented = {r["id"] for r in BUILTIN}
    sources = [*REPO.glob("pipeline/**/*.py"), *REPO.glob("bootstrap/azure_arm/**/*.py")]
    found = {m.group(0).lower(): path for path in sources for m in GUID.finditer(path.read_text())}
    strays = {guid: str(path.relative_to(REPO)) for guid, path in found.items() if guid not in documented | NOT_ROLES}
    assert strays == {}
    assert {name: roles.ROLE_IDS[name] for name in roles.ROLE_IDS} == {name: BY_NAME[name]["id"] for name in roles.ROLE_IDS}
    assert provision.ACR_PULL_ROLE == BY_NAME["AcrPull"]["id"] == "7f951dda-4ed3-4680-a7ca-43fe172d538d"
    assert {r: authorization.ROLE_IDS[r] for r in ("Owner", *ROLE_CLIENTS.values())} == {
        r: BY_NAME[r]["id"] for r in ("Owner", *ROLE_CLIENTS.values())
    }


@pytest.mark.unit
@pytest.mark.parametrize("action", [*roles.READ_ACTIONS, *roles.WRITE_ACTIONS, ASSIGN])
def test_the_roles_bootstrap_names_for_an_action_grant_it(action: str) -> None:
    named = roles.granted_by(action)
    assert all(_grants(name, action) for name in named), named
    writers = {name for name in CANDIDATES if _grants(name, action)}
    if action not in roles.READ_ACTIONS:  # for writes the list is complete (every reader role also reads)
        assert set(named) == writers
    assert action != ASSIGN or "Contributor" not in named


@pytest.mark.unit
def test_contributor_may_create_but_not_assign_and_notactions_subtract_per_role() -> None:
    contributor, owner, reader = BY_NAME["Contributor"], BY_NAME["Owner"], BY_NAME["Reader"]
    assert authorization.role_allows(contributor, "Microsoft.ContainerRegistry/registries/write")
    assert not authorization.role_allows(contributor, ASSIGN)
    assert not authorization.role_allows(contributor, "microsoft.authorization/ROLEASSIGNMENTS/write")  # ARM: any case
    assert authorization.role_allows(owner, ASSIGN)
    assert authorization.role_allows(reader, "Microsoft.ContainerService/managedClusters/read")
    assert not authorization.role_allows(reader, "Microsoft.ContainerService/managedClusters/write")
    assert not authorization.role_allows(BY_NAME["AcrPull"], "Microsoft.ContainerRegistry/registries/read")
    # The product evaluates the permissions API the same way: Contributor + RBAC Administrator may assign.
    entries = [roles.permission_of(BY_NAME[n]) for n in ("Contributor", "Role Based Access Control Administrator")]
    assert roles.allowed(entries, ASSIGN) and not roles.allowed(entries[:1], ASSIGN)


@pytest.mark.unit
def test_the_403_hint_never_says_contributor_can_assign_roles() -> None:
    message = (
        "The client 'c' with object id 'o' does not have authorization to perform action "
        "'Microsoft.Authorization/roleAssignments/write' over scope '/subscriptions/s' or the scope is invalid."
    )
    hint = azure_errors.forbidden_hint(message)
    assert "Role Based Access Control Administrator" in hint and "Contributor cannot assign roles" in hint
    assert "Contributor or" not in hint and "Contributor on" not in hint
    write = message.replace("Microsoft.Authorization/roleAssignments/write", "Microsoft.ContainerRegistry/registries/write")
    assert azure_errors.forbidden_hint(write).endswith("Contributor or Owner")


@pytest.mark.unit
@pytest.mark.parametrize("state", ["Upgrading", "Scaling", "Starting", "Creating", "Updating", "Deleting"])
def test_a_resource_in_an_operation_is_waited_for_not_repaired(state: str) -> None:
    resource = azure_errors.Resource("AKS cluster", "c", "rg", "s")
    with pytest.raises(provision.IncompatibleResource, match=f"is still {state} .*wait for it to finish") as raised:
        provision._settled(resource, state)
    assert "repair" not in raised.value.message


# ----- the imitation's clients -----


def _client_credential(arm: Imitation, env: dict[str, str]) -> ClientSecretCredential:
    return ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )


def _raw(arm: Imitation, env: dict[str, str], method: str, path: str, version: str, body: object = None) -> requests.Response:
    token = _client_credential(arm, env).get_token(ARM_SCOPE).token
    return requests.request(
        method,
        f"{arm.endpoint}{path}?api-version={version}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=str(arm.ca_bundle),
        timeout=30,
    )


def _assignment_body(arm: Imitation, role: str, principal: str) -> dict[str, object]:
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{BY_NAME[role]['id']}",
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }


def test_env_files_of_the_contributor_and_reader_have_the_form_of_env(arm: Imitation) -> None:
    for name in ROLE_CLIENTS:
        env = arm.client_env(name)
        assert set(env) == set(arm.env) and env["AZURE_CLIENT_ID"] != arm.env["AZURE_CLIENT_ID"]
        assert {k: v for k, v in env.items() if not k.startswith("AZURE_CLIENT_")} == {
            k: v for k, v in arm.env.items() if not k.startswith("AZURE_CLIENT_")
        }


def test_contributor_and_reader_are_refused_with_arms_message(arm: Imitation) -> None:
    contributor, reader = arm.client_env("contributor"), arm.client_env("reader")
    group = f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}"
    assignment = f"{group}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    refused = _raw(arm, contributor, "PUT", assignment, "2022-04-01", _assignment_body(arm, "Reader", arm.object_id("reader")))
    assert refused.status_code == 403, refused.text
    oid = arm.object_id("contributor")
    assert refused.json()["error"] == {
        "code": "AuthorizationFailed",
        "message": f"The client '{contributor['AZURE_CLIENT_ID']}' with object id '{oid}' does not have authorization "
        f"to perform action '{ASSIGN}' over scope '{assignment}' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.",
    }
    assert refused.headers["x-ms-failure-cause"] == "gateway"
    # Contributor may write resources; Reader may only read them.
    tags = {"location": arm.location, "tags": {"probe": "contributor"}}
    assert _raw(arm, contributor, "PUT", group, "2025-04-01", tags).status_code == 200
    assert _raw(arm, reader, "GET", group, "2025-04-01").status_code == 200
    written = _raw(arm, reader, "PUT", group, "2025-04-01", tags)
    assert written.status_code == 403
    assert "action 'Microsoft.Resources/subscriptions/resourceGroups/write'" in written.json()["error"]["message"]
    no_access_id, no_access_secret = arm.no_access_client
    nobody = {**arm.env, "AZURE_CLIENT_ID": no_access_id, "AZURE_CLIENT_SECRET": no_access_secret}
    assert _raw(arm, nobody, "GET", group, "2025-04-01").status_code == 403


def test_an_assignment_made_through_the_api_takes_effect_at_its_scope_and_below(arm: Imitation) -> None:
    """The Owner makes the Contributor a Role Based Access Control Administrator of one new group (through the
    SDK): the Contributor may then assign roles there, and still nowhere else."""
    contributor = arm.client_env("contributor")
    owner = ResourceManagementClient(
        _client_credential(arm, arm.env),
        arm.subscription_id,
        base_url=arm.endpoint,
        credential_scopes=[ARM_SCOPE],
        connection_verify=str(arm.ca_bundle),
    )
    granted_group, other_group = f"rg-rbac-{uuid.uuid4().hex[:6]}", f"rg-other-{uuid.uuid4().hex[:6]}"
    for name in (granted_group, other_group):
        owner.resource_groups.create_or_update(name, {"location": arm.location})
    authz = AuthorizationManagementClient(
        _client_credential(arm, arm.env),
        arm.subscription_id,
        base_url=arm.endpoint,
        credential_scopes=[ARM_SCOPE],
        connection_verify=str(arm.ca_bundle),
    )
    scope = f"/subscriptions/{arm.subscription_id}/resourceGroups/{granted_group}"
    rbac_admin = BY_NAME["Role Based Access Control Administrator"]["id"]
    authz.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{rbac_admin}",
            principal_id=arm.object_id("contributor"),
            principal_type="ServicePrincipal",
        ),
    )
    body = _assignment_body(arm, "Reader", arm.object_id("reader"))
    there = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    assert _raw(arm, contributor, "PUT", there, "2022-04-01", body).status_code == 201
    elsewhere = f"/subscriptions/{arm.subscription_id}/resourceGroups/{other_group}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    assert _raw(arm, contributor, "PUT", elsewhere, "2022-04-01", body).status_code == 403
    # The permissions API now lists both of the Contributor's roles at that group, one at the other.
    listed = authz.permissions.list_for_resource_group(granted_group)
    assert [p.actions for p in listed] == [["*"]]  # the Owner's own answer: its one role
    mine = _raw(arm, contributor, "GET", f"{scope}/providers/Microsoft.Authorization/permissions", "2022-04-01").json()
    expected = [BY_NAME["Contributor"]["actions"], BY_NAME["Role Based Access Control Administrator"]["actions"]]
    assert sorted(e["actions"] for e in mine["value"]) == sorted(expected)
    other = f"/subscriptions/{arm.subscription_id}/resourceGroups/{other_group}/providers/Microsoft.Authorization/permissions"
    assert [e["notActions"] for e in _raw(arm, contributor, "GET", other, "2022-04-01").json()["value"]] == [
        BY_NAME["Contributor"]["notActions"]
    ]
    nobody_id, nobody_secret = arm.no_access_client
    nobody = {**arm.env, "AZURE_CLIENT_ID": nobody_id, "AZURE_CLIENT_SECRET": nobody_secret}
    answered = _raw(
        arm, nobody, "GET", f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/permissions", "2022-04-01"
    )
    assert answered.status_code == 200 and answered.json() == {"value": []}


def test_a_reader_cannot_list_through_the_sdk_what_it_may_not_write(arm: Imitation) -> None:
    """Reader's `*/read` covers role assignments' read: listing works, creating through the SDK is a 403."""
    reader = arm.client_env("reader")
    authz = AuthorizationManagementClient(
        _client_credential(arm, reader),
        arm.subscription_id,
        base_url=arm.endpoint,
        credential_scopes=[ARM_SCOPE],
        connection_verify=str(arm.ca_bundle),
    )
    scope = f"/subscriptions/{arm.subscription_id}"
    principal = f"principalId eq '{arm.object_id('reader')}'"
    mine = list(authz.role_assignments.list_for_scope(scope, filter=f"atScope() and {principal}"))
    assert [(a.scope, str(a.role_definition_id).rsplit("/", 1)[-1]) for a in mine] == [(scope, BY_NAME["Reader"]["id"])]
    below = list(authz.role_assignments.list_for_scope(scope, filter=principal))  # also those on groups below
    assert {a.scope for a in below} >= {scope} and all(str(a.scope).startswith(scope) for a in below)
    owner_role = (
        f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{BY_NAME['Owner']['id']}"
    )
    parameters = RoleAssignmentCreateParameters(role_definition_id=owner_role, principal_id=arm.object_id("reader"))
    with pytest.raises(HttpResponseError) as raised:
        authz.role_assignments.create(scope, str(uuid.uuid4()), parameters)
    assert raised.value.status_code == 403 and raised.value.error is not None
    assert raised.value.error.code == "AuthorizationFailed"


# ----- the role matrix, through the CLI -----


def _as(arm: Imitation, who: str) -> SimpleNamespace:
    """What run_cli needs of an imitation (its `env`), with the credential of seeded client `who`."""
    return SimpleNamespace(env=arm.client_env(who))


def test_contributor_bootstrap_stops_before_creating_anything(nothing: Imitation, tmp_path: Path) -> None:
    names = Names.fresh()
    before = puts(nothing)
    run = run_cli(_as(nothing, "contributor"), names.config(nothing, tmp_path), "bootstrap", "--azure")  # type: ignore[arg-type]
    assert run.code == 2, run.output
    assert (
        "  missing Microsoft.Authorization/roleAssignments/write: granted by Role Based Access Control Administrator, "
        "User Access Administrator or Owner"
    ) in run.stderr.splitlines()
    assert "--no-role-assignments" in run.stderr and "Traceback" not in run.output
    assert delta(puts(nothing), before) == dict.fromkeys(PUTS, 0)


def test_reader_bootstrap_stops_at_once(nothing: Imitation, tmp_path: Path) -> None:
    names = Names.fresh()
    before = puts(nothing)
    run = run_cli(_as(nothing, "reader"), names.config(nothing, tmp_path), "bootstrap", "--azure")  # type: ignore[arg-type]
    assert run.code == 2, run.output
    missing = [line for line in run.stderr.splitlines() if line.startswith("  missing ")]
    assert [line.split(":")[0].split()[-1] for line in missing] == [*roles.WRITE_ACTIONS, ASSIGN]
    assert delta(puts(nothing), before) == dict.fromkeys(PUTS, 0)
    assert "created" not in run.stdout


def test_contributor_creates_the_rest_and_an_owner_makes_the_printed_assignments(nothing: Imitation, tmp_path: Path) -> None:
    names = Names.fresh()
    config = names.config(nothing, tmp_path)
    script = tmp_path / "roles.sh"
    before = puts(nothing)
    run = run_cli(
        _as(nothing, "contributor"),
        config,
        "bootstrap",
        "--azure",
        "--no-role-assignments",
        "--role-assignments-file",
        str(script),  # type: ignore[arg-type]
    )
    assert run.code == 2, run.output
    created = delta(puts(nothing), before)
    assert created == {**dict.fromkeys(PUTS, 1), "RoleAssignments_Create": 0}
    commands = [line for line in script.read_text().splitlines() if line.startswith("az role assignment create")]
    assert len(commands) == 4 and all(c in run.stderr for c in commands)
    assert f"--role {roles.ROLE_IDS['AcrPull']} " in commands[0]
    # The Owner makes them through the SDK, exactly as printed.
    authz = AuthorizationManagementClient(
        _client_credential(nothing, nothing.env),
        nothing.subscription_id,
        base_url=nothing.endpoint,
        credential_scopes=[ARM_SCOPE],
        connection_verify=str(nothing.ca_bundle),
    )
    for command in commands:
        args = shlex.split(command)
        value = {args[i]: args[i + 1] for i in range(4, len(args) - 1, 2)}
        authz.role_assignments.create(
            value["--scope"],
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=f"/subscriptions/{nothing.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{value['--role']}",
                principal_id=value["--assignee-object-id"],
                principal_type=value["--assignee-principal-type"],
            ),
        )
    doctor = subprocess.run(
        [PIPELINE, "--config", str(config), "doctor"],
        env=run_env(nothing),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    line = next(line for line in doctor.stdout.splitlines() if "azure roles" in line)
    assert line.startswith("ok") and "4 role assignments exist" in line, doctor.stdout + doctor.stderr
    assert "AcrPull for " in line and "Azure Kubernetes Service Cluster User Role for temporal-pipeline" in line
    # Run again as the Contributor: every assignment exists now, so the bring-up goes on and deploys the pipeline.
    middle = puts(nothing)
    again = run_cli(_as(nothing, "contributor"), config, "bootstrap", "--azure", "--no-role-assignments", timeout=300)  # type: ignore[arg-type]
    assert again.code == 0, again.output
    assert delta(puts(nothing), middle) == dict.fromkeys(PUTS, 0)
    assert "missing (an administrator must make it)" not in again.stdout


@pytest.mark.usefixtures("azure_env")
def test_owner_passes_the_checks_and_bootstrap_makes_the_assignments(nothing: Imitation) -> None:
    """The Owner's in-process bring-up (the full CLI run is tests/azure/test_bootstrap_azure.py's)."""
    names = Names.fresh()
    before = puts(nothing)
    outcomes = provision.provision(names.plan(nothing), say=lambda _: None)
    assert not provision.pending_grants(outcomes)
    assert delta(puts(nothing), before)["RoleAssignments_Create"] == 4


def run_env(arm: Imitation) -> dict[str, str]:
    """The CLI's environment for `pipeline doctor` with the Owner's credential (as run_cli builds it)."""
    import os

    from tests.azure.test_bootstrap_azure import CREDENTIAL_ENV

    prefixes = ("PIPELINE", "TEMPORAL_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, **{k: arm.env[k] for k in CREDENTIAL_ENV}}
