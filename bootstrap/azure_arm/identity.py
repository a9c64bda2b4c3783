"""The Entra ID (Azure AD) endpoints MSAL calls, and the tokens ARM checks.

MSAL (under azure-identity) asks, for authority `https://127.0.0.1:PORT/<tenant>`:

1. `GET /<tenant>/v2.0/.well-known/openid-configuration` (tenant discovery);
2. `POST /<tenant>/oauth2/v2.0/token` with `grant_type=client_credentials`,
   `client_id`, `client_secret`, `scope`; or, for workload identity federation
   (WorkloadIdentityCredential, ClientAssertionCredential), `client_id` = a
   user-assigned identity's clientId, `client_assertion_type=
   urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and `client_assertion`
   = an external JWT (a Kubernetes ServiceAccount token), see `_federated_client`.

Before 1, MSAL does *instance discovery* against
`https://login.microsoftonline.com/common/discovery/instance` for any authority
host it does not know; that host is unreachable here, so clients must pass
`disable_instance_discovery=True` to the credential. `/common/discovery/instance`
is served here too, for a client that points `instance_discovery` at it.

Tokens are JWT-shaped (HS256 with the seed's `token_key`): ARM validates them
statelessly (signature, `exp`, `aud`), so a restarted imitation accepts tokens
it issued before. AKS-scope tokens (`6dae42f8-.../.default`) are the local
cluster's own bearer token when a kubeconfig was given, because that is the
only token the local cluster accepts (see the package docstring).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.oidc import BadSignature, IssuerUnreachable, OidcIssuers, UnknownKey
from bootstrap.azure_arm.state import AKS_SERVER_APP_ID, ClientApp, Seed

TOKEN_LIFETIME = 3599
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WIF_DOC = "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation"
ARM_AUDIENCES = frozenset(
    {"https://management.azure.com/", "https://management.azure.com", "https://management.core.windows.net/"}
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    audience: str
    client_id: str
    object_id: str
    tenant_id: str
    expires_at: int


class TokenInvalid(Exception):
    """Not a token this imitation issued (bad shape or signature)."""


class TokenExpired(Exception):
    def __init__(self, expired_at: int) -> None:
        super().__init__(expired_at)
        self.expired_at = expired_at


def audience_of(scope: str) -> str:
    """`https://management.azure.com/.default` -> `https://management.azure.com/`; `<app id>/.default` -> `<app id>`."""
    resource = scope.removesuffix(".default")
    return resource.rstrip("/") if not resource.startswith("https://") else resource


def sign(seed: Seed, claims: dict[str, Any]) -> str:
    """`claims` as a JWT signed HS256 with the seed's `token_key` (every token the imitation issues)."""
    header = {"typ": "JWT", "alg": "HS256", "kid": "imitation"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(bytes.fromhex(seed.token_key), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def signed_claims(seed: Seed, token: str) -> dict[str, Any]:
    """The claims of a token `sign` made, unexpired; raises TokenInvalid or TokenExpired."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("not a JWT")
    expected = hmac.new(bytes.fromhex(seed.token_key), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        valid = hmac.compare_digest(expected, _unb64(parts[2]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenInvalid("undecodable") from exc
    if not valid or not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
        raise TokenInvalid("bad signature")
    if claims["exp"] <= time.time():
        raise TokenExpired(int(claims["exp"]))
    return claims


def mint(seed: Seed, *, issuer: str, client: ClientApp, audience: str, expired: bool = False) -> tuple[str, int]:
    """A signed JWT for `client` and `audience`, and its `exp`."""
    now = int(time.time())
    exp = now - 600 if expired else now + TOKEN_LIFETIME
    claims = {
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "appid": client.client_id,
        "azp": client.client_id,
        "oid": client.object_id,
        "sub": client.object_id,
        "tid": seed.tenant_id,
        "idtyp": "app",
        "ver": "1.0",
        "uti": uuid.uuid4().hex,
    }
    return sign(seed, claims), exp


def verify(seed: Seed, token: str) -> TokenClaims:
    """The claims of an Entra ID token this imitation signed; raises TokenInvalid (also for the imitation's ACR
    tokens, which lack `appid`/`oid`/`tid`) or TokenExpired."""
    claims = signed_claims(seed, token)
    try:
        return TokenClaims(str(claims["aud"]), claims["appid"], claims["oid"], claims["tid"], int(claims["exp"]))
    except KeyError as exc:
        raise TokenInvalid(f"no {exc} claim") from None


def _aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    now = datetime.datetime.now(datetime.UTC)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
        f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [code],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
    }
    return web.json_response(body, status=status)


def openid_configuration(base: str, tenant: str) -> dict[str, Any]:
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }


def _tenant_ok(seed: Seed, tenant: str) -> bool:
    return tenant.lower() in (seed.tenant_id.lower(), "organizations", "common")


async def handle_openid_configuration(request: web.Request) -> web.Response:
    app = request.app
    tenant = request.match_info["tenant"]
    if not _tenant_ok(app["seed"], tenant):
        return _aad_error(
            400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
        )
    return web.json_response(openid_configuration(app["base_url"], app["seed"].tenant_id))


async def handle_instance_discovery(request: web.Request) -> web.Response:
    base, tenant = request.app["base_url"], request.app["seed"].tenant_id
    host = base.removeprefix("https://")
    return web.json_response(
        {
            "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )


def _entra_time(epoch: float) -> str:
    return f"{datetime.datetime.fromtimestamp(epoch, datetime.UTC):%Y-%m-%dT%H:%M:%S}.0000000Z"


async def _federated_client(request: web.Request, seed: Seed, client_id: str, form: Any) -> ClientApp | web.Response:
    """Workload identity federation: the user-assigned identity `client_id` as a client, once its assertion is a
    JWT that one of the identity's federated credentials matches (issuer and subject exactly, the credential's
    audience in `aud`), signed RS256 by a key of its issuer's JWKS, and within its valid time range. Otherwise
    Entra ID's answer: AADSTS900144 (no jwt-bearer type), 50027 (not a JWT), 700016 (unknown client), 70021 (no
    matching federated credential), 700024 (expired or not yet valid), 50166 (issuer's discovery or keys
    unreachable), 7000272 (kid not in the issuer's keys), 700027 (bad signature); checked in this order."""
    if form.get("client_assertion_type") != JWT_BEARER:
        return _aad_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_assertion_type'."
        )
    assertion = str(form.get("client_assertion", ""))
    try:
        claims = json.loads(_unb64(assertion.split(".")[1]))
        if assertion.count(".") != 2 or not isinstance(claims, dict):
            raise ValueError("not a JWT")
    except (ValueError, IndexError, UnicodeDecodeError):
        return _aad_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    managed = seed.identity_by_client_id(client_id)
    if managed is None and seed.client(client_id) is None:
        return _aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{seed.tenant_id}'.",
        )
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    aud = claims.get("aud")
    audiences: list[Any] = aud if isinstance(aud, list) else [aud]
    matching = [
        f
        for f in (managed.federated_credentials if managed else [])
        if f.issuer == issuer and f.subject == subject and f.audiences and f.audiences[0] in audiences
    ]
    if managed is None or not matching:
        return _aad_error(
            400,
            "invalid_request",
            70021,
            f"No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. "
            f"Assertion Subject: '{subject}'. Assertion Audience: '{','.join(map(str, audiences))}'. {WIF_DOC}",
        )
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
    if not isinstance(exp, int | float) or exp <= now or (isinstance(nbf, int | float) and nbf > now + 300):
        return _aad_error(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_entra_time(now)}, assertion valid "
            f"from {_entra_time(nbf if isinstance(nbf, int | float) else 0)}, expiry time of assertion "
            f"{_entra_time(exp if isinstance(exp, int | float) else 0)}. Review the documentation at "
            "https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
        )
    issuers: OidcIssuers = request.app["oidc"]
    try:
        await issuers.verify(issuer, assertion)
    except IssuerUnreachable:
        return _aad_error(400, "invalid_request", 50166, "Request to External OIDC endpoint failed.")
    except UnknownKey as exc:
        return _aad_error(
            401,
            "invalid_client",
            7000272,
            f"The certificate with identifier {exc} used to sign the federated credential could not be found in the "
            f"metadata of identity provider {issuer}. Please validate that your Identity Provider's metadata exposes "
            "the key used to sign the incoming token.",
        )
    except (BadSignature, ValueError, KeyError, IndexError):
        return _aad_error(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature value did not match the "
            "expected signature value.]",
        )
    return ClientApp(managed.client_id, "", managed.name, managed.principal_id)


async def handle_token(request: web.Request) -> web.Response:
    app = request.app
    seed: Seed = app["seed"]
    tenant = request.match_info["tenant"]
    form = await request.post()
    if not _tenant_ok(seed, tenant):
        return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    if form.get("grant_type") != "client_credentials":
        return _aad_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type. The imitation supports client_credentials only.",
        )
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if not secret and request.headers.get("Authorization", "").startswith("Basic "):
        decoded = base64.b64decode(request.headers["Authorization"][6:]).decode()
        client_id, _, secret = decoded.partition(":")
    federated: ClientApp | None = None
    if not secret and ("client_assertion" in form or "client_assertion_type" in form):
        exchanged = await _federated_client(request, seed, client_id, form)
        if isinstance(exchanged, web.Response):
            return exchanged
        federated = exchanged
    client = federated or seed.client(client_id)
    if client is None:
        return _aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{seed.tenant_id}'.",
        )
    if federated is None and not hmac.compare_digest(secret.encode(), client.secret.encode()):
        return _aad_error(
            401,
            "invalid_client",
            7000215,
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        )
    scopes = str(form.get("scope", "")).split()
    resource_scopes = [s for s in scopes if s not in ("openid", "profile", "offline_access")]
    if len(resource_scopes) != 1 or not resource_scopes[0].endswith("/.default"):
        return _aad_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {' '.join(scopes)} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    audience = audience_of(resource_scopes[0])
    expired = app["faults"].take("expiredToken") is not None
    cluster_token: str | None = app["cluster_token"]
    if audience == AKS_SERVER_APP_ID and cluster_token:
        token = cluster_token  # what the local cluster accepts; see the package docstring
    else:
        token, _ = mint(
            seed, issuer=f"https://sts.windows.net/{seed.tenant_id}/", client=client, audience=audience, expired=expired
        )
    return web.json_response(
        {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME, "access_token": token},
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )
