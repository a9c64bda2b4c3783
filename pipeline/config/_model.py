"""The loaded configuration: frozen, typed objects that later layers read.

Nothing here validates; `_schema` only builds these once every value passed,
so a `PipelineConfig` in hand is always complete and consistent. Secrets are
never stored: `TemporalConfig.api_key_env` only names where the key lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.config._quantity import cpu_millicores, memory_bytes
from pipeline.errors import ConfigError

Target = Literal["local", "aks"]
TARGETS: tuple[Target, ...] = ("local", "aks")


@dataclass(frozen=True, slots=True)
class TemporalConfig:
    """Where the Temporal service is and how to authenticate to it."""

    address: str
    namespace: str
    tls: bool
    api_key_env: str
    ui_url: str
    # "secret-name/key": where deployed pods get the API key (a secretKeyRef); "" = none.
    api_key_secret: str = ""
    # How many partitions the server splits a task queue into (the verifier asks each about pollers).
    task_queue_partitions: int = 4
    # temporalio.envconfig: the profile (and its TOML file) whose values override this table
    # (env TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE); "" = none (see pipeline/config/_profile.py).
    profile: str = ""
    config_file: str = ""
    # TLS files of the processes that connect here (the CLI, the pipeline worker): paths, never contents.
    tls_client_cert_path: str = ""  # mTLS client certificate (PEM), with tls_client_key_path
    tls_client_key_path: str = ""
    tls_server_ca_cert_path: str = ""  # CA to trust for the server; "" = the system's CAs
    tls_server_name: str = ""  # name to verify the server's certificate against (SNI); "" = the address's host
    # Kubernetes Secret (type kubernetes.io/tls: tls.crt, tls.key, optional ca.crt) mounted into deployed pods.
    tls_secret: str = ""


@dataclass(frozen=True, slots=True)
class PipelineSection:
    """The pipeline worker's own settings ([pipeline])."""

    task_queue: str
    default_app: str
    # The largest packed build context (tar.gz) the CLI uploads, in MB; a bigger one is refused in one line.
    max_source_mb: int = 500


@dataclass(frozen=True, slots=True)
class AzureConfig:
    """The Azure subscription and ARM endpoint used when target = "aks"."""

    subscription_id: str
    resource_group: str
    location: str
    endpoint: str
    identity: str = "temporal-pipeline"  # the user-assigned managed identity the pipeline worker's pods run as
    authority_host: str = ""  # Entra ID's host for the pods ("" = Microsoft's public cloud)
    ca_bundle: Path | None = None  # PEM CA bundle the pods trust for Azure endpoints (None = the image's system CAs)


@dataclass(frozen=True, slots=True)
class AcrConfig:
    """The Azure Container Registry; `name` and `login_server` are already defaulted (the name derived from the
    subscription and resource group: registry names are global in Azure)."""

    name: str
    login_server: str
    # Name of a Kubernetes Secret of type dockerconfigjson filled from the registry's credential; "" = the
    # AKS kubelet identity pulls (it needs AcrPull on the registry).
    image_pull_secret: str = ""
    # A new registry's roleAssignmentMode: "LegacyRegistryPermissions" (AcrPull/AcrPush) or
    # "AbacRepositoryPermissions" (Container Registry Repository roles); an existing registry's is read from Azure.
    role_assignment_mode: str = "LegacyRegistryPermissions"


@dataclass(frozen=True, slots=True)
class AksConfig:
    """The AKS cluster deployed to when target = "aks"."""

    cluster_name: str
    admin_credentials: bool


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """Cluster access; `kubeconfig` "" means the target's usual kubeconfig."""

    namespace: str
    kubeconfig: str
    context: str


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """The local image registry used when target = "local"."""

    address: str


@dataclass(frozen=True, slots=True)
class Resources:
    """Container requests and limits as written, with the numbers Kubernetes sees."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    @property
    def cpu_request_millicores(self) -> int:
        return cpu_millicores(self.cpu_request)

    @property
    def cpu_limit_millicores(self) -> int:
        return cpu_millicores(self.cpu_limit)

    @property
    def memory_request_bytes(self) -> int:
        return memory_bytes(self.memory_request)

    @property
    def memory_limit_bytes(self) -> int:
        return memory_bytes(self.memory_limit)


@dataclass(frozen=True, slots=True)
class Rollout:
    """How a Deployment rolls out and how the pipeline judges it."""

    progress_deadline_seconds: int
    max_surge: int | str
    max_unavailable: int | str
    verification_timeout_seconds: int
    auto_rollback: bool
    # "rolling": one Deployment replaced in place (unversioned workers). "versioned": one Deployment per
    # build, traffic moved by Temporal's Worker Deployment routing (pipeline/versioning.py).
    strategy: str = "rolling"
    steps: tuple[int, ...] = ()  # ramp percentages before 100, increasing; () = current at once
    step_pause_seconds: int = 30
    scaledown_delay_seconds: int = 3600
    delete_delay_seconds: int = 86400
    drained_replicas: int = 0
    retained_versions: int = 5  # versions kept (current included) below the server's per-deployment limit


@dataclass(frozen=True, slots=True)
class Gate:
    """One `[[apps.X.gates]]` entry: a check a deployment must pass (pipeline/gates.py)."""

    name: str
    kind: str  # "replay" | "workflow" | "analysis"
    timeout_seconds: int = 120
    # replay: the last N closed workflows replayed too, besides every open one
    closed_histories: int = 0
    # workflow: the gate workflow to run on the new version (its input as JSON text), at each ramp step
    workflow_type: str = ""
    input: str = ""
    each_step: bool = False
    # analysis: the soak window (rolling; versioned apps use each step's pause) and the thresholds
    soak_seconds: int = 30
    max_failed: int = 0
    max_failure_rate_delta: float = 0.1
    min_samples: int = 10


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One deployable worker with its *effective* resources and rollout."""

    name: str
    task_queue: str
    replicas: int
    build_context: Path
    dockerfile: Path
    build_target: str
    command: tuple[str, ...]
    health_port: int
    termination_grace_period_seconds: int
    resources: Resources
    rollout: Rollout
    build_args: Mapping[str, str] = field(default_factory=dict)
    # "app" (a worker the pipeline deploys) or "pipeline" (the pipeline's own worker: it polls
    # [pipeline].task_queue and gets a ServiceAccount token, a least-privilege Role, and on target
    # local the Docker socket and build context; see pipeline/render.py). At most one app has it.
    role: str = "app"
    # The worker's own HTTP health endpoint, if it serves one: probes are rendered only then
    # (health_port 0 = none). A path "" = no such probe.
    readiness_path: str = "/readyz"
    liveness_path: str = "/healthz"
    # The queue types the worker polls: the readiness gate and the verifier wait for each.
    queue_types: tuple[str, ...] = ("workflow", "activity")
    # The worker stops polling on SIGTERM and only finishes what it runs: an old pod in graceful
    # termination is then draining, not serving. False (a worker that ignores SIGTERM, as PID 1 does
    # without a handler): old pods count as serving until they are gone.
    graceful_shutdown: bool = False
    # The platforms each build produces ("os/arch[/variant]"); more than one: one image per platform
    # under an OCI image index, deployed by the index's digest.
    platforms: tuple[str, ...] = ("linux/amd64",)
    # "" = pods run on any node; else one architecture of `platforms`: a nodeSelector kubernetes.io/arch.
    architecture: str = ""
    # The checks a deployment must pass (`[[apps.X.gates]]`), and for the replay gate the modules
    # that hold the app's workflow definitions (imported inside the candidate image).
    gates: tuple[Gate, ...] = ()
    replay_modules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The whole validated configuration (file, then environment overrides).

    `source` is the file name as errors print it; `env_overrides` maps each
    overridden key ("temporal.address") to the env var that set it (or, for a
    value from a temporalio.envconfig profile, to 'profile "p" of <file>'), so
    `pipeline config` can show what the environment changed.
    """

    source: str
    path: Path
    target: Target
    temporal: TemporalConfig
    pipeline: PipelineSection
    azure: AzureConfig
    acr: AcrConfig
    aks: AksConfig
    kubernetes: KubernetesConfig
    registry: RegistryConfig
    resources: Resources
    rollout: Rollout
    apps: Mapping[str, AppConfig]
    env_overrides: Mapping[str, str] = field(default_factory=dict)

    def app(self, name: str | None = None) -> AppConfig:
        """The named app, or [pipeline].default_app when `name` is None."""
        wanted = self.pipeline.default_app if name is None else name
        found = self.apps.get(wanted)
        if found is None:
            known = ", ".join(f'"{known}"' for known in self.apps) or "none"
            raise ConfigError([f'{self.source}: no app named "{wanted}"; known apps: {known}'])
        return found
