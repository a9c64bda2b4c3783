"""The pipeline's one error tree (after httpx's `_exceptions.py`).

Every failure the pipeline reports to a person is one of these, so the CLI
prints it as plain lines (never a traceback, exit 2) and callers catch by kind.
Each class says once whether the same call may succeed later (`retryable`,
False unless a class says otherwise): activities raise them as Temporal
ApplicationErrors of the same type name, non-retryable unless `retryable`, and
the workflow's retry policy names exactly the non-retryable ones
(`non_retryable_types()`), so there is no second list to keep in step.
The Kubernetes and Azure layers translate their libraries' exceptions into
this tree with one mapping each (`pipeline/kube/errors.py`, `pipeline/azure/errors.py`).

    PipelineError                       base; `.message` is what to print
    ├── ConfigError                     config.toml or an env override is unusable (one line per problem)
    ├── BadRequest                      a CLI argument the pipeline cannot use
    ├── NoPipelineApp                   no app has role "pipeline" (`pipeline bootstrap`)
    ├── TemporalUnreachable             Temporal could not be reached or refused the connection
    ├── DeploymentAlreadyRunning        one deployment of an app to an environment at a time
    ├── NoDeployment                    no deployment of that app exists
    ├── RollbackRefused                 the running deployment refused the rollback update (why is in the message)
    ├── RegistryError                   the registry answered oddly or not at all          (retryable)
    ├── ImageNotFound                   the registry has no such image
    ├── BuildError                      the build or the push failed
    ├── RenderError                     the render input cannot make valid manifests
    │   └── ImageNotPinned              the image is referenced by tag, not by digest
    ├── VerificationFailed              the new pods did not all poll with the new build in time
    ├── GateFailed                      a gate could not reach a verdict (a gate that decides "no" is a GateResult)
    ├── VersioningError                 a Worker Deployment call failed or its routing did not propagate (retryable)
    │   ├── VersionNotRegistered        the new version's pods poll, but the version is not on every queue
    │   ├── RoutingChangedElsewhere     another identity changed (or manages) the routing: reported, never overwritten
    │   ├── RoutingNotPropagated        a routing change stayed IN_PROGRESS past its timeout (the server's side)
    │   └── VersionRefused              an operator verb (promote, pause, resume, rollback --to) cannot apply now
    ├── KubeError                       a Kubernetes API call failed (`.status`, `.reason`)
    │   ├── KubeUnavailable             connection refused/reset, timeouts, 429, 5xx      (retryable)
    │   ├── KubeExpired                 410: a watch's resourceVersion is too old          (retryable)
    │   ├── KubeUnauthorized            401
    │   ├── KubeForbidden               403
    │   ├── KubeNotFound                404
    │   ├── KubeConflict                409
    │   ├── KubeInvalid                 400 / 422, or an object the kube layer cannot handle
    │   ├── KubeConfigError             the kubeconfig is missing, unparseable, or lacks the context
    │   └── RolloutFailed               the rollout cannot succeed; `.reason` is Kubernetes' word for why
    │       ├── RolloutTimedOut         the caller's overall timeout passed first
    │       └── RolloutCancelled        the caller's `cancelled()` said stop
    ├── AzureError                      an Azure call failed (`.status`, `.code`: ARM's error code)
    │   ├── AzureUnauthorized           401, or no credential could get a token
    │   ├── AzureForbidden              403: the identity lacks the role
    │   ├── AzureNotFound               404
    │   ├── AzureThrottled              429 after the SDK's own retries                    (retryable)
    │   ├── AzureUnavailable            5xx, connection refused/reset, timeouts            (retryable)
    │   ├── AzureBadRequest             400/409/...: the request itself is wrong
    │   ├── AcrRunFailed                an ACR Tasks run ended Failed/Timeout/Canceled/Error
    │   └── AzureOperationFailed        a long-running create ended Failed or Canceled
    └── IncompatibleResource            an Azure resource exists with settings the pipeline cannot use
"""

from __future__ import annotations

from collections.abc import Iterable


class PipelineError(Exception):
    """Base of every error the pipeline reports; `message` says what failed and what to do."""

    retryable = False
    hint = "see the message above"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints to stderr."""
        return self.message.splitlines() or [self.message]


def non_retryable_types() -> list[str]:
    """The type names of every error here that is not worth retrying, sorted: the workflow's retry policy names them."""
    found: set[str] = set()
    todo: list[type[PipelineError]] = [PipelineError]
    while todo:
        kind = todo.pop()
        todo.extend(kind.__subclasses__())
        if not kind.retryable and kind.__module__ == __name__ and kind is not PipelineError:
            found.add(kind.__name__)
    return sorted(found)


# ----- input: configuration and arguments -----


class ConfigError(PipelineError):
    """The configuration is unusable; every problem found is listed, one line each.

    All problems are collected before raising so a person fixes the file once,
    not once per error.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))

    def lines(self) -> list[str]:
        return list(self.problems)


class BadRequest(PipelineError):
    """A CLI argument the pipeline cannot use (image reference, tag, app)."""


class NoPipelineApp(PipelineError):
    """The config has no app with role "pipeline"."""


# ----- Temporal and the deployments it runs -----


class TemporalUnreachable(PipelineError):
    """Temporal could not be reached or refused the connection."""


class DeploymentAlreadyRunning(PipelineError):
    """Only one deployment of an app to an environment may run at a time."""


class NoDeployment(PipelineError):
    """No deployment of that app exists."""


class RollbackRefused(PipelineError):
    """The running deployment refused the rollback update, saying why (nothing to roll back to, already ended)."""


# ----- images: registry and builds -----


class RegistryError(PipelineError):
    """The registry answered something other than the image or a clean 404."""

    retryable = True


class ImageNotFound(PipelineError):
    """The registry has no image under that name or tag."""


class BuildError(PipelineError):
    """The build or the push failed; the message carries the tail of the log."""


# ----- manifests and verification -----


class RenderError(PipelineError):
    """The render input cannot make valid manifests; the message says which value and what to do."""


class ImageNotPinned(RenderError):
    """The image is referenced by tag, not by digest, so what runs could change under the Deployment."""


class VerificationFailed(PipelineError):
    """The new pods did not all show up as fresh pollers with the new build id in time."""


# ----- Kubernetes (translated in pipeline/kube/errors.py) -----


class GateFailed(PipelineError):
    """A gate could not reach its verdict (its Job gave none, or ran out of time)."""


class VersioningError(PipelineError):
    """A Worker Deployment call failed, or a routing change did not propagate in time."""

    retryable = True
    hint = "`pipeline versions APP` shows the Worker Deployment's routing and versions"


class VersionNotRegistered(VersioningError):
    retryable = False


class RoutingChangedElsewhere(VersioningError):
    retryable = False


class RoutingNotPropagated(VersioningError):
    retryable = False


class VersionRefused(VersioningError):
    retryable = False


class KubeError(PipelineError):
    """A Kubernetes API call failed; `retryable` says whether the same call may succeed later."""

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

    def __init__(self, reason: str, message: str, *, not_polling: tuple[str, ...] = ()) -> None:
        super().__init__(message, reason=reason)
        self.not_polling = not_polling  # running pods Temporal does not list as pollers (to ask where they poll)


class RolloutTimedOut(RolloutFailed):
    pass


class RolloutCancelled(RolloutFailed):
    pass


# ----- Azure (translated in pipeline/azure/errors.py) -----


class AzureError(PipelineError):
    """An Azure call failed; `retryable` says whether the same call may succeed later."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AzureUnauthorized(AzureError):
    hint = (
        "the Azure credential was refused or is missing; check AZURE_TENANT_ID/AZURE_CLIENT_ID and the secret or "
        "federated token (workload identity), or run `az login` on a laptop"
    )


class AzureForbidden(AzureError):
    hint = "the identity has no role allowing this; grant it (e.g. Contributor on the registry, AKS Cluster User on the cluster)"


class AzureNotFound(AzureError):
    hint = "check [azure].subscription_id, [azure].resource_group and the resource's name in config.toml"


class AzureThrottled(AzureError):
    retryable = True
    hint = "Azure is throttling this identity; the pipeline retries with back-off"


class AzureUnavailable(AzureError):
    retryable = True
    hint = "Azure (or [azure].endpoint) is unreachable or failing; the pipeline retries with back-off"


class AzureBadRequest(AzureError):
    hint = "Azure refused the request as invalid; check the values in config.toml"


class AcrRunFailed(AzureError):
    """An ACR Tasks run ended without success; the message ends with the tail of its log."""

    hint = "fix the build (the run log's last lines are above) and deploy again"


class AzureOperationFailed(AzureError):
    """A long-running create ended Failed or Canceled; the message carries ARM's error code and message."""

    hint = "fix the cause ARM names, delete the failed resource, and run `pipeline bootstrap --azure` again"


class IncompatibleResource(PipelineError):
    """A resource exists with settings the pipeline cannot work with; it was not changed."""
