"""Dataclasses that cross the workflow/activity boundary: one in, one out, for every step.

Everything here is recorded in Temporal's history, so nothing here may hold a
secret: the Temporal API key and registry credentials travel only as
*references* (the name of an env var, or of a Kubernetes Secret and key) that
activities resolve where they run. New fields get defaults, so histories
recorded before they existed still replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Kubernetes Secret in the app's namespace; the value never leaves the cluster."""

    name: str
    key: str


@dataclass(frozen=True)
class TemporalTarget:
    """How deployed workers (and the verifier) reach Temporal, without any secret value."""

    address: str
    namespace: str
    tls: bool = False
    # Name of the env var that holds the API key where the pipeline worker runs.
    api_key_env: str = ""
    # Where pods get the API key from (rendered as a secretKeyRef), if any.
    api_key_secret: SecretKeyRef | None = None
    # Partitions per task queue (the server's matching.numTaskqueueReadPartitions): see pipeline/verify.py.
    task_queue_partitions: int = 4
    # The envconfig profile the API key is read from when api_key_env is "" (pipeline/config/_profile.py).
    profile: str = ""
    config_file: str = ""
    # TLS files of the connecting process (paths, never contents); a pipeline worker uses its own
    # (pipeline/temporal_client.py: use_own_credentials), so these paths matter only where they were set.
    tls_client_cert_path: str = ""
    tls_client_key_path: str = ""
    tls_server_ca_cert_path: str = ""
    tls_server_name: str = ""
    # Where pods get their client certificate and key (and ca.crt) from: a kubernetes.io/tls Secret's name.
    tls_secret: str = ""


@dataclass(frozen=True)
class ResourceSpec:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class RolloutSpec:
    progress_deadline_seconds: int
    max_surge: int | str
    max_unavailable: int | str
    verification_timeout_seconds: int
    auto_rollback: bool
    # Defaults keep histories from before versioned rollouts readable (they are all rolling).
    strategy: str = "rolling"
    steps: tuple[int, ...] = ()
    step_pause_seconds: int = 30
    scaledown_delay_seconds: int = 3600
    delete_delay_seconds: int = 86400
    drained_replicas: int = 0
    retained_versions: int = 5

    @property
    def versioned(self) -> bool:
        return self.strategy == "versioned"


@dataclass(frozen=True)
class GateSpec:
    """One gate of an app (config `[[apps.X.gates]]`): "replay", "workflow" or "analysis"."""

    name: str
    kind: str
    timeout_seconds: int = 120
    closed_histories: int = 0
    workflow_type: str = ""
    input: str = ""  # JSON text
    each_step: bool = False
    soak_seconds: int = 30
    max_failed: int = 0
    max_failure_rate_delta: float = 0.1
    min_samples: int = 10


@dataclass(frozen=True)
class SkippedGate:
    """`pipeline deploy --skip-gate NAME --reason TEXT`: recorded in the history with who asked."""

    name: str
    reason: str
    requested_by: str = ""


@dataclass(frozen=True)
class AcrRegistryRef:
    """Where ACR Tasks builds (target "aks"): names only; credentials come from the worker's Azure identity."""

    subscription_id: str
    resource_group: str
    name: str  # the registry's resource name, e.g. "temporalworkers"
    login_server: str  # e.g. "temporalworkers.azurecr.io"
    endpoint: str = "https://management.azure.com"  # ARM; overridable for the local imitation
    # [acr].role_assignment_mode: an ABAC registry's runs carry the caller's identity ("[caller]"). The
    # pipeline's identity may not read the registry (Tasks Contributor has no registries/read), so the
    # config says it; where the registry is readable its own mode wins.
    role_assignment_mode: str = ""


@dataclass(frozen=True)
class SourceRef:
    """The build context as it travels (pipeline/source.py): packed and uploaded by the CLI, never a client path.

    `source_hash` names the build (the default tag `src-<hash[:16]>` and the image's
    `pipeline.source-hash` label); `digest` is the sha256 of the deterministic tar.gz;
    `location` is where the archive is: target local `<registry>/<repo>@sha256:...` (a
    blob of the app's image repository), target aks the `relativePath` of the ACR build
    source upload. `digest`/`location` "" = not uploaded (`render`, `--no-build`, or an
    image already built from this source).
    """

    source_hash: str
    digest: str = ""  # "sha256:<hex of the archive>"
    size: int = 0  # bytes of the archive
    location: str = ""


@dataclass(frozen=True)
class BuildSpec:
    """What to build: the Dockerfile's path inside the uploaded source, and where the image goes."""

    dockerfile: str  # relative to the build context (the archive's root)
    target: str
    repository: str  # e.g. 127.0.0.1:5000/sample-worker or myacr.azurecr.io/sample-worker
    build_args: dict[str, str] = field(default_factory=dict)
    acr: AcrRegistryRef | None = None  # set for target "aks": build with ACR Tasks there
    platform: str = "linux/amd64"  # legacy, ignored: the single platform of histories before `platforms`
    timeout_seconds: int = 1800  # ACR run timeout (ACR accepts 300-28800)
    source: SourceRef | None = None  # what the CLI uploaded (None: not shipped yet)
    # Legacy, ignored: the CLI's absolute context path, as histories recorded before `source`
    # existed hold it (kept, last and defaulted, so they still decode; nothing reads it).
    context: str = ""
    # "os/arch[/variant]" of each image built; more than one: an image per platform under one OCI image index.
    platforms: tuple[str, ...] = ("linux/amd64",)


@dataclass(frozen=True)
class HostMount:
    """A node path the pod mounts at the same path (hostPath; the local target's pipeline worker only)."""

    name: str  # the volume's name
    path: str
    read_only: bool = True
    type: str = ""  # hostPath type: "", "Directory", "Socket", ...


@dataclass(frozen=True)
class PipelineRole:
    """The app is the pipeline's own worker (`role = "pipeline"`): what its pods get beyond a plain worker.

    A ServiceAccount whose token is mounted, a namespaced Role/RoleBinding with the
    activities' least privilege (render.PIPELINE_RULES), and per target: on "local"
    the Docker engine and the build context as hostPath mounts (with the socket's
    group as a supplemental group); on "aks" workload identity (no mounts: builds go
    to ACR Tasks). Never a secret.
    """

    host_mounts: tuple[HostMount, ...] = ()
    supplemental_groups: tuple[int, ...] = ()
    azure_client_id: str = ""  # legacy (inputs of earlier releases); read workload_identity instead
    workload_identity: WorkloadIdentity | None = None  # target "aks": who the pods are in Entra ID


@dataclass(frozen=True)
class WorkloadIdentity:
    """Azure workload identity of the pipeline worker's pods: public ids, never a secret.

    The pods exchange a projected ServiceAccount token (audience `api://AzureADTokenExchange`)
    for an Entra ID token of this user-assigned managed identity (its federated credential
    names the pods' ServiceAccount on the cluster's OIDC issuer).
    """

    client_id: str
    tenant_id: str
    authority_host: str = ""  # "" = Microsoft Entra ID (public cloud); set for a sovereign cloud or the local imitation
    ca_bundle_pem: str = ""  # public CA certificates the pods trust for Azure endpoints ("" = the image's system CAs)


@dataclass(frozen=True)
class AppSpec:
    """One app as the workflow needs it: the validated config, flattened, with no secrets."""

    name: str
    namespace: str  # Kubernetes namespace
    task_queue: str
    replicas: int
    resources: ResourceSpec
    rollout: RolloutSpec
    health_port: int  # 0 = the worker serves no health endpoint
    termination_grace_period_seconds: int
    command: tuple[str, ...] = ()
    build: BuildSpec | None = None
    image_pull_secret: str = ""  # name of a dockerconfigjson Secret the pods pull with; "" = the node's identity
    pipeline_role: PipelineRole | None = None  # set when this app is the pipeline's own worker
    # The worker's HTTP health endpoint (health_port 0 = none: no probes); a path "" = no such probe.
    readiness_path: str = "/readyz"
    liveness_path: str = "/healthz"
    queue_types: tuple[str, ...] = ("workflow", "activity")  # what the readiness gate and the verifier wait for
    graceful_shutdown: bool = False  # stops polling on SIGTERM: its old pods drain rather than serve while they stop
    architecture: str = ""  # "" = any node; else the pods' nodeSelector kubernetes.io/arch
    gates: tuple[GateSpec, ...] = ()  # what a deployment must pass (pipeline/gates.py)
    replay_modules: tuple[str, ...] = ()  # the candidate image's modules with the workflow definitions


@dataclass(frozen=True)
class AksClusterRef:
    """An AKS cluster by its Azure coordinates; activities fetch its kubeconfig where they run."""

    subscription_id: str
    resource_group: str
    cluster_name: str
    admin_credentials: bool = False
    endpoint: str = "https://management.azure.com"


@dataclass(frozen=True)
class ImagePullSecretRef:
    """A pull Secret the apply activity keeps filled from an ACR credential; only names, never the value."""

    name: str
    registry: AcrRegistryRef


@dataclass(frozen=True)
class ClusterRef:
    """How activities reach the cluster: a kubeconfig path and context on the worker's machine,
    or (target "aks") the AKS cluster whose credentials the activity asks Azure for."""

    kubeconfig: str = ""
    context: str = ""
    aks: AksClusterRef | None = None
    # What the cluster must hold before the app's pods can pull (target "aks" with [acr].image_pull_secret).
    image_pull_secret: ImagePullSecretRef | None = None


@dataclass(frozen=True)
class DeployRequest:
    """Input of DeploymentWorkflow."""

    app: AppSpec
    environment: str  # config.toml's `target`, "local" or "aks": the workflow id, the search attributes, the builder
    temporal: TemporalTarget
    cluster: ClusterRef
    image: str = ""  # an existing image reference to deploy without building
    tag: str = ""  # tag for the built image; "" = derived from the build context's content
    requested_by: str = ""
    # `pipeline rollback APP [--to IMAGE]` with no deployment running: restore this verified
    # revision from the app's history ("previous" = the one before the current), no build.
    restore: str = ""
    reason: str = ""  # why, for a restore
    skip_gates: tuple[SkippedGate, ...] = ()


@dataclass(frozen=True)
class BuildImageInput:
    app: str
    target: str
    build: BuildSpec
    tag: str = ""


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image of a multi-platform build: what the image index names."""

    platform: str  # "linux/arm64"
    digest: str  # the platform's image manifest, sha256:...
    tag: str = ""  # the per-platform tag it was pushed under ("<tag>-linux-arm64")


@dataclass(frozen=True)
class BuildPlatformInput:
    """One platform's build of a multi-platform build (target "aks": one ACR run each)."""

    build: BuildImageInput
    platform: str


@dataclass(frozen=True)
class PushIndexInput:
    """The OCI image index to push under `build.tag` (or the source's tag), naming every platform's image."""

    build: BuildImageInput
    images: tuple[PlatformImage, ...]


@dataclass(frozen=True)
class BuiltImage:
    repository: str
    tag: str
    digest: str  # sha256:...; of the OCI image index when more than one platform was built
    reused: bool = False  # True when the registry already had this exact build
    platforms: tuple[PlatformImage, ...] = ()  # each platform's image (multi-platform builds only)

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class RenderInput:
    app: AppSpec
    temporal: TemporalTarget
    image: str  # by digest: repo@sha256:...
    build_id: str


@dataclass(frozen=True)
class Manifests:
    """Rendered objects, as JSON-compatible dicts, in apply order."""

    objects: list[dict[str, Any]]


@dataclass(frozen=True)
class Revision:
    """A deployed version: what to restore when a later one fails."""

    image: str
    build_id: str
    manifests: Manifests
    deployed_at: str = ""  # RFC 3339
    workflow_id: str = ""
    platforms: tuple[PlatformImage, ...] = ()  # `image` is an index of these (multi-platform builds only)


@dataclass(frozen=True)
class ReadRevisionInput:
    app: str
    namespace: str
    cluster: ClusterRef


@dataclass(frozen=True)
class ReadRevisionResult:
    revision: Revision | None
    history: list[Revision] = field(default_factory=list)  # newest first; history[0] is `revision`


@dataclass(frozen=True)
class RecordRevisionInput:
    app: str
    namespace: str
    cluster: ClusterRef
    revision: Revision


@dataclass(frozen=True)
class ApplyInput:
    app: str
    cluster: ClusterRef
    manifests: Manifests
    dry_run: bool = False


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    namespace: str
    resource_version: str
    generation: int = 0


@dataclass(frozen=True)
class ApplyResult:
    objects: list[AppliedObject]

    @property
    def deployment_generation(self) -> int:
        return next((o.generation for o in self.objects if o.kind == "Deployment"), 0)


@dataclass(frozen=True)
class RolloutInput:
    app: str
    namespace: str
    cluster: ClusterRef
    generation: int
    timeout_seconds: int
    # > 0: fail once a new pod ran this long without becoming Ready (its probe, or a worker that never polls).
    unready_seconds: int = 0
    # Where to ask, for a pod that never polls, where else Temporal has seen its worker (None: not asked).
    temporal: TemporalTarget | None = None
    deployment: str = ""  # the Deployment's name when it is not the app's (a versioned app's `<app>-<short build>`)


@dataclass(frozen=True)
class RolloutResult:
    replica_set: str  # name of the ReplicaSet that now runs the app
    pod_template_hash: str
    pods: list[str]
    replicas: int
    ready_replicas: int
    available_replicas: int
    revision: str = ""  # deployment.kubernetes.io/revision


@dataclass(frozen=True)
class VerifyInput:
    app: str
    namespace: str
    cluster: ClusterRef
    temporal: TemporalTarget
    task_queue: str
    build_id: str
    pod_template_hash: str
    timeout_seconds: int
    queue_types: tuple[str, ...] = ("workflow", "activity")
    graceful_shutdown: bool = True  # False: an old pod serves until it is gone, whatever Temporal last saw of it
    # A versioned app: only this version's pods (render.VERSION_LABEL); other versions' pods keep running by design.
    version_label: str = ""


@dataclass(frozen=True)
class Poller:
    identity: str
    task_queue_type: str  # "workflow" or "activity"
    build_id: str
    last_access_time: str  # RFC 3339


@dataclass(frozen=True)
class VerifyResult:
    pods: list[str]
    pollers: list[Poller]
    verified_at: str


@dataclass(frozen=True)
class DeploymentStatus:
    """What the `status` query answers: where the deployment is now."""

    app: str
    step: str
    detail: str = ""
    image: str = ""
    previous_image: str = ""
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    pollers: list[str] = field(default_factory=list)
    rollback_requested: bool = False
    rollback_reason: str = ""
    steps: list[str] = field(default_factory=list)  # every step started so far, in order
    restored_image: str = ""  # once rolled back (or canceled): what runs again
    # strategy "versioned": the Worker Deployment's routing as last set, and whether the ramp is paused
    ramp_percentage: float = 0.0
    paused: bool = False
    current_build: str = ""
    platforms: list[PlatformImage] = field(default_factory=list)  # `image` is an index of these (multi-platform)


@dataclass(frozen=True)
class DeploymentResult:
    """The final state: what happened and why."""

    app: str
    # "succeeded", "rolled_back", "failed"; the client adds "canceled" and "terminated" (the
    # workflow returns no result then; pipeline/deployments.py builds one from its memo).
    outcome: str
    image: str
    reason: str = ""
    previous_image: str = ""
    restored_image: str = ""
    pollers: list[Poller] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    platforms: list[PlatformImage] = field(default_factory=list)  # `image` is an index of these (multi-platform)


# ----- versioned rollouts (strategy "versioned": pipeline/versioning.py, pipeline/version_activities.py) -----


@dataclass(frozen=True)
class RoutingView:
    """A Worker Deployment's routing as the workflow records it: current build ("" = unversioned workers),
    ramping build and its percentage."""

    current: str = ""
    ramping: str = ""
    percentage: float = 0.0


@dataclass(frozen=True)
class VersionCheckInput:
    """Wait until the version is registered on every queue type of the app's task queue."""

    temporal: TemporalTarget
    deployment_name: str  # the Worker Deployment, `<k8s namespace>/<app>`
    build_id: str
    task_queue: str
    queue_types: tuple[str, ...]
    timeout_seconds: int


@dataclass(frozen=True)
class RoutingInput:
    """Make `build_id` ramping at `percentage`, or current (`percentage` None); "" with 0 = stop ramping."""

    temporal: TemporalTarget
    deployment_name: str
    build_id: str
    percentage: float | None
    expected: RoutingView | None  # what the pipeline last saw or set; None = read it now (first change)
    timeout_seconds: int = 60


@dataclass(frozen=True)
class RoutingResult:
    routing: RoutingView
    propagation_seconds: float  # from the request until routing_config_update_state COMPLETED
    manager: str = ""
    before: RoutingView | None = None  # the live routing the change was made over


@dataclass(frozen=True)
class VersionsInput:
    app: AppSpec
    environment: str
    temporal: TemporalTarget
    cluster: ClusterRef


@dataclass(frozen=True)
class VersionRow:
    """One version of a versioned app, from Temporal (status, routing, pinned workflows) and Kubernetes (pods)."""

    build_id: str
    deployment: str = ""  # its Kubernetes Deployment ("" = gone)
    image: str = ""
    status: str = ""  # current | ramping | draining | drained | inactive | "" (not known to Temporal)
    ramp_percentage: float = 0.0
    drainage_since: float = 0.0  # Unix seconds it became draining/drained (0 = never)
    created_at: float = 0.0
    open_pinned: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    deploying: bool = False  # the app's running deployment is rolling this build out


@dataclass(frozen=True)
class VersionsReport:
    deployment_name: str
    routing: RoutingView
    manager: str
    versions: list[VersionRow]
    surveyed_at: float  # Unix seconds
    routing_completed: bool = True


@dataclass(frozen=True)
class RetireAction:
    """One step of a version's sunset: "scale" to `replicas`, or "delete" its Deployment, ConfigMap and Version."""

    action: str
    build_id: str
    deployment: str
    replicas: int = 0
    reason: str = ""


@dataclass(frozen=True)
class RetireInput:
    app: AppSpec
    temporal: TemporalTarget
    cluster: ClusterRef
    action: RetireAction


@dataclass(frozen=True)
class KeeperInput:
    """The per-app workflow that owns the sunset of a versioned app's older versions (pipeline/keeper.py)."""

    app: AppSpec
    environment: str
    temporal: TemporalTarget
    cluster: ClusterRef
    rounds: int = 0  # carried across continue-as-new


@dataclass(frozen=True)
class VersionReadyInput:
    """Is this retained version serving as it is (pods ready, registered on every queue type)?"""

    app: AppSpec
    temporal: TemporalTarget
    cluster: ClusterRef
    build_id: str
    image: str


@dataclass(frozen=True)
class VersionReady:
    ready: bool
    detail: str
    ready_replicas: int = 0


# ----- gates (pipeline/gates.py) -----


@dataclass(frozen=True)
class ReplayTarget:
    workflow_id: str
    run_id: str
    workflow_type: str = ""


@dataclass(frozen=True)
class ReplayTargetsInput:
    temporal: TemporalTarget
    task_queue: str
    closed_histories: int
    exclude_pinned: bool  # a versioned app: PINNED workflows stay on their version and are not replayed
    limit: int = 1000


@dataclass(frozen=True)
class ReplayJobInput:
    """Replay `targets` against the candidate image: a one-off Job running the delivered replay runner."""

    app: AppSpec
    temporal: TemporalTarget
    cluster: ClusterRef
    image: str
    build_id: str
    gate: GateSpec
    targets: tuple[ReplayTarget, ...]


@dataclass(frozen=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    workflow_type: str
    verdict: str  # ok | nondeterministic | failed | unknown_type | skipped
    message: str = ""


@dataclass(frozen=True)
class GateResult:
    """What a gate found: `ok`, a one-line summary, and per-workflow results for a replay gate."""

    gate: str
    kind: str
    ok: bool
    summary: str
    results: tuple[ReplayResult, ...] = ()


@dataclass(frozen=True)
class GateWorkflowInput:
    temporal: TemporalTarget
    app: str
    task_queue: str
    gate: GateSpec
    workflow_id: str
    pinned_deployment: str = ""  # a versioned app: pin the gate workflow to this version
    pinned_build: str = ""
    ramp_percent: float = -1.0  # at a ramp step: its percentage, in the gate workflow's memo ("ramp_percent")


@dataclass(frozen=True)
class AnalysisInput:
    """Compare the new version's closed workflows with the baseline's over a window (visibility counts)."""

    temporal: TemporalTarget
    task_queue: str
    gate: GateSpec
    window_start: str  # RFC 3339: count workflows closed since then
    soak_seconds: int = 0  # wait this long first (rolling: the soak window after every pod is new)
    deployment_name: str = ""  # versioned: the Worker Deployment, and the two builds compared
    new_build: str = ""
    baseline_build: str = ""  # "" = unversioned workers
    baseline_start: str = ""  # rolling: the baseline window is [baseline_start, window_start) ... before the deployment
    baseline_end: str = ""
