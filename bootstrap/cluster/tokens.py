"""ServiceAccount tokens, as kube-apiserver issues them (`--service-account-issuer`, TokenRequest, OIDC discovery).

- The signing key is one RSA 2048 key kept in `pki/sa.key` (0600, `pki.ensure_service_account_key`), so a
  restarted cluster signs with, and publishes, the same key. Its `kid` is Kubernetes' keyIDFromPublicKey:
  base64url (no padding) of the SHA-256 of the PKIX (SubjectPublicKeyInfo) DER of the public key.
- The issuer (`iss`) is the API server's URL as its kubeconfig names it (`https://127.0.0.1:<port>`).
- `discovery()` and `jwks()` are what kube-apiserver serves at `/.well-known/openid-configuration` and
  `/openid/v1/jwks` (and AKS's OIDC issuer publicly): the API serves them without authentication.
- `create_token_request()` is the `serviceaccounts/token` subresource (pkg/registry/core/serviceaccount/
  storage/token.go): defaults (audiences: the issuer; expirationSeconds: 3600), validation (at least 600 s:
  422 Invalid, as ValidateTokenRequest), the ServiceAccount lookup (404), an optional bound Pod or Secret,
  and the claims of pkg/serviceaccount/claims.go: iss, sub, aud (a list), exp, iat, nbf, jti and
  `kubernetes.io` {namespace, serviceaccount, pod|secret, node}.
- The extended token (`--service-account-extend-token-expiration`, on by default): a token bound to a Pod, for
  the API server's own audience and exactly 3607 s (what kubelet asks for the `kube-api-access-*` volume), is
  signed valid for a year with `kubernetes.io.warnafter` at 3607 s; the TokenRequest's status still says 3607 s,
  and kubelet rotates it by that (pkg/registry/core/serviceaccount/storage/token.go, pkg/serviceaccount).
- kubectl (`kubectl create token`) posts the TokenRequest as protobuf: the API decodes it (protobuf.py) like
  any other protobuf body before `create_token_request` sees it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap.cluster import errors
from bootstrap.cluster.resources import NODES, PODS, SECRETS, SERVICEACCOUNTS
from bootstrap.cluster.store import Obj, Store

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
WARN_ONLY_EXPIRATION_SECONDS = 3607  # token.WarnOnlyBoundTokenExpirationSeconds
EXTENDED_EXPIRATION_SECONDS = 365 * 24 * 3600  # token.ExpirationExtensionSeconds
JWKS_PATH = "/openid/v1/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_CONTENT_TYPE = "application/jwk-set+json"
TOKEN_REQUEST_API_VERSION = "authentication.k8s.io/v1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """Kubernetes' keyIDFromPublicKey."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TokenIssuer:
    """Signs ServiceAccount tokens for one issuer URL with one RSA key."""

    issuer: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def from_file(cls, issuer: str, key_file: Path) -> TokenIssuer:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_file} is not an RSA private key")
        return cls(issuer.rstrip("/"), key)

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    def discovery(self) -> Obj:
        """The OIDC discovery document (openidmetadata.openIDMetadata)."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + JWKS_PATH,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> Obj:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "use": "sig",
                    "kty": "RSA",
                    "kid": self.kid,
                    "alg": "RS256",
                    "n": _b64url(_int_bytes(numbers.n)),
                    "e": _b64url(_int_bytes(numbers.e)),
                }
            ]
        }

    def sign(self, claims: Obj) -> str:
        """A compact JWS with the header Kubernetes writes: {"alg": "RS256", "kid": ...}, no "typ"."""
        return jwt.encode(
            {"iss": self.issuer, **claims}, self.private_key, algorithm="RS256", headers={"kid": self.kid, "typ": None}
        )

    def service_account_token(
        self,
        account: Obj,
        *,
        audiences: list[str],
        expiration_seconds: int,
        pod: Obj | None = None,
        secret: Obj | None = None,
        node: Obj | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A token for `account` (pkg/serviceaccount.Claims); (token, exp as Unix seconds: for an extended
        token, the expiration asked for, as the TokenRequest's status reports it)."""
        issued = int(time.time() if now is None else now)
        meta = account["metadata"]
        private: Obj = {
            "namespace": meta["namespace"],
            "serviceaccount": {"name": meta["name"], "uid": meta.get("uid", "")},
        }
        for key, bound in (("pod", pod), ("secret", secret), ("node", node)):
            if bound is not None:
                private[key] = {"name": bound["metadata"]["name"], "uid": bound["metadata"].get("uid", "")}
        exp = issued + int(expiration_seconds)
        signed_exp = exp
        if pod is not None and expiration_seconds == WARN_ONLY_EXPIRATION_SECONDS and list(audiences) == [self.issuer]:
            private["warnafter"] = exp
            signed_exp = issued + EXTENDED_EXPIRATION_SECONDS
        claims = {
            "sub": f"system:serviceaccount:{meta['namespace']}:{meta['name']}",
            "aud": list(audiences),
            "iat": issued,
            "nbf": issued,
            "exp": signed_exp,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
        }
        return self.sign(claims), exp


def service_account(store: Store, namespace: str, name: str) -> Obj:
    """The ServiceAccount (404 if missing). "default" is made here if it is missing (a store without the
    serviceaccounts controller, controllers/serviceaccounts.py, which otherwise creates it with the namespace)."""
    found = store.try_get(SERVICEACCOUNTS, namespace, name)
    if found is not None:
        return found
    if name != "default":
        raise errors.not_found(SERVICEACCOUNTS.plural, name)
    return store.create(
        SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    )


def create_token_request(store: Store, issuer: TokenIssuer, namespace: str, name: str, body: Any) -> Obj:
    """The `serviceaccounts/{name}/token` create: the TokenRequest echoed with `status.{token,expirationTimestamp}`."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind and kind != "TokenRequest":
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind (TokenRequest)")
    if api_version and api_version != TOKEN_REQUEST_API_VERSION:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({TOKEN_REQUEST_API_VERSION})"
        )
    req = copy.deepcopy(body)
    meta = req.get("metadata") or {}
    spec = req.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise errors.bad_request("metadata and spec must be objects")
    group = "authentication.k8s.io"
    if meta.get("name") and meta["name"] != name:
        raise errors.invalid(
            "TokenRequest",
            name,
            [("metadata.name", f'Invalid value: "{meta["name"]}": must match the service account name if specified')],
            group,
        )
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise errors.invalid(
            "TokenRequest",
            name,
            [
                (
                    "metadata.namespace",
                    f'Invalid value: "{meta["namespace"]}": must match the service account namespace if specified',
                )
            ],
            group,
        )
    account = service_account(store, namespace, name)  # 404 serviceaccounts "name" not found
    audiences = [str(a) for a in spec.get("audiences") or []] or [issuer.issuer]
    expiration = spec.get("expirationSeconds")
    expiration = DEFAULT_EXPIRATION_SECONDS if expiration is None else expiration
    if isinstance(expiration, bool) or not isinstance(expiration, int):
        raise errors.bad_request(f"spec.expirationSeconds must be an integer, not {expiration!r}")
    now = time.time()
    meta = {**meta, "name": name, "namespace": namespace, "creationTimestamp": _rfc3339(now)}
    if expiration < MIN_EXPIRATION_SECONDS:
        raise errors.invalid(
            "TokenRequest",
            "",
            [("spec.expirationSeconds", f"Invalid value: {expiration}: may not specify a duration less than 10 minutes")],
            group,
        )
    if expiration > 1 << 32:
        raise errors.invalid(
            "TokenRequest", "", [("spec.expirationSeconds", f"Too long: may not be more than {1 << 32} bytes")], group
        )
    pod = secret = node = None
    ref = spec.get("boundObjectRef")
    if ref:
        ref_kind, ref_version, ref_name = ref.get("kind", ""), ref.get("apiVersion", "") or "v1", ref.get("name", "")
        if ref_kind == "Pod" and ref_version == "v1":
            pod = store.get(PODS, namespace, ref_name)
            if (pod["spec"].get("serviceAccountName") or "default") != name:
                raise errors.bad_request(
                    f'cannot bind token for serviceaccount "{name}" to pod running with different serviceaccount name.'
                )
            bound = pod
            node_name = pod["spec"].get("nodeName")
            if node_name:
                node = store.try_get(NODES, None, node_name)
        elif ref_kind == "Secret" and ref_version == "v1":
            secret = bound = store.get(SECRETS, namespace, ref_name)
        else:
            gvk = f"/{ref_version}, Kind={ref_kind}"
            raise errors.bad_request(f"cannot bind token to object of type {gvk}")
        uid = bound["metadata"].get("uid")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(
                ref_kind,
                ref_name,
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
    token, _ = issuer.service_account_token(
        account, audiences=audiences, expiration_seconds=expiration, pod=pod, secret=secret, node=node, now=now
    )
    return {
        "kind": "TokenRequest",
        "apiVersion": TOKEN_REQUEST_API_VERSION,
        "metadata": meta,
        "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": ref or None},
        "status": {"token": token, "expirationTimestamp": _rfc3339(now + expiration)},
    }
