"""The deployment's activities: every piece of I/O the workflow orders, one function per step.

Each takes one dataclass and returns one. They are plain functions run in the
worker's thread pool (the Docker and Kubernetes clients are blocking), except
`verify_polling`, which talks to Temporal with the async client. Long ones
heartbeat their progress, which is also what `pipeline deploy --follow` shows.

Failures leave as `ApplicationError`s named after the pipeline's own error
types (`KubeInvalid`, `RolloutFailed`, `BuildError`, ...), non-retryable
unless the error says it is worth retrying, so bad input fails at once and a
flaky API is retried by the workflow's retry policy.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import docker
import docker.errors
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError

from pipeline import clusters, diagnose, kube, render, revisions, source
from pipeline.azure import pull_secret
from pipeline.builders import acr as acr_builder
from pipeline.builders.local import (
    BuildError,
    BuildRequest,
    build_and_push,
    build_platforms,
    is_complete_build_of,
    is_multi_platform_build_of,
    source_and_tag,
)
from pipeline.errors import (
    PipelineError,
    VerificationFailed,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
)
from pipeline.keepalive import Keepalive
from pipeline.models import (
    AppliedObject,
    ApplyInput,
    ApplyResult,
    BuildImageInput,
    BuildPlatformInput,
    BuiltImage,
    ClusterRef,
    Manifests,
    PlatformImage,
    PushIndexInput,
    ReadRevisionInput,
    ReadRevisionResult,
    RecordRevisionInput,
    RenderInput,
    RolloutInput,
    RolloutResult,
    TemporalTarget,
    VerifyInput,
    VerifyResult,
)
from pipeline.registry import SOURCE_HASH_LABEL, find_image
from pipeline.temporal_client import connect as temporal_connect
from pipeline.verify import describe_pollers, identity_names_pod, judge, pod_state

FIELD_MANAGER = kube.FIELD_MANAGER
REVISION_CONFIGMAP_SUFFIX = revisions.CONFIGMAP_SUFFIX

P = ParamSpec("P")
R = TypeVar("R")


def _as_application_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the pipeline's errors into ApplicationErrors the workflow can tell apart by type."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            raise _application_error(exc) from exc

    return wrapper


def _application_error(exc: PipelineError) -> ApplicationError:
    """The same error for Temporal: its class name as the type, retried only when the class says it is worth it."""
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


def _kube(cluster: ClusterRef) -> kube.KubeClient:
    """The cluster's client; target "aks": a fresh kubeconfig (and token) from the AKS API per call."""
    return clusters.connect(cluster)


# ----- revisions: what was last verified, kept next to the app in the cluster (pipeline/revisions.py) -----


@activity.defn
@_as_application_errors
def read_revision(request: ReadRevisionInput) -> ReadRevisionResult:
    """The last revision this pipeline verified for the app (None on a first deployment) and the ones before it."""
    with _kube(request.cluster) as kc:
        log = revisions.read(kc, app=request.app, namespace=request.namespace)
    return ReadRevisionResult(revision=log.current, history=log.history)


@activity.defn
@_as_application_errors
def record_revision(request: RecordRevisionInput) -> None:
    """Remember a verified revision, so a later failure (or `pipeline rollback`) knows what to restore."""
    with _kube(request.cluster) as kc:
        revisions.record(kc, app=request.app, namespace=request.namespace, revision=request.revision, field_manager=FIELD_MANAGER)


# ----- build -----


@activity.defn
@_as_application_errors
def build_image(request: BuildImageInput) -> BuiltImage:
    """Build and push with the local Docker engine (ACR Tasks for target "aks"); a build already in the registry is reused.

    The context is the archive the CLI uploaded (BuildSpec.source, pipeline/source.py), fetched from the
    registry and checked against its digest: nothing of the client's file system is read here.
    With more than one platform (target local; target aks builds each platform in
    `build_platform_image`): one image per platform, then their OCI image index under the tag.
    """
    if request.target == "aks":
        return acr_builder.build_image(request)
    spec = request.build
    digest_of_source, tag = source_and_tag(spec, request.tag)
    existing = find_image(spec.repository, tag)
    if len(spec.platforms) > 1:
        if is_multi_platform_build_of(existing, digest_of_source, spec.platforms):
            assert existing is not None
            activity.logger.info("%s:%s already pushed as index %s; not rebuilding", spec.repository, tag, existing.digest)
            images = tuple(PlatformImage(e.platform, e.digest) for e in existing.platforms)
            return BuiltImage(spec.repository, tag, existing.digest, reused=True, platforms=images)
    elif is_complete_build_of(existing, digest_of_source, spec.platforms):
        assert existing is not None
        activity.logger.info("%s:%s already pushed as %s; not rebuilding", spec.repository, tag, existing.digest)
        return BuiltImage(spec.repository, tag, existing.digest, reused=True)
    assert spec.source is not None  # source_and_tag checked it
    archive = source.fetch_blob(spec.source)
    engine = docker.from_env(timeout=600)
    last_beat = 0.0

    def progress(line: str) -> None:
        nonlocal last_beat
        if time.monotonic() - last_beat > 1.0:
            beat(line[:200])
            last_beat = time.monotonic()

    build = BuildRequest(
        archive=archive,
        dockerfile=spec.dockerfile,
        target=spec.target or None,
        repository=spec.repository,
        tag=tag,
        build_args=spec.build_args,
        labels={SOURCE_HASH_LABEL: digest_of_source},
    )
    try:
        with Keepalive(activity.heartbeat) as beat:
            if len(spec.platforms) > 1:
                digest, images = build_platforms(
                    engine, build, spec.platforms, source_hash=digest_of_source, on_progress=progress
                )
                return BuiltImage(spec.repository, tag, digest, platforms=images)
            pushed = build_and_push(engine, build, on_progress=progress)
    except docker.errors.DockerException as exc:
        raise BuildError(f"docker engine unavailable: {exc}") from exc
    finally:
        engine.close()
    return BuiltImage(pushed.repository, pushed.tag, pushed.digest)


@activity.defn
@_as_application_errors
def build_platform_image(request: BuildPlatformInput) -> BuiltImage:
    """One platform's image of a multi-platform build (target "aks": one ACR run, resumed after a retry, never a second)."""
    return acr_builder.build_image(request.build, platform=request.platform)


@activity.defn
@_as_application_errors
def push_image_index(request: PushIndexInput) -> BuiltImage:
    """The OCI image index naming every platform's image, PUT under the build's tag (the same images, the same digest)."""
    return acr_builder.push_index(request)


# ----- render and apply -----


@activity.defn
@_as_application_errors
def render_manifests(request: RenderInput) -> Manifests:
    """Pure rendering, run as an activity so the exact objects applied are in the history."""
    return render.render_manifests(request)


@activity.defn
@_as_application_errors
def apply_manifests(request: ApplyInput) -> ApplyResult:
    """Server-side apply, one field manager, forced: re-applying the same objects changes nothing.

    Heartbeats while it runs (a slow API server can hold a PATCH for long), so a
    dead worker's apply moves on within the heartbeat timeout.
    """
    with Keepalive(activity.heartbeat), _kube(request.cluster) as kc:
        if request.cluster.image_pull_secret is not None and not request.dry_run:  # its value never leaves this call
            pull_secret.ensure(kc, request.cluster.image_pull_secret, manifests=request.manifests.objects)
        applied = kube.server_side_apply(
            kc, request.manifests.objects, field_manager=FIELD_MANAGER, force=True, dry_run=request.dry_run
        )
    return ApplyResult(
        objects=[
            AppliedObject(
                kind=str(obj.get("kind", "")),
                name=str(obj["metadata"]["name"]),
                namespace=str(obj["metadata"].get("namespace", "")),
                resource_version=str(obj["metadata"].get("resourceVersion", "")),
                generation=int(obj["metadata"].get("generation", 0)),
            )
            for obj in applied
        ]
    )


# ----- rollout -----


@activity.defn
@_as_application_errors
def wait_for_rollout(request: RolloutInput) -> RolloutResult:
    """Watch the Deployment until the new ReplicaSet is fully available, or fail fast with the reason."""
    try:
        with _kube(request.cluster) as kc:
            outcome = kube.wait_for_rollout(
                kc,
                namespace=request.namespace,
                name=request.deployment or request.app,
                generation=request.generation,
                timeout=float(request.timeout_seconds),
                on_progress=lambda p: activity.heartbeat(asdict(p)),
                cancelled=activity.is_cancelled,
                unready_seconds=float(request.unready_seconds),
            )
    except kube.RolloutCancelled as exc:  # the workflow cancelled us (a rollback signal): not a failure
        raise CancelledError(str(exc)) from exc
    except kube.RolloutFailed as exc:
        if request.temporal is None or not exc.not_polling:
            raise
        raise kube.RolloutFailed(exc.reason, f"{exc}; {_seen_instead(request.temporal, exc.not_polling)}") from exc
    return RolloutResult(
        replica_set=outcome.replica_set,
        pod_template_hash=outcome.pod_template_hash,
        pods=list(outcome.pods),
        replicas=outcome.replicas,
        ready_replicas=outcome.ready_replicas,
        available_replicas=outcome.available_replicas,
        revision=outcome.revision,
    )


def _seen_instead(temporal: TemporalTarget, pods: Sequence[str]) -> str:
    """Where else Temporal lists the workers of `pods` (pipeline/diagnose.py), as one clause."""

    async def look() -> str:
        client = await temporal_connect(temporal)
        found = await diagnose.where_seen(
            client, pods=pods, namespaces=[temporal.namespace], partitions=temporal.task_queue_partitions
        )
        return diagnose.format_sightings(found)

    try:
        return asyncio.run(look())
    except Exception as exc:  # an explanation must never change the failure it explains
        return f"where else it polls is unknown ({type(exc).__name__}: {exc})"


# ----- verify -----


@activity.defn
async def verify_polling(request: VerifyInput) -> VerifyResult:
    """Wait until Temporal lists every new pod as a fresh poller with the new build id, and no old pod runs."""
    try:
        client = await temporal_connect(request.temporal)
    except PipelineError as exc:
        raise _application_error(exc) from exc
    selector = {"app.kubernetes.io/name": request.app}
    if request.version_label:
        selector[render.VERSION_LABEL] = request.version_label
    deadline = time.monotonic() + request.timeout_seconds
    kc = await asyncio.to_thread(_kube, request.cluster)
    try:
        return await _verify_until_deadline(request, client, kc, selector, deadline)
    finally:
        kc.close()


async def _verify_until_deadline(
    request: VerifyInput, client: Client, kc: kube.KubeClient, selector: dict[str, str], deadline: float
) -> VerifyResult:
    while True:
        try:
            pods = await asyncio.to_thread(kube.list_pods, kc, namespace=request.namespace, selector=selector)
        except PipelineError as exc:
            raise _application_error(exc) from exc
        pollers = await describe_pollers(
            client,
            namespace=request.temporal.namespace,
            task_queue=request.task_queue,
            partitions=request.temporal.task_queue_partitions,
        )
        verdict = judge(
            pods=[pod_state(p) for p in pods],
            pollers=pollers,
            new_hash=request.pod_template_hash,
            build_id=request.build_id,
            queue_types=request.queue_types,
            graceful_shutdown=request.graceful_shutdown,
        )
        activity.heartbeat({"detail": verdict.detail, "polling": verdict.polling_pods, "missing": verdict.missing})
        if verdict.ok:
            polling = set(verdict.polling_pods)
            return VerifyResult(
                pods=verdict.polling_pods,
                pollers=[p for p in pollers if any(identity_names_pod(p.identity, pod) for pod in polling)],
                verified_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
        if time.monotonic() >= deadline:
            raise _application_error(
                VerificationFailed(
                    f"verification of {request.app} failed after {request.timeout_seconds}s on task queue "
                    f"{request.task_queue!r}: {verdict.detail}"
                )
            )
        await asyncio.sleep(0.25)


ALL: list[Callable[..., object]] = [
    read_revision,
    record_revision,
    build_image,
    build_platform_image,
    push_image_index,
    render_manifests,
    apply_manifests,
    wait_for_rollout,
    verify_polling,
]
