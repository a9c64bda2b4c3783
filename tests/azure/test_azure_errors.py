"""Refused credentials, missing roles and unknown resources fail at once, in one clear line, through the real SDKs."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from bootstrap.azure_arm import Imitation
from pipeline import activities, workflows
from pipeline.azure import NON_RETRYABLE_ERRORS, AzureThrottled, AzureUnavailable, acr, credentials
from pipeline.azure.clients import RetrySettings, aks_client
from pipeline.azure.errors import Resource, azure_errors
from pipeline.config import ConfigError, load_config
from pipeline.models import ClusterRef, ReadRevisionInput
from tests.azure.pipeline_support import azure_env, build_input, cluster_ref  # noqa: F401  (azure_env is a fixture)

pytestmark = pytest.mark.usefixtures("azure_env")


def build_error(arm: Imitation, **kwargs: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(activities.build_image, build_input(arm, uploaded=False, **kwargs))  # type: ignore[arg-type]
    return raised.value


def assert_one_clear_line(err: ApplicationError, type_: str, *words: str) -> None:
    assert err.type == type_ and err.non_retryable, (err.type, err.message)
    assert "\n" not in err.message, err.message
    for word in words:
        assert word in err.message, err.message


def test_unknown_registry_is_one_line_not_found(arm: Imitation) -> None:
    scheduled = arm.count("Registries_ScheduleRun")
    err = build_error(arm, registry="nosuchregistry")
    assert_one_clear_line(
        err,
        "AzureNotFound",
        f"registry nosuchregistry not found in resource group {arm.resource_group} of subscription {arm.subscription_id}",
        "[acr].name",
    )
    assert arm.count("Registries_ScheduleRun") == scheduled + 1  # not retried by the SDK either


def test_refused_client_secret_is_one_line_unauthorized(arm: Imitation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")
    credentials.reset()
    err = build_error(arm)
    assert_one_clear_line(err, "AzureUnauthorized", "registry", arm.registry_name, "AZURE_CLIENT_ID")
    assert "not-the-secret" not in err.message and arm.client_secret not in err.message


def test_expired_token_is_401_unauthorized(arm: Imitation) -> None:
    arm.inject(kind="expiredToken")
    err = build_error(arm)
    assert_one_clear_line(err, "AzureUnauthorized", "401 ExpiredAuthenticationToken")


def test_identity_without_a_role_is_one_line_forbidden(arm: Imitation, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, secret = arm.no_access_client
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    credentials.reset()
    err = build_error(arm)
    assert_one_clear_line(err, "AzureForbidden", "403 AuthorizationFailed", "grant it")
    assert secret not in err.message
    with pytest.raises(ApplicationError) as raised:  # and the AKS side: the cluster activities say the same
        ActivityEnvironment().run(
            activities.read_revision, ReadRevisionInput(app="x", namespace="default", cluster=ClusterRef(aks=cluster_ref(arm)))
        )
    assert_one_clear_line(raised.value, "AzureForbidden", f"AKS cluster {arm.cluster_name}")


def test_unknown_cluster_and_resource_group(arm: Imitation) -> None:
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            activities.read_revision,
            ReadRevisionInput(app="x", namespace="default", cluster=ClusterRef(aks=cluster_ref(arm, name="nope"))),
        )
    assert_one_clear_line(raised.value, "AzureNotFound", "AKS cluster nope not found", "[aks].cluster_name")
    ref = acr.Registry(
        subscription_id=arm.subscription_id, resource_group="no-such-rg", name=arm.registry_name, endpoint=arm.endpoint
    )
    with acr.session(ref) as session, pytest.raises(Exception) as group:
        session.login_server()
    assert type(group.value).__name__ == "AzureNotFound" and "resource group no-such-rg not found" in str(group.value)


def test_throttling_and_outage_beyond_the_sdk_retries_are_retryable(arm: Imitation) -> None:
    """What the SDK's own retries (here: one) leave over is an AzureThrottled/AzureUnavailable Temporal retries."""
    retry = RetrySettings(total=1, backoff_factor=0.05)

    def fetch() -> None:
        with aks_client(subscription_id=arm.subscription_id, endpoint=arm.endpoint, retry=retry) as client:
            with azure_errors(Resource("AKS cluster", arm.cluster_name, arm.resource_group, arm.subscription_id)):
                client.managed_clusters.get(arm.resource_group, arm.cluster_name)

    arm.inject(operation="ManagedClusters_Get", status=429, count=2, retryAfter=1)
    with pytest.raises(AzureThrottled) as throttled:
        fetch()
    assert throttled.value.retryable and "429" in str(throttled.value)
    arm.inject(operation="ManagedClusters_Get", status=503, count=2)
    with pytest.raises(AzureUnavailable) as unavailable:
        fetch()
    assert unavailable.value.retryable


def test_non_retryable_azure_errors_are_named_in_the_workflow_retry_policy() -> None:
    assert set(NON_RETRYABLE_ERRORS) <= set(workflows.NON_RETRYABLE)
    assert set(NON_RETRYABLE_ERRORS) <= set(workflows.RETRY.non_retryable_error_types or [])


def test_config_errors_for_the_aks_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text(
        'target = "aks"\n[pipeline]\ndefault_app = "a"\n[acr]\nimage_pull_secret = "Not_A_Name"\n[apps.a]\ntask_queue = "a"\n'
    )
    Path("Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ConfigError) as raised:
        load_config(Path("config.toml"), env={})
    assert raised.value.problems == [
        'config.toml: [azure].subscription_id: required when target = "aks"; set the subscription UUID here or in AZURE_SUBSCRIPTION_ID',
        "config.toml: [acr].image_pull_secret: must be the NAME of a Kubernetes Secret (a DNS-1123 subdomain: lowercase letters, "
        'digits, "-" and ".", at most 253) or "", got "Not_A_Name"',
    ]
