"""Registries in ABAC repository-permission mode (issue 22 item 0), through the real SDKs.

The mode is `properties.roleAssignmentMode`: in the 2025-11-01 examples (RegistryCreate.json) and in
azure-mgmt-containerregistry 14's v2025_03_01_preview models (its default 2025-04-01 has none: the imitation
neither reads nor shows it there). In ABAC mode the data plane honours only the Container Registry Repository
roles' dataActions (the token exchange, tests/azure/test_acr_platforms.py), so bootstrap grants the kubelet
identity Container Registry Repository Reader and the pipeline identity Container Registry Repository Writer
instead of AcrPull/AcrPush, whether it creates the registry in that mode or finds it so; a run's push has
data-plane access only with `credentials.sourceRegistry.identity = "[caller]"` and a caller allowed to write.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models

from bootstrap.azure_arm import Imitation
from pipeline.azure import acr, provision, roles
from tests.azure.test_bootstrap_azure import (
    KINDS,
    LOCATION,
    Names,
    azure_env as azure_env,  # noqa: F401 - the fixture, used by name
)
from tests.helpers.azure import Clients

ABAC, LEGACY = "AbacRepositoryPermissions", "LegacyRegistryPermissions"
ABAC_KINDS = tuple(
    kind.replace("AcrPull role", "Container Registry Repository Reader role").replace(
        "AcrPush role", "Container Registry Repository Writer role"
    )
    for kind in KINDS
)


def _roles_of(az: Clients, scope: str, principal: str) -> set[str]:
    listed = az.roles.list_for_scope(scope, filter=f"principalId eq '{principal}'")
    return {roles.ROLE_NAMES.get(str(a.role_definition_id).rsplit("/", 1)[-1], "?") for a in listed}


def test_the_mode_is_created_shown_and_refused_when_unknown(arm: Imitation) -> None:
    az = Clients(arm)
    name = f"abac{uuid.uuid4().hex[:8]}"
    body = acr_models.Registry(location=arm.location, sku=acr_models.Sku(name="Basic"), role_assignment_mode=ABAC)
    created = az.acr.registries.begin_create(arm.resource_group, name, body).result()
    assert created.role_assignment_mode == ABAC
    assert az.acr.registries.get(arm.resource_group, name).role_assignment_mode == ABAC
    path = f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    assert az.raw("GET", path, "2025-11-01").json()["properties"]["roleAssignmentMode"] == ABAC
    assert "roleAssignmentMode" not in az.raw("GET", path, "2025-04-01").json()["properties"]  # not in that version
    refused = az.raw(
        "PUT",
        path,
        "2025-11-01",
        {"location": arm.location, "sku": {"name": "Basic"}, "properties": {"roleAssignmentMode": "Abac"}},
    )
    assert refused.status_code == 400 and "roleAssignmentMode" in refused.json()["error"]["message"]
    seeded = az.acr.registries.get(arm.resource_group, arm.registry_name)
    assert seeded.role_assignment_mode == LEGACY


@pytest.mark.usefixtures("azure_env")
def test_bootstrap_creates_an_abac_registry_and_grants_the_repository_roles(nothing: Imitation) -> None:
    names = Names.fresh()
    plan = replace(names.plan(nothing), role_assignment_mode=ABAC)
    outcomes = provision.provision(plan, say=lambda _: None)
    assert [(o.kind, o.created) for o in outcomes] == [(kind, True) for kind in ABAC_KINDS]
    az = Clients(nothing)
    registry = az.acr.registries.get(names.group, names.registry)
    assert registry.role_assignment_mode == ABAC
    cluster = az.aks.get(names.group, names.cluster).properties
    assert cluster is not None
    kubelet = str((cluster.identity_profile or {})["kubeletidentity"].object_id)
    assert _roles_of(az, str(registry.id), kubelet) == {"Container Registry Repository Reader"}
    identity = next(o for o in outcomes if o.kind == "managed identity").detail.removeprefix("client id ")
    principal = next(
        i["principal_id"]
        for i in json.loads((nothing.state_dir / "seed.json").read_text())["identities"]
        if i["client_id"] == identity
    )
    assert _roles_of(az, str(registry.id), principal) == {
        "Container Registry Tasks Contributor",
        "Container Registry Repository Writer",
    }


@pytest.mark.usefixtures("azure_env")
def test_an_existing_abac_registry_is_read_and_honoured(nothing: Imitation) -> None:
    """The config asks for the legacy mode, but the registry someone made is ABAC: the repository roles are granted."""
    names = Names.fresh()
    az = Clients(nothing)
    az.groups.create_or_update(names.group, {"location": LOCATION})
    body = acr_models.Registry(location=LOCATION, sku=acr_models.Sku(name="Standard"), role_assignment_mode=ABAC)
    az.acr.registries.begin_create(names.group, names.registry, body).result()
    outcomes = provision.provision(names.plan(nothing), say=lambda _: None)
    assert [o.kind for o in outcomes] == list(ABAC_KINDS)
    assert "ABAC repository permissions" in outcomes[1].detail


def _private(arm: Imitation, registry: str, run_id: str) -> dict[str, str]:
    return dict(json.loads((arm.state_dir / "runs" / registry.lower() / f"{run_id}.json").read_text())["private"])


@pytest.mark.usefixtures("arm_env")
def test_a_run_pushes_to_an_abac_registry_only_as_a_caller_allowed_to(arm: Imitation) -> None:
    """Without `[caller]` the run has no data-plane access; with it, the caller needs a Repository role's write.
    (What the imitation records as the registry's answer to the run's push; the build itself is builds.py's.)"""
    az = Clients(arm)
    name = f"abacrun{uuid.uuid4().hex[:6]}"
    body = acr_models.Registry(location=arm.location, sku=acr_models.Sku(name="Basic"), role_assignment_mode=ABAC)
    registry = az.acr.registries.begin_create(arm.resource_group, name, body).result()
    target = acr.Registry(arm.subscription_id, arm.resource_group, name, arm.endpoint)
    with acr.session(target) as session:
        source = session.upload_source(b"")

        def schedule(identity: str) -> str:
            run = session.schedule_docker_build(
                source=source,
                image_names=["abac/probe:1"],
                dockerfile="Dockerfile",
                target="",
                platform="linux/amd64",
                build_args={},
                timeout_seconds=600,
                source_registry_identity=identity,
            )
            session.cancel_run(run.run_id)
            return run.run_id

        without = _private(arm, name, schedule(""))
        assert without["pushDenied"].startswith("unauthorized: authentication required")
        owner_only = _private(arm, name, schedule("[caller]"))  # Owner has no dataActions: ABAC gives it no push
        assert owner_only["sourceRegistryIdentity"] == "[caller]"
        assert owner_only["pushDenied"] == "denied: requested access to the resource is denied"
        az.grant(str(registry.id), "Container Registry Repository Writer", arm.object_id("pipeline"))
        assert _private(arm, name, schedule("[caller]"))["pushDenied"] == ""
        # A legacy registry lets every run push as the registry's own.
        legacy = acr.Registry(arm.subscription_id, arm.resource_group, arm.registry_name, arm.endpoint)
    with acr.session(legacy) as session:
        run = session.schedule_docker_build(
            source=session.upload_source(b""),
            image_names=["abac/probe:1"],
            dockerfile="Dockerfile",
            target="",
            platform="linux/amd64",
            build_args={},
            timeout_seconds=600,
        )
        session.cancel_run(run.run_id)
        assert _private(arm, arm.registry_name, run.run_id)["pushDenied"] == ""


def test_an_unknown_mode_in_the_sdk_is_refused_before_anything_runs(arm: Imitation) -> None:
    az = Clients(arm)
    body = acr_models.Registry(location=arm.location, sku=acr_models.Sku(name="Basic"), role_assignment_mode="Other")
    with pytest.raises(HttpResponseError) as raised:
        az.acr.registries.begin_create(arm.resource_group, f"abacbad{uuid.uuid4().hex[:6]}", body).result()
    assert raised.value.status_code == 400
