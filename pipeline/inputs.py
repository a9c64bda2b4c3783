"""From validated configuration to the workflow's inputs (DeployRequest and its parts): flattening, with no secret values.

Pure functions: the CLI calls them, tests call them, and what they return is
exactly what lands in the workflow's history.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.config import AppConfig, PipelineConfig
from pipeline.errors import (
    BadRequest,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
)
from pipeline.models import (
    AcrRegistryRef,
    AksClusterRef,
    AppSpec,
    BuildSpec,
    ClusterRef,
    DeployRequest,
    GateSpec,
    HostMount,
    ImagePullSecretRef,
    PipelineRole,
    ResourceSpec,
    RolloutSpec,
    SecretKeyRef,
    TemporalTarget,
)

# The reference grammar of the distribution project: [host[:port]/]path[:tag][@digest].
_IMAGE_REF = re.compile(
    r"^(?P<name>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def check_image_reference(image: str, *, option: str = "--image") -> str:
    if not _IMAGE_REF.match(image):
        raise BadRequest(f"{option}: not a valid image reference: {image!r} (expected registry/name[:tag][@sha256:digest])")
    return image


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise BadRequest(
            f"--tag: {tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )
    return tag


def temporal_target(config: PipelineConfig) -> TemporalTarget:
    secret = None
    if config.temporal.api_key_secret:
        name, key = config.temporal.api_key_secret.split("/", 1)
        secret = SecretKeyRef(name=name, key=key)
    return TemporalTarget(
        address=config.temporal.address,
        namespace=config.temporal.namespace,
        tls=config.temporal.tls,
        api_key_env=config.temporal.api_key_env,
        api_key_secret=secret,
        task_queue_partitions=config.temporal.task_queue_partitions,
        profile=config.temporal.profile,
        config_file=config.temporal.config_file,
        tls_client_cert_path=config.temporal.tls_client_cert_path,
        tls_client_key_path=config.temporal.tls_client_key_path,
        tls_server_ca_cert_path=config.temporal.tls_server_ca_cert_path,
        tls_server_name=config.temporal.tls_server_name,
        tls_secret=config.temporal.tls_secret,
    )


def cluster_ref(config: PipelineConfig) -> ClusterRef:
    """Which cluster activities use: the configured kubeconfig; else the local cluster's for target local,
    or for target aks the AKS cluster's coordinates (activities ask the AKS API for its kubeconfig)."""
    kubeconfig = config.kubernetes.kubeconfig
    aks = None
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        kubeconfig = str(path if path.is_absolute() else (config.path.parent / path).resolve())
    elif config.target == "local":
        kubeconfig = str(local_kubeconfig(config))
    else:
        aks = AksClusterRef(
            subscription_id=config.azure.subscription_id,
            resource_group=config.azure.resource_group,
            cluster_name=config.aks.cluster_name,
            admin_credentials=config.aks.admin_credentials,
            endpoint=config.azure.endpoint,
        )
    pull_secret = None
    if config.target == "aks" and config.acr.image_pull_secret:
        pull_secret = ImagePullSecretRef(name=config.acr.image_pull_secret, registry=acr_registry(config))
    return ClusterRef(kubeconfig=kubeconfig, context=config.kubernetes.context, aks=aks, image_pull_secret=pull_secret)


def acr_registry(config: PipelineConfig) -> AcrRegistryRef:
    """The ACR registry of target aks, by name only."""
    return AcrRegistryRef(
        subscription_id=config.azure.subscription_id,
        resource_group=config.azure.resource_group,
        name=config.acr.name,
        login_server=config.acr.login_server,
        endpoint=config.azure.endpoint,
        role_assignment_mode=config.acr.role_assignment_mode,
    )


def local_kubeconfig(config: PipelineConfig) -> Path:
    """The kubeconfig `bootstrap/stack up` writes for the local cluster, next to the config file."""
    return config.path.parent / ".stack" / "cluster" / "kubeconfig"


def image_repository(config: PipelineConfig, app: AppConfig) -> str:
    registry = config.registry.address if config.target == "local" else config.acr.login_server
    return f"{registry}/{app.name}"


def app_spec(config: PipelineConfig, app: AppConfig) -> AppSpec:
    return AppSpec(
        name=app.name,
        namespace=config.kubernetes.namespace,
        task_queue=app.task_queue,
        replicas=app.replicas,
        resources=ResourceSpec(
            cpu_request=app.resources.cpu_request,
            cpu_limit=app.resources.cpu_limit,
            memory_request=app.resources.memory_request,
            memory_limit=app.resources.memory_limit,
        ),
        rollout=RolloutSpec(
            progress_deadline_seconds=app.rollout.progress_deadline_seconds,
            max_surge=app.rollout.max_surge,
            max_unavailable=app.rollout.max_unavailable,
            verification_timeout_seconds=app.rollout.verification_timeout_seconds,
            auto_rollback=app.rollout.auto_rollback,
            strategy=app.rollout.strategy,
            steps=app.rollout.steps,
            step_pause_seconds=app.rollout.step_pause_seconds,
            scaledown_delay_seconds=app.rollout.scaledown_delay_seconds,
            delete_delay_seconds=app.rollout.delete_delay_seconds,
            drained_replicas=app.rollout.drained_replicas,
            retained_versions=app.rollout.retained_versions,
        ),
        health_port=app.health_port,
        termination_grace_period_seconds=app.termination_grace_period_seconds,
        command=tuple(app.command),
        build=BuildSpec(
            dockerfile=os.path.relpath(app.dockerfile, app.build_context),
            target=app.build_target,
            repository=image_repository(config, app),
            build_args=dict(app.build_args),
            acr=acr_registry(config) if config.target == "aks" else None,
            platforms=tuple(app.platforms),
        ),
        image_pull_secret=config.acr.image_pull_secret if config.target == "aks" else "",
        pipeline_role=pipeline_role(config) if app.role == "pipeline" else None,
        readiness_path=app.readiness_path,
        liveness_path=app.liveness_path,
        queue_types=tuple(app.queue_types),
        graceful_shutdown=app.graceful_shutdown,
        architecture=app.architecture,
        gates=tuple(
            GateSpec(
                name=g.name,
                kind=g.kind,
                timeout_seconds=g.timeout_seconds,
                closed_histories=g.closed_histories,
                workflow_type=g.workflow_type,
                input=g.input,
                each_step=g.each_step,
                soak_seconds=g.soak_seconds,
                max_failed=g.max_failed,
                max_failure_rate_delta=g.max_failure_rate_delta,
                min_samples=g.min_samples,
            )
            for g in app.gates
        ),
        replay_modules=tuple(app.replay_modules),
    )


DOCKER_SOCKET = "/var/run/docker.sock"


def pipeline_role(config: PipelineConfig, *, docker_socket: str = DOCKER_SOCKET) -> PipelineRole:
    """What the pipeline's own worker pods need on this target (see models.PipelineRole).

    Target local: the Docker engine's socket (and its group, so uid 10001 may use it), nothing
    else: builds read the source the CLI uploaded (pipeline/source.py), never a path of this
    machine, so no build context is mounted. Reads the socket's group here, on the machine whose engine
    the pods will share (the one node of the local cluster). Target aks: no mounts (ACR Tasks
    builds), the workload identity's client id.
    """
    if config.target != "local":
        return PipelineRole()  # the CLI adds the workload identity (commands.prepare: it asks Azure for its ids)
    try:
        group = os.stat(docker_socket).st_gid
    except OSError as exc:
        raise BadRequest(
            f"the pipeline worker of target local needs the Docker engine's socket {docker_socket}: {exc.strerror}; "
            "start the local stack (`bootstrap/stack up`)"
        ) from exc
    socket = HostMount(name="docker-socket", path=docker_socket, read_only=False, type="Socket")
    return PipelineRole(host_mounts=(socket,), supplemental_groups=(group,))


def deploy_request(
    config: PipelineConfig,
    app_name: str | None,
    *,
    image: str = "",
    tag: str = "",
    requested_by: str = "",
    no_build: bool = False,
) -> DeployRequest:
    if image and tag:
        raise BadRequest("--image and --tag exclude each other: --tag names an image the pipeline builds")
    if image and no_build:
        raise BadRequest("--image and --no-build exclude each other: --image already names an image that is not built")
    app = config.app(app_name)
    return DeployRequest(
        app=app_spec(config, app),
        environment=config.target,
        temporal=temporal_target(config),
        cluster=cluster_ref(config),
        image=check_image_reference(image) if image else "",
        tag=check_tag(tag) if tag else "",
        requested_by=requested_by,
    )
