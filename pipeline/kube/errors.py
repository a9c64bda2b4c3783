"""The kube layer's errors: every failure of the Kubernetes API, translated in one place.

    PipelineError
    └── KubeError                 `.status` (HTTP status or None), `.reason`, `.retryable`
        ├── KubeUnavailable       connection refused/reset, timeouts, 429, 5xx     (retryable)
        ├── KubeExpired           410: a watch's resourceVersion is too old; relist (retryable)
        ├── KubeUnauthorized      401: the kubeconfig's credentials were rejected
        ├── KubeForbidden         403: the credentials may not do this
        ├── KubeNotFound          404
        ├── KubeConflict          409
        ├── KubeInvalid           400 / 422, or an object this layer cannot handle
        ├── KubeConfigError       the kubeconfig is missing, unparseable, or lacks the context
        └── RolloutFailed         the rollout cannot succeed; `.reason` is Kubernetes' word for why
            ├── RolloutTimedOut   the caller's overall timeout passed first
            └── RolloutCancelled  the caller's `cancelled()` said stop

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

from pipeline.errors import PipelineError

BODY_LIMIT = 500


class KubeError(PipelineError):
    """A Kubernetes API call failed; `retryable` says whether the same call may succeed later."""

    retryable = False
    hint = "see the message above"

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnavailable(KubeError):
    retryable = True
    hint = "the API server is unreachable or overloaded; check the cluster runs (`kubectl cluster-info`) and retry"


class KubeExpired(KubeError):
    retryable = True
    hint = "the watch's resourceVersion expired; list again and watch from the new resourceVersion"


class KubeUnauthorized(KubeError):
    hint = "the kubeconfig's credentials were rejected; refresh them (re-run bootstrap, or `az aks get-credentials`)"


class KubeForbidden(KubeError):
    hint = "the kubeconfig's user lacks the RBAC rights for this; grant them in the namespace"


class KubeNotFound(KubeError):
    hint = "it does not exist; check the name and namespace (has the app been deployed?)"


class KubeConflict(KubeError):
    hint = "another writer changed it or owns these fields; re-run (server-side apply with force takes ownership)"


class KubeInvalid(KubeError):
    hint = "the server refused the object as invalid; fix the manifest (`pipeline render` shows it)"


class KubeConfigError(KubeError):
    hint = "point [kubernetes].kubeconfig (or KUBECONFIG) at a valid kubeconfig; for the local target run bootstrap first"


class RolloutFailed(KubeError):
    """The rollout cannot succeed; `.reason` is e.g. ProgressDeadlineExceeded, CrashLoopBackOff, ImagePullBackOff."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


class RolloutTimedOut(RolloutFailed):
    pass


class RolloutCancelled(RolloutFailed):
    pass


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
