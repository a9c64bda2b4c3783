"""The Azure layer's one mapping: every failure of azure-identity and the management SDKs into the pipeline's error tree.

The classes (AzureError and its branches) live in pipeline/errors.py with the rest of the tree.

`azure_errors(resource)` is the only place that translates. Each error is
raised `from` the azure.core exception, says which resource (by name, resource
group and subscription) and what to do next, in one line, and carries at most
`BODY_LIMIT` characters of ARM's message. Nothing here ever includes a token,
password or key: ARM's messages do not contain them, and request headers are
never quoted.

The workflow's retry policy names the non-retryable types (each class's
`retryable`, see `pipeline.errors.non_retryable_types`); the retryable ones have already been
retried inside the SDK (honouring Retry-After, see `clients.py`), and are
retried again by Temporal with back-off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from azure.core.exceptions import (
    AzureError as SdkAzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from pipeline.azure import roles

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    AcrRunFailed as AcrRunFailed,
    AzureBadRequest as AzureBadRequest,
    AzureError as AzureError,
    AzureForbidden as AzureForbidden,
    AzureNotFound as AzureNotFound,
    AzureThrottled as AzureThrottled,
    AzureUnauthorized as AzureUnauthorized,
    AzureUnavailable as AzureUnavailable,
    PipelineError as PipelineError,
)

BODY_LIMIT = 300


@dataclass(frozen=True)
class Resource:
    """What a call was about, for messages: `kind` is "registry", "AKS cluster", "run", ..."""

    kind: str
    name: str
    resource_group: str
    subscription_id: str
    config_key: str = ""  # the config.toml key that names it, e.g. "[acr].name"

    def describe(self) -> str:
        return f"{self.kind} {self.name} (resource group {self.resource_group}, subscription {self.subscription_id})"


def _capped(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + "... (truncated)"


def _arm_error(exc: HttpResponseError) -> tuple[str, str]:
    """(code, message) of ARM's `{"error": {...}}` body, else of the exception."""
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", "") or "")
    message = str(getattr(error, "message", "") or "") or str(exc.reason or "") or str(exc.message or "")
    return code, _capped(message.splitlines()[0] if message else "")


_ACTION = re.compile(r"perform action '([^']+)'")


def forbidden_hint(message: str) -> str:
    """What to grant for ARM's AuthorizationFailed message (which names the action): the built-in roles that allow
    it. Role assignments need Owner, User Access Administrator or Role Based Access Control Administrator: never
    Contributor, whose notActions hold `Microsoft.Authorization/*/Write`."""
    found = _ACTION.search(message)
    action = found.group(1) if found else ""
    if roles.action_matches("Microsoft.Authorization/*/write", action):
        return (
            f"creating role assignments takes {roles.or_list(roles.ASSIGNING_ROLES)} (Contributor cannot assign "
            "roles); have one of them run it, or run `pipeline bootstrap --azure --no-role-assignments` and hand "
            "the printed commands to an administrator"
        )
    known = {a.lower(): a for a in (*roles.READ_ACTIONS, *roles.WRITE_ACTIONS)}
    if action.lower() in known:
        return f"the identity needs a role that allows {action}: {roles.or_list(roles.granted_by(known[action.lower()]))}"
    return AzureForbidden.hint


def translate(exc: SdkAzureError, resource: Resource) -> AzureError:
    """The AzureError for an azure.core exception raised by a call about `resource`."""
    if isinstance(exc, HttpResponseError) and exc.status_code:
        status = int(exc.status_code)
        code, message = _arm_error(exc)
        shown = f"{status} {code}".strip()
        if status == 404:
            if code == "SubscriptionNotFound":
                text = f"subscription {resource.subscription_id} not found (or not visible to this identity)"
                return AzureNotFound(f"{text}: {message}; check [azure].subscription_id", status=status, code=code)
            if code == "ResourceGroupNotFound":
                text = f"resource group {resource.resource_group} not found in subscription {resource.subscription_id}"
                return AzureNotFound(f"{text}; check [azure].resource_group", status=status, code=code)
            where = f"{resource.kind} {resource.name} not found in resource group {resource.resource_group} of subscription {resource.subscription_id}"
            key = f"check {resource.config_key}, " if resource.config_key else "check "
            return AzureNotFound(f"{where}; {key}[azure].resource_group and [azure].subscription_id", status=status, code=code)
        if status == 401:
            cls: type[AzureError] = AzureUnauthorized
        elif status == 403:
            cls = AzureForbidden
        elif status == 429:
            cls = AzureThrottled
        elif status >= 500 or status == 408:
            cls = AzureUnavailable
        else:
            cls = AzureBadRequest
        hint = forbidden_hint(message) if status == 403 else cls.hint
        return cls(f"{resource.describe()}: {shown}: {message}; {hint}", status=status, code=code)
    if isinstance(exc, ClientAuthenticationError):
        # No status: the credential chain could not get a token at all (a refused secret, no identity).
        detail = _capped(str(exc.message or exc).splitlines()[0] if str(exc.message or exc) else type(exc).__name__)
        return AzureUnauthorized(f"{resource.describe()}: no Azure token: {detail}; {AzureUnauthorized.hint}")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return AzureUnavailable(f"{resource.describe()}: cannot reach Azure: {_capped(str(exc))}; {AzureUnavailable.hint}")
    return AzureError(f"{resource.describe()}: {type(exc).__name__}: {_capped(str(exc))}")


def translate_blob_status(status: int | None, what: str, detail: str) -> AzureError:
    """The AzureError for a blob (SAS URL) request that failed with `status` (None: no answer at all)."""
    detail = _capped(detail)
    if status is None:
        return AzureUnavailable(f"{what}: cannot reach blob storage: {detail}; {AzureUnavailable.hint}")
    cls: type[AzureError] = AzureUnavailable if status >= 500 or status == 429 else AzureBadRequest
    if status == 403:
        cls = AzureForbidden
    return cls(f"{what}: {status} {detail}; {cls.hint}", status=status, code=detail)


@contextmanager
def azure_errors(resource: Resource) -> Iterator[None]:
    """Translate azure.core exceptions raised inside into AzureErrors about `resource`."""
    try:
        yield
    except SdkAzureError as exc:
        raise translate(exc, resource) from exc
