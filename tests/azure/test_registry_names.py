"""Registry names are global (issue 22 item 4): checkNameAvailability in the imitation, the derived default name,
and `pipeline bootstrap --azure` refusing a taken name before it creates anything.

The imitation's stand-in for other customers' registries is `registry_names.TAKEN_ELSEWHERE` (`temporalworkers`
among them); the answers' shapes are RegistryCheckNameAvailable.json / RegistryCheckNameNotAvailable.json.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models

from bootstrap.azure_arm import Imitation
from bootstrap.azure_arm.arm.providers.registry_names import TAKEN_ELSEWHERE
from pipeline.azure import preflight, provision
from pipeline.config import derived_registry_name, load_config
from tests.azure.test_bootstrap_azure import (
    KINDS,
    PUTS,
    Names,
    azure_env as azure_env,  # noqa: F401 - the fixture, used by name
    delta,
    puts,
)
from tests.helpers.azure import Clients

EXAMPLES = Path("/work/shared/azure-examples/2025-11-01")
CHECK = "/subscriptions/{}/providers/Microsoft.ContainerRegistry/checkNameAvailability"


def _check(az: Clients, name: str, kind: str = "Microsoft.ContainerRegistry/registries") -> dict[str, object]:
    answer = az.raw("POST", CHECK.format(az.arm.subscription_id), "2025-11-01", {"name": name, "type": kind})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.unit
def test_the_derived_name_is_stable_valid_and_per_group() -> None:
    one = derived_registry_name("00000000-0000-0000-0000-000000000001", "temporal-workers")
    assert one == derived_registry_name("00000000-0000-0000-0000-000000000001", "Temporal-Workers")
    assert one != derived_registry_name("00000000-0000-0000-0000-000000000001", "other-rg")
    assert re.fullmatch(r"temporal[0-9a-f]{10}", one)
    assert "temporalworkers" in TAKEN_ELSEWHERE


def test_check_name_availability_answers_as_the_examples_do(arm: Imitation) -> None:
    az = Clients(arm)
    if EXAMPLES.exists():
        taken = json.loads((EXAMPLES / "RegistryCheckNameNotAvailable.json").read_text())["responses"]["200"]["body"]
        assert set(_check(az, "temporalworkers")) == set(taken)
        free = json.loads((EXAMPLES / "RegistryCheckNameAvailable.json").read_text())["responses"]["200"]["body"]
        assert _check(az, f"free{uuid.uuid4().hex[:10]}") == free
    assert _check(az, "temporalworkers") == {
        "nameAvailable": False,
        "reason": "AlreadyExists",
        "message": "The registry temporalworkers is already in use.",
    }
    assert _check(az, arm.registry_name.upper())["reason"] == "AlreadyExists"  # this imitation's own, any case
    assert _check(az, "no-dashes")["reason"] == "Invalid"
    wrong = az.raw("POST", CHECK.format(arm.subscription_id), "2025-11-01", {"name": "abcdef", "type": "Microsoft.Other/x"})
    assert wrong.status_code == 400
    # Through the SDK (2025-03-01-preview), as bootstrap asks.
    status = az.acr.registries.check_name_availability(
        acr_models.RegistryNameCheckRequest(name="TemporalWorkers", type="Microsoft.ContainerRegistry/registries")
    )
    assert (status.name_available, status.reason) == (False, "AlreadyExists")


def test_creating_a_name_taken_elsewhere_is_refused_as_acr_refuses_it(arm: Imitation) -> None:
    az = Clients(arm)
    body = acr_models.Registry(location=arm.location, sku=acr_models.Sku(name="Basic"))
    with pytest.raises(HttpResponseError) as raised:
        az.acr.registries.begin_create(arm.resource_group, "temporalworkers", body).result()
    assert raised.value.status_code == 400 and raised.value.error is not None
    assert raised.value.error.code == "AlreadyInUse"
    assert "temporalworkers.azurecr.io is already in use" in str(raised.value.error.message)


@pytest.mark.usefixtures("azure_env")
def test_a_taken_name_is_refused_before_anything_is_created_with_a_free_suggestion(nothing: Imitation) -> None:
    names = Names.fresh()
    plan = replace(names.plan(nothing), registry_name="temporalworkers")
    before = puts(nothing)
    with pytest.raises(preflight.RegistryNameTaken) as raised:
        provision.provision(plan, say=lambda _: None)
    assert delta(puts(nothing), before) == dict.fromkeys(PUTS, 0)
    with pytest.raises(ResourceNotFoundError):
        Clients(nothing).groups.get(names.group)
    suggested = re.search(r'set \[acr\]\.name = "([a-z0-9]+)" \(free now\)', raised.value.message)
    assert suggested is not None, raised.value.message
    assert _check(Clients(nothing), suggested.group(1)) == {"nameAvailable": True}


@pytest.mark.usefixtures("azure_env")
def test_from_nothing_the_default_config_gets_a_free_derived_name(nothing: Imitation, tmp_path: Path) -> None:
    """A config that names no registry: bootstrap's plan has the derived name, free in Azure, and creates it."""
    names = Names.fresh()
    text = names.config(nothing, tmp_path).read_text()
    config_path = tmp_path / "default-name.toml"
    config_path.write_text(re.sub(r'(?m)^name = ".*"\n', "", text, count=1))
    config = load_config(config_path, env={})
    expected = derived_registry_name(nothing.subscription_id, names.group)
    assert config.acr.name == expected
    plan = replace(provision.plan_for(config), login_server="127.0.0.1:5000")  # the imitation's loginServer
    outcomes = provision.provision(plan, say=lambda _: None)
    assert [(o.kind, o.name, o.created) for o in outcomes][:2] == [
        ("resource group", names.group, True),
        ("registry", expected, True),
    ]
    assert [o.kind for o in outcomes] == list(KINDS)
    assert _check(Clients(nothing), expected)["reason"] == "AlreadyExists"  # now it is this subscription's
