"""The pipeline worker's Azure identity: one `DefaultAzureCredential`, configured from the environment.

Where the worker runs decides which credential of the chain answers, with no
code change:

- in AKS with workload identity: `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`
  and `AZURE_TENANT_ID` (injected by the webhook) -> WorkloadIdentityCredential;
- a service principal: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`
  -> EnvironmentCredential (this is what the local imitation hands out);
- a laptop: `az login` -> AzureCliCredential.

Two settings exist only for a non-public authority such as the local ARM
imitation (`bootstrap/azure_arm`):

- `AZURE_AUTHORITY_HOST` (read by azure-identity itself). When it is not one
  of Microsoft's login hosts, MSAL's *instance discovery* (a call to
  login.microsoftonline.com about the unknown host) is switched off, and so is
  the managed identity probe of 169.254.169.254: neither is reachable there,
  and both would only turn a clear "credential refused" into a network error.
- a CA bundle: `AZURE_CA_BUNDLE`, else `REQUESTS_CA_BUNDLE`, is passed as
  `connection_verify` to the credential and to every client, so a self-signed
  endpoint is trusted without trusting it process-wide.

The credential is cached per process (it caches tokens, and azure-identity
refreshes a cached token when less than five minutes of it remain), so every
activity asks it afresh and never holds a token longer than its call.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential

# Microsoft's Entra ID hosts (public, China, US Government): instance discovery works for these.
KNOWN_AUTHORITY_HOSTS = frozenset({"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"})
AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"  # the AKS AAD server application, same in every tenant
ARM_SCOPE_SUFFIX = "/.default"


def ca_bundle() -> str:
    """The CA bundle to verify Azure endpoints with ("" = the system's)."""
    return os.environ.get("AZURE_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or ""


def connection_kwargs() -> dict[str, Any]:
    """`connection_verify` for azure-core clients and credentials, when a CA bundle is configured."""
    bundle = ca_bundle()
    return {"connection_verify": bundle} if bundle else {}


def custom_authority() -> bool:
    """Whether AZURE_AUTHORITY_HOST points somewhere other than Microsoft's Entra ID (e.g. the local imitation)."""
    host = os.environ.get("AZURE_AUTHORITY_HOST", "")
    if not host:
        return False
    hostname = urlsplit(host if "://" in host else f"https://{host}").hostname or ""
    return hostname.lower() not in KNOWN_AUTHORITY_HOSTS


@functools.cache
def _credential(authority: str, verify: str) -> DefaultAzureCredential:
    custom = custom_authority()
    return DefaultAzureCredential(
        disable_instance_discovery=custom,
        exclude_managed_identity_credential=custom,
        **({"connection_verify": verify} if verify else {}),
    )


def default_credential() -> TokenCredential:
    """This process's DefaultAzureCredential (one per authority host and CA bundle, so tests may switch them)."""
    return _credential(os.environ.get("AZURE_AUTHORITY_HOST", ""), ca_bundle())


def reset() -> None:
    """Forget cached credentials (and their tokens): after the environment's identity changed."""
    _credential.cache_clear()
