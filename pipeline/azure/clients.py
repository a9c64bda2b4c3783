"""Management clients, built one way: ARM endpoint from config, the worker's credential, a retry policy.

- `base_url` is `[azure].endpoint` (https://management.azure.com, or the
  local imitation), and the credential's scope follows it
  (`<endpoint>/.default`) — except for the imitation, whose tokens are issued
  for management.azure.com like real ones (`credential_scopes`).
- ACR Tasks (registries' build-source upload and scheduleRun, runs) exist only
  in `api_version="2025-03-01-preview"` of azure-mgmt-containerregistry 14.x;
  the multi-API client is pinned to it for every operation group we use.
- Provisioning (`provision.py`) also uses ResourceManagementClient (resource
  groups; azure-mgmt-resource 26 keeps it in `azure.mgmt.resource.resources`,
  not `azure.mgmt.resource`) and AuthorizationManagementClient (role
  assignments, its default 2022-04-01). The registry is created with the same
  multi-API client as the Tasks calls: 2025-03-01-preview has Registries_Create.
- Workload identity (`provision.py`, `identities.py`): ManagedServiceIdentityClient
  (user-assigned identities and their federated credentials) at MSI_API_VERSION.
- Retries: azure-core's RetryPolicy retries 408/429/500/502/503/504 and
  connection errors, and waits what `Retry-After` says when the server says it
  (ARM does on 429); otherwise exponential back-off. `RETRY` bounds it so that
  a long outage comes back to Temporal, whose retry policy takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from pipeline.azure.credentials import connection_kwargs, default_credential

TASKS_API_VERSION = "2025-03-01-preview"
MSI_API_VERSION = "2024-11-30"  # azure-mgmt-msi 7.x's newest: federated identity credentials are stable there
PUBLIC_ARM = "https://management.azure.com"


@dataclass(frozen=True)
class RetrySettings:
    """azure-core RetryPolicy settings (Retry-After, when sent, overrides the back-off)."""

    total: int = 5
    backoff_factor: float = 0.8
    backoff_max: int = 30

    def kwargs(self) -> dict[str, Any]:
        return {
            "retry_total": self.total,
            "retry_backoff_factor": self.backoff_factor,
            "retry_backoff_max": self.backoff_max,
        }


RETRY = RetrySettings()


def _scopes(endpoint: str) -> list[str]:
    """The token scope for ARM at `endpoint`: public ARM's for loopback imitations, the endpoint's own otherwise."""
    host = (urlsplit(endpoint).hostname or "").lower()
    audience = PUBLIC_ARM if host in ("127.0.0.1", "localhost", "::1") else endpoint.rstrip("/")
    return [audience + "/.default"]


def _common(endpoint: str, retry: RetrySettings) -> dict[str, Any]:
    return {
        "base_url": endpoint.rstrip("/"),
        "credential_scopes": _scopes(endpoint),
        **retry.kwargs(),
        **connection_kwargs(),
    }


def acr_client(
    *, subscription_id: str, endpoint: str, credential: TokenCredential | None = None, retry: RetrySettings = RETRY
) -> ContainerRegistryManagementClient:
    """ContainerRegistryManagementClient pinned to the ACR Tasks API version."""
    return ContainerRegistryManagementClient(
        credential or default_credential(), subscription_id, api_version=TASKS_API_VERSION, **_common(endpoint, retry)
    )


def aks_client(
    *, subscription_id: str, endpoint: str, credential: TokenCredential | None = None, retry: RetrySettings = RETRY
) -> ContainerServiceClient:
    """ContainerServiceClient at its newest API version (the credential operations are stable)."""
    return ContainerServiceClient(credential or default_credential(), subscription_id, **_common(endpoint, retry))


def resource_client(
    *, subscription_id: str, endpoint: str, credential: TokenCredential | None = None, retry: RetrySettings = RETRY
) -> ResourceManagementClient:
    """ResourceManagementClient (resource groups) at its default API version."""
    return ResourceManagementClient(credential or default_credential(), subscription_id, **_common(endpoint, retry))


def authorization_client(
    *, subscription_id: str, endpoint: str, credential: TokenCredential | None = None, retry: RetrySettings = RETRY
) -> AuthorizationManagementClient:
    """AuthorizationManagementClient (role assignments) at its default API version."""
    return AuthorizationManagementClient(credential or default_credential(), subscription_id, **_common(endpoint, retry))


def msi_client(
    *, subscription_id: str, endpoint: str, credential: TokenCredential | None = None, retry: RetrySettings = RETRY
) -> ManagedServiceIdentityClient:
    """ManagedServiceIdentityClient (user-assigned identities, federated identity credentials)."""
    return ManagedServiceIdentityClient(
        credential or default_credential(), subscription_id, api_version=MSI_API_VERSION, **_common(endpoint, retry)
    )
