"""The kube layer's one mapping: every failure of the Kubernetes API into the pipeline's error tree.

The classes (KubeError and its branches, RolloutFailed) live in pipeline/errors.py
with the rest of the tree; `error_for_status` is the HTTP-status ladder (after
kopf's errors.py), `api_errors(what)` wraps every call.

Each is raised `from` the ApiException or urllib3 error it translates, names
the object (`Deployment temporal-workers/sample-worker: ...`), carries at most
`BODY_LIMIT` characters of the server's answer, and says what to do next.
`api_errors(what)` is the only place that translates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    KubeConfigError as KubeConfigError,
    KubeConflict as KubeConflict,
    KubeError as KubeError,
    KubeExpired as KubeExpired,
    KubeForbidden as KubeForbidden,
    KubeInvalid as KubeInvalid,
    KubeNotFound as KubeNotFound,
    KubeUnauthorized as KubeUnauthorized,
    KubeUnavailable as KubeUnavailable,
    PipelineError as PipelineError,
    RolloutCancelled as RolloutCancelled,
    RolloutFailed as RolloutFailed,
    RolloutTimedOut as RolloutTimedOut,
)

BODY_LIMIT = 500


_BY_STATUS: dict[int, type[KubeError]] = {
    400: KubeInvalid,
    401: KubeUnauthorized,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeExpired,
    422: KubeInvalid,
    429: KubeUnavailable,
}


def error_for_status(status: int | None) -> type[KubeError]:
    """The KubeError class for an HTTP status (5xx and unknown statuses are KubeUnavailable/KubeError)."""
    if status is None or status == 0 or status >= 500:
        return KubeUnavailable
    return _BY_STATUS.get(status, KubeError)


def _server_words(exc: ApiException) -> tuple[str, str]:
    """(reason, message) of the server's Status body, else of the exception; the message capped."""
    body = exc.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    reason = str(exc.reason or "")
    message = text
    try:
        status = json.loads(text)
    except ValueError:
        status = None
    if isinstance(status, dict):
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or text)
    message = message.strip() or reason
    if len(message) > BODY_LIMIT:
        message = message[:BODY_LIMIT] + "... (truncated)"
    return reason, message


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Translate the Kubernetes client's errors raised inside into KubeErrors about `what` ("Deployment ns/name")."""
    try:
        yield
    except ApiException as exc:
        status = exc.status if isinstance(exc.status, int) else None
        reason, message = _server_words(exc)
        cls = error_for_status(status)
        shown = f"{status} {reason}" if status else reason or "error"
        raise cls(f"{what}: {shown}: {message}; {cls.hint}", status=status, reason=reason) from exc
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        detail = str(exc)
        if len(detail) > BODY_LIMIT:
            detail = detail[:BODY_LIMIT] + "... (truncated)"
        raise KubeUnavailable(
            f"{what}: cannot reach the API server: {detail}; {KubeUnavailable.hint}", reason="Unreachable"
        ) from exc
