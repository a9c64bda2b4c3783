"""A registry access token for ACR's data plane (manifests), from the pipeline worker's Entra ID token.

ACR answers an anonymous `/v2/` request with 401 and a challenge
`Bearer realm="https://<login server>/oauth2/token",service="<login server>"`.
As ACR documents it, the Entra ID access token (for ARM) is exchanged twice:

    POST https://<login server>/oauth2/exchange   grant_type=access_token, service, tenant, access_token
        -> {"refresh_token": ...}                   (an ACR refresh token)
    POST <realm>                                  grant_type=refresh_token, service, scope, refresh_token
        -> {"access_token": ...}                    (for scope "repository:<repo>:pull,push")

The tokens are used for one request's retry and dropped: never logged, heartbeated or returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import requests
from azure.core.exceptions import ClientAuthenticationError

from pipeline.azure.credentials import ca_bundle, default_credential
from pipeline.azure.errors import AzureError, AzureForbidden, AzureUnauthorized, AzureUnavailable

# The exchange takes an Entra ID token for ARM, as ACR's AAD-OAuth documentation and the
# azure-containerregistry SDK's exchange client ask for it (and as the local imitation checks it).
ACR_SCOPE = "https://management.core.windows.net/.default"
TIMEOUT = (10, 30)


def token_source(login_server: str, *, tenant: str = "") -> Callable[[str, str, str], str]:
    """(realm, service, scope) -> an ACR access token for `scope`, exchanged from this process's Entra ID token.

    Each source keeps its tokens for its own life only (one activity's requests), one per scope.
    """
    cache: dict[tuple[str, str, str], str] = {}

    def token(realm: str, service: str, scope: str) -> str:
        if (realm, service, scope) not in cache:
            cache[(realm, service, scope)] = exchange(realm, service, scope)
        return cache[(realm, service, scope)]

    def exchange(realm: str, service: str, scope: str) -> str:
        try:
            entra = default_credential().get_token(ACR_SCOPE).token
        except ClientAuthenticationError as exc:
            raise AzureUnauthorized(
                f"registry {login_server}: no Entra ID token for the pipeline worker; {AzureUnauthorized.hint}"
            ) from exc
        refresh = _post(
            f"https://{login_server}/oauth2/exchange",
            {
                "grant_type": "access_token",
                "service": service or login_server,
                "access_token": entra,
                **({"tenant": t} if (t := tenant or os.environ.get("AZURE_TENANT_ID", "")) else {}),
            },
            "refresh_token",
            login_server,
        )
        return _post(
            realm or f"https://{login_server}/oauth2/token",
            {"grant_type": "refresh_token", "service": service or login_server, "scope": scope, "refresh_token": refresh},
            "access_token",
            login_server,
        )

    return token


def _post(url: str, form: dict[str, str], key: str, login_server: str) -> str:
    """One token exchange; failures name the registry and the status, never a token."""
    step = "exchange of the Entra ID token" if key == "refresh_token" else "access token request"
    try:
        response = requests.post(url, data=form, timeout=TIMEOUT, verify=ca_bundle() or True)
    except requests.RequestException as exc:
        raise AzureUnavailable(f"registry {login_server}: {step} failed: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise AzureForbidden(
            f"registry {login_server} refused the {step} ({response.status_code}): "
            "the pipeline worker's identity needs AcrPush on the registry"
        )
    if response.status_code == 429 or response.status_code >= 500:
        raise AzureUnavailable(f"registry {login_server}: {step} answered {response.status_code}")
    if response.status_code != 200:
        raise AzureError(f"registry {login_server}: {step} answered {response.status_code}")
    try:
        value = response.json().get(key, "")
    except ValueError:
        value = ""
    if not value:
        raise AzureError(f"registry {login_server}: {step} answered without a {key}")
    return str(value)
