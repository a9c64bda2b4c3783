"""Kubernetes manifests of one app, as data: a pure function of the config and the image digest.

    manifests = render_manifests(RenderInput(app=..., temporal=..., image="repo@sha256:...", build_id=...))
    print(to_yaml(manifests))          # what `pipeline render` prints, like `helm template`

`render_manifests` has no clock, no randomness and no I/O: the same input gives
byte-identical output, so a workflow may call it and a golden file can pin it.
The objects come in apply order:

    Namespace                     the app's namespace (only the managed-by label:
                                  several apps may share it under one field manager)
    ServiceAccount <app>          no token mounted
    ConfigMap <app>-temporal      non-secret Temporal settings, read with envFrom
    Deployment <app>              the worker (see `deployment`)

A versioned app (`[apps.X.rollout].strategy = "versioned"`) gets one Deployment and
ConfigMap per build instead: `<app>-<short build id>` (see `as_version`).

An app with `role = "pipeline"` (the pipeline's own worker, `with_pipeline_role`)
also gets a Role and RoleBinding `<app>` right after its ServiceAccount (whose
token it mounts), with exactly PIPELINE_RULES; its volumes come from the data
in `AppSpec.pipeline_role` (hostPath Docker socket and build contexts on target
local; on aks workload identity: a projected ServiceAccount token, the identity's
public ids and, for a private Azure endpoint, a ConfigMap `<app>-azure-ca` with
its CA certificates), never a Secret.

Secrets are only ever *referenced*: with `temporal.api_key_secret` set, the
container reads TEMPORAL_API_KEY through `valueFrom.secretKeyRef`; with
`temporal.tls_secret` set (mTLS), that kubernetes.io/tls Secret is mounted
read-only at TLS_DIR and the ConfigMap names its files with temporalio.envconfig's
own variables (TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, and
TEMPORAL_TLS_SERVER_CA_CERT_PATH for its ca.crt when a server CA is configured),
so a worker that connects with `ClientConfig.load_client_connect_config()` needs
no code for it. No Secret object is rendered and no secret value can reach these dicts.

Rollout strategy: RollingUpdate with `maxSurge` and `maxUnavailable` from the
app's `[rollout]` config. `maxUnavailable` defaults to 0 (config.toml), which
is what keeps every old worker polling until its replacement is ready; a config
that sets it explicitly wins (the validator refuses 0 together with maxSurge 0).

A Deployment's selector is immutable, so it holds only the name and instance
labels; the version label (`app.kubernetes.io/version`, the build id made
label-safe) lives on the objects and the pod template, never in the selector.
The pod template also carries `pipeline.temporal.io/config-hash`, a digest of
the ConfigMap's data, so a changed Temporal setting rolls the pods even when
the image is the same (the same idea as Helm's `checksum/config`).

Readiness: every pod carries the readiness gate `markers.POLLING_CONDITION`,
which the pipeline worker's controller (pipeline/readiness.py) sets once
Temporal lists the pod polling, and the annotations that tell it what to look
for (task queue, queue types, Temporal namespace). HTTP probes, a port and the
HEALTH_* variables are rendered only for an app that declares a health
endpoint (`health_port`); nothing else is asked of the worker's image.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    ImageNotPinned as ImageNotPinned,
    PipelineError as PipelineError,
    RenderError as RenderError,
)
from pipeline.markers import (
    POLLING_CONDITION,
    QUEUE_TYPES_ANNOTATION,
    TASK_QUEUE_ANNOTATION,
    TEMPORAL_NAMESPACE_ANNOTATION,
)
from pipeline.models import AppSpec, Manifests, PipelineRole, RenderInput, TemporalTarget, WorkloadIdentity

Obj = dict[str, Any]

MANAGED_BY = "temporal-deploy-pipeline"
BUILD_ID_ANNOTATION = "pipeline.temporal.io/build-id"
CONFIG_HASH_ANNOTATION = "pipeline.temporal.io/config-hash"
# On the Deployment (not its pod template: listing them restarts no pod): the platforms the image is built for.
PLATFORMS_ANNOTATION = "pipeline.temporal.io/platforms"
ARCH_NODE_LABEL = "kubernetes.io/arch"
# Versioned apps (pipeline/versioning.py): the short build id in each version's selector and labels,
# the Worker Deployment the version belongs to, and the variable that tells the worker to opt in.
VERSION_LABEL = "pipeline.temporal.io/version"
WORKER_DEPLOYMENT_ANNOTATION = "pipeline.temporal.io/worker-deployment"
VERSIONING_ENV = "TEMPORAL_USE_WORKER_VERSIONING"
CONTAINER_NAME = "worker"
# mTLS: the [temporal].tls_secret (type kubernetes.io/tls) mounted as files, named by envconfig's variables.
TLS_VOLUME = "temporal-tls"
TLS_DIR = "/etc/temporal/tls"
TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY = "tls.crt", "tls.key", "ca.crt"
HEALTH_PORT_NAME = "health"
RUN_AS_ID = 10001
REVISION_HISTORY_LIMIT = 10
# SHUTDOWN_GRACE_SECONDS = terminationGracePeriodSeconds - this, so in-flight work ends before SIGKILL.
SHUTDOWN_MARGIN_SECONDS = 5

_DIGEST_RE = re.compile(r"^(?P<repo>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
_LABEL_MAX = 63
_TOP_KEYS = ("apiVersion", "kind", "metadata")


# ----- helpers that other layers use -----


def label_value(text: str) -> str:
    """`text` as a valid label value: other characters become "-", at most 63, alphanumeric ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:_LABEL_MAX]
    return value.strip("-_.")


def require_digest(image: str) -> str:
    """`image` if it is pinned as `repository@sha256:<64 hex>`; else ImageNotPinned."""
    if _DIGEST_RE.match(image):
        return image
    raise ImageNotPinned(
        f"image {image!r} is not referenced by digest; deploy `repository@sha256:<digest>` "
        "(what `pipeline deploy` builds and pushes), never a tag that can move"
    )


# ----- the objects -----


def render_manifests(spec: RenderInput) -> Manifests:
    """Namespace, ServiceAccount, ConfigMap and Deployment of `spec.app`, in apply order."""
    image = require_digest(spec.image)
    if not spec.build_id or any(c.isspace() for c in spec.build_id) or len(spec.build_id) > 255:
        raise RenderError(
            f"build id {spec.build_id!r} must be 1-255 characters without spaces; pipeline.references.build_id_of() derives it from the image"
        )
    app = spec.app
    labels = app_labels(app, build_id=spec.build_id)
    settings = temporal_settings(app, spec.temporal)
    if app.pipeline_role is not None:
        settings.update(pipeline_worker_settings(app, spec.temporal))
    objects = [
        namespace(name=app.namespace),
        service_account(app=app, labels=labels),
        config_map(app=app, labels=labels, data=settings),
        deployment(
            app=app,
            labels=labels,
            image=image,
            build_id=spec.build_id,
            temporal=spec.temporal,
            config_hash=_digest(settings),
        ),
    ]
    if app.pipeline_role is not None:
        objects = with_pipeline_role(objects, app=app, role=app.pipeline_role, labels=labels)
    if app.rollout.versioned:
        objects = as_version(objects, app=app, build_id=spec.build_id)
    return Manifests(objects=objects)


# ----- versioned apps: one Deployment per build -----


def version_suffix(build_id: str) -> str:
    """The short build id in a versioned Deployment's name: 10 hex digits of the digest (or the label-safe id)."""
    text = build_id.split(":", 1)[1] if build_id.startswith("sha256:") else build_id
    return label_value(text.lower())[:10].strip("-_.") or "0"


def version_name(app: AppSpec, build_id: str) -> str:
    """`<app>-<short build id>`: the Deployment (and its ConfigMap's prefix) of one version of a versioned app."""
    return f"{app.name}-{version_suffix(build_id)}"


def as_version(objects: list[Obj], *, app: AppSpec, build_id: str) -> list[Obj]:
    """The objects of one Worker Deployment Version (strategy "versioned").

    The Deployment is `<app>-<short build id>` with the short build id in its selector, so the
    versions' ReplicaSets never adopt each other's pods; its ConfigMap is its own
    (`<app>-<short>-temporal`, with TEMPORAL_USE_WORKER_VERSIONING=true), so nothing a later
    version applies reaches an older version's pods: a version's pod template is never patched.
    The Namespace and ServiceAccount are shared by every version of the app.
    """
    name = version_name(app, build_id)
    cm_name = f"{name}-temporal"
    out: list[Obj] = []
    for original in objects:
        obj = copy.deepcopy(original)
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == config_map_name(app):
            obj["metadata"]["name"] = cm_name
            obj["data"] = {**obj["data"], VERSIONING_ENV: "true"}
        elif obj["kind"] == "Deployment":
            obj["metadata"]["name"] = name
            obj["metadata"]["labels"][VERSION_LABEL] = version_suffix(build_id)
            obj["metadata"].setdefault("annotations", {}).update(
                {BUILD_ID_ANNOTATION: build_id, WORKER_DEPLOYMENT_ANNOTATION: deployment_name(app)}
            )
            spec = obj["spec"]
            spec["selector"]["matchLabels"][VERSION_LABEL] = version_suffix(build_id)
            template = spec["template"]
            template["metadata"]["labels"][VERSION_LABEL] = version_suffix(build_id)
            template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] = _digest(obj_data(out, cm_name))
            for c in template["spec"]["containers"]:
                c["envFrom"] = [{"configMapRef": {"name": cm_name}}]
        out.append(obj)
    return out


def obj_data(objects: list[Obj], config_map: str) -> dict[str, str]:
    """The data of the ConfigMap named `config_map` among `objects` ({} when absent)."""
    return next((dict(o["data"]) for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == config_map), {})


def app_labels(app: AppSpec, *, build_id: str) -> dict[str, str]:
    """The recommended `app.kubernetes.io` labels of every object of the app."""
    return {
        "app.kubernetes.io/name": app.name,
        "app.kubernetes.io/instance": app.name,
        "app.kubernetes.io/version": label_value(build_id),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": app.namespace,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector_labels(app: AppSpec) -> dict[str, str]:
    """The Deployment's (immutable) selector: name and instance, never the version."""
    return {"app.kubernetes.io/name": app.name, "app.kubernetes.io/instance": app.name}


def config_map_name(app: AppSpec) -> str:
    return f"{app.name}-temporal"


def temporal_settings(app: AppSpec, temporal: TemporalTarget) -> dict[str, str]:
    """The non-secret Temporal settings the worker reads from its environment."""
    return {
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": temporal.namespace,
        "TEMPORAL_TASK_QUEUE": app.task_queue,
        "TEMPORAL_DEPLOYMENT_NAME": deployment_name(app),
        # An API key or a client key is only ever sent over TLS, as the pipeline's own client does (temporal_client.py).
        "TEMPORAL_TLS": "true" if temporal.tls or temporal.api_key_secret is not None or temporal.tls_secret else "false",
        **tls_settings(temporal),
    }


def tls_settings(temporal: TemporalTarget) -> dict[str, str]:
    """envconfig's TLS variables for the pods: the mounted Secret's files, the server name; {} without them."""
    out: dict[str, str] = {}
    if temporal.tls_secret:
        out["TEMPORAL_TLS_CLIENT_CERT_PATH"] = f"{TLS_DIR}/{TLS_CERT_KEY}"
        out["TEMPORAL_TLS_CLIENT_KEY_PATH"] = f"{TLS_DIR}/{TLS_KEY_KEY}"
        if temporal.tls_server_ca_cert_path:
            out["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = f"{TLS_DIR}/{TLS_CA_KEY}"
    if temporal.tls_server_name:
        out["TEMPORAL_TLS_SERVER_NAME"] = temporal.tls_server_name
    return out


def tls_volume(temporal: TemporalTarget) -> tuple[list[Obj], list[Obj]]:
    """The pod's volume and the container's mount of [temporal].tls_secret; ([], []) without one."""
    if not temporal.tls_secret:
        return [], []
    # kubelet's default mode (0644): the worker runs as a non-root user, and not every kubelet gives
    # secret files the pod's fsGroup (the local cluster's does not), so a 0440 file could be unreadable.
    volume = {"name": TLS_VOLUME, "secret": {"secretName": temporal.tls_secret}}
    return [volume], [{"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True}]


def deployment_name(app: AppSpec) -> str:
    """The app's Worker Deployment name for a worker that opts into versioning: `<namespace>/<app>`,
    as temporal-worker-controller names one after its Kubernetes namespace and resource."""
    return f"{app.namespace}/{app.name}"


def namespace(*, name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
    }


def service_account(*, app: AppSpec, labels: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(app.name, app.namespace, labels),
        "automountServiceAccountToken": False,
    }


def config_map(*, app: AppSpec, labels: Mapping[str, str], data: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config_map_name(app), app.namespace, labels),
        "data": dict(data),
    }


def deployment(
    *,
    app: AppSpec,
    labels: Mapping[str, str],
    image: str,
    build_id: str,
    temporal: TemporalTarget,
    config_hash: str,
) -> Obj:
    grace = app.termination_grace_period_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_metadata(app.name, app.namespace, labels),
            **({"annotations": {PLATFORMS_ANNOTATION: ",".join(app.build.platforms)}} if app.build else {}),
        },
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": selector_labels(app)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": app.rollout.max_surge, "maxUnavailable": app.rollout.max_unavailable},
            },
            "progressDeadlineSeconds": app.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "minReadySeconds": 0,
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        BUILD_ID_ANNOTATION: build_id,
                        CONFIG_HASH_ANNOTATION: config_hash,
                        TASK_QUEUE_ANNOTATION: app.task_queue,
                        QUEUE_TYPES_ANNOTATION: ",".join(app.queue_types),
                        TEMPORAL_NAMESPACE_ANNOTATION: temporal.namespace,
                    },
                },
                "spec": {
                    "serviceAccountName": app.name,
                    "automountServiceAccountToken": False,
                    # Only the Secret's name; its value is written by the apply activity (see pipeline.azure.pull_secret).
                    **({"imagePullSecrets": [{"name": app.image_pull_secret}]} if app.image_pull_secret else {}),
                    "terminationGracePeriodSeconds": grace,
                    # Only nodes of this architecture run the pods (config: [apps.<name>].architecture).
                    **({"nodeSelector": {ARCH_NODE_LABEL: app.architecture}} if app.architecture else {}),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_ID,
                        "runAsGroup": RUN_AS_ID,
                        "fsGroup": RUN_AS_ID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # Ready only once Temporal lists the pod as a poller (pipeline/readiness.py).
                    "readinessGates": [{"conditionType": POLLING_CONDITION}],
                    "containers": [container(app=app, image=image, build_id=build_id, temporal=temporal)],
                    **({"volumes": tls_volume(temporal)[0]} if temporal.tls_secret else {}),
                },
            },
        },
    }


def container(*, app: AppSpec, image: str, build_id: str, temporal: TemporalTarget) -> Obj:
    """The `worker` container: the env contract of sample_worker/settings.py, probes, limits, no privileges."""
    out: Obj = {"name": CONTAINER_NAME, "image": image, "imagePullPolicy": "IfNotPresent"}
    if app.command:
        out["command"] = list(app.command)
    out["envFrom"] = [{"configMapRef": {"name": config_map_name(app)}}]
    out["env"] = container_env(app=app, build_id=build_id, temporal=temporal)
    if temporal.tls_secret:
        out["volumeMounts"] = tls_volume(temporal)[1]
    out.update(probes(app))
    # A crash is named by its last log lines in the pod's status (what the rollout wait reports),
    # when the worker wrote no termination message: Kubernetes keeps at most 80 lines / 2 KiB.
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    out["resources"] = {
        "requests": {"cpu": app.resources.cpu_request, "memory": app.resources.memory_request},
        "limits": {"cpu": app.resources.cpu_limit, "memory": app.resources.memory_limit},
    }
    out["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return out


def probes(app: AppSpec) -> Obj:
    """The port and HTTP probes of an app that declares a health endpoint (`health_port`); none otherwise.

    Readiness needs no probe: the readiness gate waits for Temporal itself. An
    app's own readiness path adds its view (the sample worker answers 200 only
    while polling). Every rollout step waits for the new pod's readiness, so the
    probe period is latency added to each step: 1 s, the smallest Kubernetes
    allows, for a GET the worker answers from memory.
    """
    if not app.health_port:
        return {}
    out: Obj = {"ports": [{"name": HEALTH_PORT_NAME, "containerPort": app.health_port, "protocol": "TCP"}]}
    if app.readiness_path:
        out["readinessProbe"] = {
            "httpGet": {"path": app.readiness_path, "port": HEALTH_PORT_NAME},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        }
    if app.liveness_path:
        out["livenessProbe"] = {
            "httpGet": {"path": app.liveness_path, "port": HEALTH_PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        }
    return out


def container_env(*, app: AppSpec, build_id: str, temporal: TemporalTarget) -> list[Obj]:
    """Per-pod values (downward API), the build id, and the API key as a Secret reference only.

    HEALTH_HOST is the pod IP: on the local cluster every pod shares the host
    network with its own 127.x address, so binding 0.0.0.0 would collide.
    """
    env: list[Obj] = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("POD_IP", "status.podIP"),
    ]
    if app.health_port:
        env += [{"name": "HEALTH_HOST", "value": "$(POD_IP)"}, {"name": "HEALTH_PORT", "value": str(app.health_port)}]
    env += [
        {"name": "BUILD_ID", "value": build_id},
        # The names temporal-worker-controller gives its workers, for a worker that opts into versioning.
        {"name": "TEMPORAL_WORKER_BUILD_ID", "value": build_id},
        {
            "name": "SHUTDOWN_GRACE_SECONDS",
            "value": str(max(1, app.termination_grace_period_seconds - SHUTDOWN_MARGIN_SECONDS)),
        },
    ]
    if temporal.api_key_secret is not None:
        ref = temporal.api_key_secret
        env.append({"name": "TEMPORAL_API_KEY", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


# ----- the pipeline's own worker (role "pipeline") -----

# The least privilege of the activities, in the app's namespace: exactly the API calls that
# pipeline/kube makes for them (tests/test_render_pipeline_role.py keeps this equal to that table).
#   server_side_apply (PATCH, +create when absent): every kind the pipeline renders, its own included;
#     a Namespace can be patched (a Role in namespace N grants verbs on the namespace N object itself)
#     but never created: the namespace exists before the in-cluster worker does (bootstrap creates it);
#   read_revision: GET configmaps; record_revision: apply of a ConfigMap;
#   wait_for_rollout: list + watch deployments and pods, list replicasets;
#   verify_polling: list pods;
#   the readiness gate (pipeline/readiness.py, in the worker process): list + watch pods, patch pods/status;
#   wait_for_rollout's diagnosis of a failing probe: list events (the pod's Unhealthy ones);
#   versioned apps (pipeline/version_activities.py): list deployments (survey), get + patch
#   deployments/scale and delete deployments and configmaps (a version's sunset);
#   the replay gate (pipeline/gates.py): apply, get and delete its Job and ConfigMap, list the Job's
#   pods (the verdict is their termination message: no pods/log).
PIPELINE_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "namespaces", ("patch",)),
    ("", "serviceaccounts", ("create", "patch")),
    ("", "configmaps", ("create", "delete", "get", "patch")),
    ("", "pods", ("list", "watch")),
    ("", "pods/status", ("patch",)),
    ("", "events", ("list",)),
    ("apps", "deployments", ("create", "delete", "get", "list", "patch", "watch")),
    ("apps", "deployments/scale", ("patch",)),
    ("apps", "replicasets", ("list",)),
    ("batch", "jobs", ("create", "delete", "get", "patch")),
    ("rbac.authorization.k8s.io", "roles", ("create", "patch")),
    ("rbac.authorization.k8s.io", "rolebindings", ("create", "patch")),
)
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
WORKLOAD_IDENTITY_TENANT_ID = "azure.workload.identity/tenant-id"
TMP_VOLUME = "tmp"
# Workload identity as AKS's mutating webhook injects it (same volume, path, audience and variables):
# rendered here instead, so that it needs no webhook and the manifests say exactly what the pods get.
AZURE_TOKEN_VOLUME = "azure-identity-token"
AZURE_TOKEN_DIR = "/var/run/secrets/azure/tokens"
AZURE_TOKEN_AUDIENCE = "api://AzureADTokenExchange"
AZURE_TOKEN_SECONDS = 3600
AZURE_CA_VOLUME = "azure-ca"
AZURE_CA_DIR = "/etc/pipeline/azure-ca"
AZURE_CA_KEY = "ca.pem"


def pipeline_worker_settings(app: AppSpec, temporal: TemporalTarget) -> dict[str, str]:
    """What `pipeline worker` reads from its environment (it has no config file): its task queue, the key's env."""
    settings = {"PIPELINE__PIPELINE__TASK_QUEUE": app.task_queue}
    if temporal.api_key_secret is not None:
        settings["TEMPORAL_API_KEY_ENV"] = "TEMPORAL_API_KEY"  # the secretKeyRef's variable (see container_env)
    return settings


def with_pipeline_role(objects: list[Obj], *, app: AppSpec, role: PipelineRole, labels: Mapping[str, str]) -> list[Obj]:
    """The manifests of the pipeline's own worker: the token mounted, a Role and RoleBinding, its volumes.

    Adds to the plain worker's objects: automountServiceAccountToken on the ServiceAccount and the pod;
    Role + RoleBinding `<app>` (PIPELINE_RULES) after the ServiceAccount; a writable /tmp (emptyDir: the
    root filesystem stays read-only); the host mounts at their own paths and the supplemental groups
    (target local: Docker socket and build contexts); workload identity (target aks, with a client id).
    """
    out = copy.deepcopy(objects)
    by_kind = {obj["kind"]: obj for obj in out}
    account, deploy = by_kind["ServiceAccount"], by_kind["Deployment"]
    account["automountServiceAccountToken"] = True
    pod = deploy["spec"]["template"]
    pod_spec, worker = pod["spec"], pod["spec"]["containers"][0]
    pod_spec["automountServiceAccountToken"] = True
    volumes: list[Obj] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    mounts: list[Obj] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]
    for mount in role.host_mounts:
        source: Obj = {"path": mount.path, **({"type": mount.type} if mount.type else {})}
        volumes.append({"name": mount.name, "hostPath": source})
        mounts.append({"name": mount.name, "mountPath": mount.path, **({"readOnly": True} if mount.read_only else {})})
    pod_spec["volumes"] = volumes + pod_spec.get("volumes", [])  # after the mTLS Secret's, if any
    worker["volumeMounts"] = mounts + worker.get("volumeMounts", [])
    if role.supplemental_groups:
        pod_spec["securityContext"]["supplementalGroups"] = list(role.supplemental_groups)
    if role.workload_identity is not None:
        ca_map = with_workload_identity(account, pod_spec, worker, app=app, identity=role.workload_identity, labels=labels)
        if ca_map is not None:
            out.insert(out.index(deploy), ca_map)
    index = out.index(account) + 1
    out[index:index] = [pipeline_role_object(app=app, labels=labels), pipeline_role_binding(app=app, labels=labels)]
    return out


def with_workload_identity(
    account: Obj, pod_spec: Obj, worker: Obj, *, app: AppSpec, identity: WorkloadIdentity, labels: Mapping[str, str]
) -> Obj | None:
    """Azure workload identity on the pod (in place); the CA bundle's ConfigMap, if the identity names one.

    What AKS's webhook would inject for a pod labelled `azure.workload.identity/use`: a projected
    ServiceAccount token for audience api://AzureADTokenExchange at AZURE_FEDERATED_TOKEN_FILE, and
    AZURE_CLIENT_ID / AZURE_TENANT_ID (/ AZURE_AUTHORITY_HOST), which azure-identity's
    WorkloadIdentityCredential reads. The label is left off, so the webhook, where installed, adds nothing twice.
    """
    account["metadata"]["annotations"] = {
        WORKLOAD_IDENTITY_CLIENT_ID: identity.client_id,
        WORKLOAD_IDENTITY_TENANT_ID: identity.tenant_id,
    }
    env = [
        {"name": "AZURE_CLIENT_ID", "value": identity.client_id},
        {"name": "AZURE_TENANT_ID", "value": identity.tenant_id},
        {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": f"{AZURE_TOKEN_DIR}/{AZURE_TOKEN_VOLUME}"},
    ]
    if identity.authority_host:
        env.append({"name": "AZURE_AUTHORITY_HOST", "value": identity.authority_host})
    token = {"audience": AZURE_TOKEN_AUDIENCE, "expirationSeconds": AZURE_TOKEN_SECONDS, "path": AZURE_TOKEN_VOLUME}
    pod_spec["volumes"].append({"name": AZURE_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}})
    worker["volumeMounts"].append({"name": AZURE_TOKEN_VOLUME, "mountPath": AZURE_TOKEN_DIR, "readOnly": True})
    ca_map: Obj | None = None
    if identity.ca_bundle_pem:
        name = f"{app.name}-azure-ca"
        ca_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(name, app.namespace, labels),
            "data": {AZURE_CA_KEY: identity.ca_bundle_pem},
        }
        pod_spec["volumes"].append({"name": AZURE_CA_VOLUME, "configMap": {"name": name}})
        worker["volumeMounts"].append({"name": AZURE_CA_VOLUME, "mountPath": AZURE_CA_DIR, "readOnly": True})
        env.append({"name": "AZURE_CA_BUNDLE", "value": f"{AZURE_CA_DIR}/{AZURE_CA_KEY}"})
    worker["env"] = [*worker.get("env", []), *env]
    return ca_map


def pipeline_role_object(*, app: AppSpec, labels: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(app.name, app.namespace, labels),
        "rules": [
            {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)} for group, resource, verbs in PIPELINE_RULES
        ],
    }


def pipeline_role_binding(*, app: AppSpec, labels: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(app.name, app.namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": app.name},
        "subjects": [{"kind": "ServiceAccount", "name": app.name, "namespace": app.namespace}],
    }


# ----- YAML, only at the edge -----


def to_yaml(manifests: Manifests) -> str:
    """Multi-document YAML, `---` before each object, apiVersion/kind/metadata first (like `helm template`)."""
    docs = []
    for obj in manifests.objects:
        ordered = {key: obj[key] for key in _TOP_KEYS if key in obj}
        ordered.update((key, value) for key, value in obj.items() if key not in _TOP_KEYS)
        docs.append("---\n" + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=1000))
    return "".join(docs)


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> Obj:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _digest(data: Mapping[str, str]) -> str:
    text = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
