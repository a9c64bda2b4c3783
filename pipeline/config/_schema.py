"""The config.toml schema: every section read, checked and turned into frozen objects.

One function per section keeps each rule next to its key. Cross-field checks
(limits >= requests, surge vs unavailable, target-dependent keys, app
references, build files, task queue clashes) run after the keys they read,
and only when those keys were valid themselves, so each mistake is reported
once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from pipeline.config import _rules as rules
from pipeline.config._model import (
    TARGETS,
    AcrConfig,
    AksConfig,
    AppConfig,
    AzureConfig,
    Gate,
    KubernetesConfig,
    PipelineConfig,
    PipelineSection,
    RegistryConfig,
    Resources,
    Rollout,
    Target,
    TemporalConfig,
)
from pipeline.config._quantity import CPU_RULE, MEMORY_RULE, parse_cpu, parse_memory
from pipeline.config._reader import Problems, Rule, Table, show

BUILTIN_RESOURCES = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi")
ROLLOUT_STRATEGIES = ("rolling", "versioned")
BUILTIN_ROLLOUT = Rollout(
    progress_deadline_seconds=120,
    max_surge=1,
    max_unavailable=0,
    verification_timeout_seconds=60,
    auto_rollback=True,
)


def _parses(parse: Callable[[str], Decimal]) -> Callable[[str], bool]:
    def test(text: str) -> bool:
        try:
            parse(text)
        except ValueError:
            return False
        return True

    return test


CPU = Rule(CPU_RULE, _parses(parse_cpu))
MEMORY = Rule(MEMORY_RULE, _parses(parse_memory))


def build(data: Mapping[str, object], problems: Problems, *, path: Path, require_apps: bool = True) -> PipelineConfig:
    """Read every section of `data`; the result is meaningful only if no problems were added.

    `require_apps=False` (the pipeline worker's view) skips the check that [pipeline].default_app names an app.
    """
    root = Table(problems, (), data)
    target: Target = "aks" if root.choice("target", "local", TARGETS) == "aks" else "local"
    temporal = _temporal(root.table("temporal"), path.parent)
    pipeline = _pipeline(root.table("pipeline"))
    azure = _azure(root.table("azure"), target, path.parent)
    acr = _acr(root.table("acr"), azure)
    aks = _aks(root.table("aks"))
    kubernetes = _kubernetes(root.table("kubernetes"), path.parent)
    registry = _registry(root.table("registry"))
    resources = _resources(root.table("resources"), BUILTIN_RESOURCES, always=True)
    rollout = _rollout(root.table("rollout"), BUILTIN_ROLLOUT, always=True)
    apps = _apps(root.table("apps"), path.parent, resources, rollout)
    root.finish()
    if require_apps:
        _check_default_app(problems, pipeline, apps)
    apps = _check_pipeline_role(problems, pipeline, apps)
    _check_task_queues(problems, pipeline, apps)
    # An env var's name, or for a value from an envconfig profile 'profile "p" of <file>' (pipeline/config/_profile.py).
    overrides = {
        ".".join(key): origin.env_name or origin.label
        for key, origin in problems.origins.items()
        if origin.env_name is not None or origin.label.startswith("profile ")
    }
    return PipelineConfig(
        source=problems.file.label,
        path=path,
        target=target,
        temporal=temporal,
        pipeline=pipeline,
        azure=azure,
        acr=acr,
        aks=aks,
        kubernetes=kubernetes,
        registry=registry,
        resources=resources,
        rollout=rollout,
        apps=apps,
        env_overrides=overrides,
    )


def _temporal(t: Table, base_dir: Path) -> TemporalConfig:
    config = TemporalConfig(
        address=t.string("address", "127.0.0.1:7233", rules.HOST_PORT),
        namespace=t.string("namespace", "default", rules.NAMESPACE),
        tls=t.boolean("tls", False),
        api_key_env=t.string("api_key_env", "", rules.API_KEY_ENV),
        api_key_secret=t.string("api_key_secret", "", rules.SECRET_KEY_REF),
        ui_url=t.string("ui_url", "http://127.0.0.1:8233", rules.HTTP_URL),
        task_queue_partitions=t.integer("task_queue_partitions", 4, 1, 64),
        profile=t.string("profile", ""),
        config_file=_tls_path(t, "config_file", base_dir),
        tls_client_cert_path=_tls_path(t, "tls_client_cert_path", base_dir),
        tls_client_key_path=_tls_path(t, "tls_client_key_path", base_dir),
        tls_server_ca_cert_path=_tls_path(t, "tls_server_ca_cert_path", base_dir),
        tls_server_name=t.string("tls_server_name", ""),
        tls_secret=t.string("tls_secret", "", rules.OPTIONAL_SECRET_NAME),
    )
    pair = (t.path + ("tls_client_cert_path",), t.path + ("tls_client_key_path",))
    if bool(config.tls_client_cert_path) != bool(config.tls_client_key_path) and not t.problems.failed_under(*pair):
        given, missing = (
            ("tls_client_cert_path", "tls_client_key_path")
            if config.tls_client_cert_path
            else ("tls_client_key_path", "tls_client_cert_path")
        )
        t.problems.add(
            t.path + (missing,), f"missing: {given} is set, and a client certificate needs its key (and the key its certificate)"
        )
    t.finish()
    return config


def _tls_path(t: Table, key: str, base_dir: Path) -> str:
    """A file path of [temporal] made absolute: against the config file's directory when the file set it,
    else (env, profile) against the working directory. It need not exist: it is read when connecting."""
    text = t.string(key, "")
    if not text:
        return ""
    origin = t.problems.origin(t.path + (key,))
    base = base_dir if origin is t.problems.file else Path.cwd()
    try:
        return str(base / Path(text).expanduser())
    except RuntimeError:  # "~user" with no such user
        t.problems.add(t.path + (key,), f"no home directory for {text.split('/', 1)[0]!r}")
        return ""


def _pipeline(t: Table) -> PipelineSection:
    config = PipelineSection(
        task_queue=t.string("task_queue", "deployments", rules.TASK_QUEUE),
        default_app=t.string("default_app", "sample-worker"),
        max_source_mb=t.integer("max_source_mb", 500, 1, 100_000),
    )
    t.finish()
    return config


def _azure(t: Table, target: Target, base_dir: Path) -> AzureConfig:
    subscription_id = t.string("subscription_id", "", rules.OPTIONAL_UUID)
    resource_group = t.string("resource_group", "temporal-workers", rules.RESOURCE_GROUP)
    location = t.string("location", "eastus", rules.LOCATION)
    endpoint = t.string("endpoint", "https://management.azure.com", rules.HTTPS_URL)
    identity = t.string("identity", "temporal-pipeline", rules.MANAGED_IDENTITY_NAME)
    authority_host = t.string("authority_host", "", rules.OPTIONAL_HTTPS_URL)
    ca_text = t.string("ca_bundle", "")
    t.finish()
    ca_bundle: Path | None = None
    if ca_text:
        ca_bundle, mode = _usable_path(t, "ca_bundle", ca_text, base_dir)
        if mode is None and not t.problems.failed_under(t.path + ("ca_bundle",)):
            t.problems.add(t.path + ("ca_bundle",), f"no such file: {ca_bundle}")
    config = AzureConfig(
        subscription_id=subscription_id,
        resource_group=resource_group,
        location=location,
        endpoint=endpoint,
        identity=identity,
        authority_host=authority_host,
        ca_bundle=ca_bundle,
    )
    key = t.path + ("subscription_id",)
    if target == "aks" and not config.subscription_id and not t.problems.failed_under(key):
        reason = 'required when target = "aks"; set the subscription UUID here'
        t.problems.add(key, f"{reason} or in AZURE_SUBSCRIPTION_ID")
    return config


ACR_ROLE_ASSIGNMENT_MODES = ("LegacyRegistryPermissions", "AbacRepositoryPermissions")


def derived_registry_name(subscription_id: str, resource_group: str, prefix: str = "temporal") -> str:
    """The default [acr].name: stable for a subscription and resource group and almost surely free in Azure, where
    `<name>.azurecr.io` is global: prefix + 10 hex digits of sha256("<subscription>/<group>")."""
    digest = hashlib.sha256(f"{subscription_id.lower()}/{resource_group.lower()}".encode()).hexdigest()
    return f"{prefix}{digest[:10]}"


def _acr(t: Table, azure: AzureConfig) -> AcrConfig:
    name = t.string("name", "", rules.OPTIONAL_ACR_NAME) or derived_registry_name(azure.subscription_id, azure.resource_group)
    login_server = t.string("login_server", "", rules.LOGIN_SERVER)
    image_pull_secret = t.string("image_pull_secret", "", rules.OPTIONAL_SECRET_NAME)
    mode = t.choice("role_assignment_mode", ACR_ROLE_ASSIGNMENT_MODES[0], ACR_ROLE_ASSIGNMENT_MODES)
    t.finish()
    return AcrConfig(
        name=name,
        login_server=login_server or f"{name.lower()}.azurecr.io",
        image_pull_secret=image_pull_secret,
        role_assignment_mode=mode,
    )


def _aks(t: Table) -> AksConfig:
    config = AksConfig(
        cluster_name=t.string("cluster_name", "temporal-aks", rules.AKS_NAME),
        admin_credentials=t.boolean("admin_credentials", False),
    )
    t.finish()
    return config


def _kubernetes(t: Table, base_dir: Path) -> KubernetesConfig:
    namespace = t.string("namespace", "temporal-workers", rules.DNS_LABEL)
    kubeconfig = t.string("kubeconfig", "")
    context = t.string("context", "")
    t.finish()
    from_env = t.problems.origin(t.path + ("kubeconfig",)).env_name is not None
    base = Path.cwd() if from_env else base_dir
    # Each entry of a KUBECONFIG-style list made absolute, so a later chdir cannot break it; it need not exist yet.
    entries = [_usable_path(t, "kubeconfig", entry, base, resolve=False)[0] for entry in kubeconfig.split(os.pathsep) if entry]
    return KubernetesConfig(namespace=namespace, kubeconfig=os.pathsep.join(map(str, entries)), context=context)


def _usable_path(t: Table, key: str, text: str, base: Path, *, resolve: bool = True) -> tuple[Path, int | None]:
    """`text` made absolute against `base` (symlinks resolved if `resolve`), and the mode of what is there.

    The mode is None when nothing is there. A name the OS refuses (too long, a NUL, a symlink loop,
    an unknown "~user") is reported once under `key`, as one config line rather than a traceback at
    first use, and gives (`base`, None).
    """
    try:
        path = base / Path(text).expanduser()
        return Path(os.path.realpath(path)) if resolve else path, _mode(path)
    except OSError as error:
        reason = error.strerror or str(error)
    except ValueError:
        reason = "it contains a NUL character"
    except RuntimeError:  # Path.expanduser: no home directory for "~" or "~user"
        reason = f'no home directory for "{text.partition("/")[0]}"'
    if not t.problems.failed_under(t.path + (key,)):
        t.problems.add(t.path + (key,), f"not a usable path ({reason}), got {show(text)}")
    return base, None


def _mode(path: Path) -> int | None:
    """The st_mode of what `path` names, None when nothing is there (nor, for a file as parent, can be)."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _registry(t: Table) -> RegistryConfig:
    config = RegistryConfig(address=t.string("address", "127.0.0.1:5000", rules.HOST_PORT))
    t.finish()
    return config


def _resources(t: Table, base: Resources, *, always: bool) -> Resources:
    """Requests and limits over `base`.

    A limit below its request is reported in every table that sets either of
    the two (`always` for the defaults), so an app is blamed for its own override.
    """
    config = Resources(
        cpu_request=t.string("cpu_request", base.cpu_request, CPU),
        cpu_limit=t.string("cpu_limit", base.cpu_limit, CPU),
        memory_request=t.string("memory_request", base.memory_request, MEMORY),
        memory_limit=t.string("memory_limit", base.memory_limit, MEMORY),
    )
    t.finish()
    if t.problems.failed_under(t.path, ("resources",)):
        return config
    pairs = [
        ("cpu", parse_cpu, config.cpu_request, config.cpu_limit),
        ("memory", parse_memory, config.memory_request, config.memory_limit),
    ]
    for kind, parse, request, limit in pairs:
        touched = always or t.has(f"{kind}_request") or t.has(f"{kind}_limit")
        if touched and parse(limit) < parse(request):
            reason = f'must be at least {kind}_request ("{request}"), got "{limit}"'
            t.problems.add(t.path + (f"{kind}_limit",), reason)
    return config


def _rollout(t: Table, base: Rollout, *, always: bool) -> Rollout:
    """Rollout settings over `base`; surge and unavailable may not both be zero."""
    config = Rollout(
        progress_deadline_seconds=t.integer("progress_deadline_seconds", base.progress_deadline_seconds, 1),
        max_surge=t.count_or_percent("max_surge", base.max_surge),
        max_unavailable=t.count_or_percent("max_unavailable", base.max_unavailable),
        verification_timeout_seconds=t.integer("verification_timeout_seconds", base.verification_timeout_seconds, 1),
        auto_rollback=t.boolean("auto_rollback", base.auto_rollback),
        strategy=t.choice("strategy", base.strategy, ROLLOUT_STRATEGIES),
        steps=t.integer_list("steps", base.steps, 1, 99),
        step_pause_seconds=t.integer("step_pause_seconds", base.step_pause_seconds, 0, 86400),
        scaledown_delay_seconds=t.integer("scaledown_delay_seconds", base.scaledown_delay_seconds, 0),
        delete_delay_seconds=t.integer("delete_delay_seconds", base.delete_delay_seconds, 0),
        drained_replicas=t.integer("drained_replicas", base.drained_replicas, 0, 100),
        retained_versions=t.integer("retained_versions", base.retained_versions, 2, 50),
    )
    t.finish()
    touched = always or t.has("max_surge") or t.has("max_unavailable")
    stuck = rules.is_zero(config.max_surge) and rules.is_zero(config.max_unavailable)
    if touched and stuck and not t.problems.failed_under(t.path, ("rollout",)):
        reason = "cannot be 0 when max_surge is 0 too (no pod could ever be replaced)"
        t.problems.add(t.path + ("max_unavailable",), reason)
    return config


def _apps(apps: Table, base_dir: Path, resources: Resources, rollout: Rollout) -> dict[str, AppConfig]:
    """Every [apps.<name>] table; the name becomes the Deployment name, so it is a DNS label."""
    result: dict[str, AppConfig] = {}
    for name in apps.names():
        if not rules.is_dns_label(name):
            reason = f"app name must be {rules.DNS_LABEL.describe}"
            apps.problems.add(apps.path + (name,), reason, table=True)
        result[name] = _app(name, apps.table(name), base_dir, resources, rollout)
    return result


APP_ROLES = ("app", "pipeline")


def _app(name: str, t: Table, base_dir: Path, resources: Resources, rollout: Rollout) -> AppConfig:
    role = t.choice("role", "app", APP_ROLES)
    # The pipeline's own worker polls [pipeline].task_queue: its task_queue may be left out (see _check_task_queues).
    task_queue = t.string("task_queue", "" if role == "pipeline" else None, rules.TASK_QUEUE)
    replicas = t.integer("replicas", 1, 1, 100)
    context_text = t.string("build_context", ".", rules.NON_EMPTY_PATH)
    dockerfile_text = t.string("dockerfile", "Dockerfile", rules.NON_EMPTY_PATH)
    build_target = t.string("build_target", "", rules.BUILD_TARGET)
    command = t.string_list("command", ())
    build_args = t.string_table("build_args")
    health_port = t.integer("health_port", 0, 0, 65535)
    readiness_path = t.string("readiness_path", "/readyz", HTTP_PATH)
    liveness_path = t.string("liveness_path", "/healthz", HTTP_PATH)
    queue_types = _queue_types(t)
    graceful_shutdown = t.boolean("graceful_shutdown", False)
    platforms = _platforms(t)
    architecture = _architecture(t, platforms)
    grace = t.integer("termination_grace_period_seconds", 30, 0, 3600)
    app_resources = _resources(t.table("resources"), resources, always=False)
    app_rollout = _rollout(t.table("rollout"), rollout, always=False)
    replay_modules = t.string_list("replay_modules", ())
    gates = _gates(t, replay_modules)
    t.finish()
    build_context, dockerfile = _build_files(t, base_dir, context_text, dockerfile_text, build_target)
    return AppConfig(
        name=name,
        task_queue=task_queue,
        replicas=replicas,
        build_context=build_context,
        dockerfile=dockerfile,
        build_target=build_target,
        command=command,
        build_args=build_args,
        health_port=health_port,
        termination_grace_period_seconds=grace,
        resources=app_resources,
        rollout=app_rollout,
        role=role,
        readiness_path=readiness_path,
        liveness_path=liveness_path,
        queue_types=queue_types,
        graceful_shutdown=graceful_shutdown,
        platforms=platforms,
        architecture=architecture,
        gates=gates,
        replay_modules=replay_modules,
    )


GATE_KINDS = ("replay", "workflow", "analysis")
WORKFLOW_TYPE = Rule("a workflow type name", lambda t: bool(t.strip()) and len(t) <= 1000)
MODULE = Rule('a Python module name like "app.workflows"', lambda t: all(p.isidentifier() for p in t.split(".")))


def _gates(t: Table, replay_modules: tuple[str, ...]) -> tuple[Gate, ...]:
    """`[[apps.X.gates]]`: each named once, with the keys of its kind only."""
    for index, module in enumerate(replay_modules):
        if not MODULE.test(module):
            t.problems.add(t.path + ("replay_modules", str(index)), f"must be {MODULE.describe}, got {show(module)}")
    gates: list[Gate] = []
    for g in t.tables("gates"):
        name = g.string("name", None, rules.DNS_LABEL)
        kind = g.string("kind", None, Rule("one of " + ", ".join(f'"{k}"' for k in GATE_KINDS), lambda k: k in GATE_KINDS))
        timeout = g.integer("timeout_seconds", 120, 1, 3600)
        gate = Gate(name=name, kind=kind, timeout_seconds=timeout)
        if kind == "replay":
            gate = replace(gate, closed_histories=g.integer("closed_histories", 0, 0, 1000))
            if not replay_modules:
                g.problems.add(
                    t.path + ("replay_modules",),
                    "is required by a replay gate: the modules of the candidate image that define the app's workflows",
                )
        elif kind == "workflow":
            gate = replace(
                gate,
                workflow_type=g.string("workflow_type", None, WORKFLOW_TYPE),
                input=g.string("input", "", JSON_TEXT),
                each_step=g.boolean("each_step", False),
            )
        elif kind == "analysis":
            gate = replace(
                gate,
                soak_seconds=g.integer("soak_seconds", 30, 0, 3600),
                max_failed=g.integer("max_failed", 0, 0),
                max_failure_rate_delta=g.number("max_failure_rate_delta", 0.1, 0.0, 1.0),
                min_samples=g.integer("min_samples", 10, 1),
            )
        g.finish()
        if name and any(other.name == name for other in gates):
            g.problems.add(g.path + ("name",), f'must be unique among the app\'s gates, "{name}" is used twice')
        gates.append(gate)
    return tuple(gates)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


JSON_TEXT = Rule('JSON text (the gate workflow\'s input), or "" for none', lambda t: t == "" or _is_json(t))


HTTP_PATH = Rule(
    'an HTTP path starting with "/" (or "" for no such probe)', lambda t: t == "" or (t.startswith("/") and " " not in t)
)
QUEUE_TYPES = ("workflow", "activity")


def _queue_types(t: Table) -> tuple[str, ...]:
    """The queue types the worker polls: a non-empty list of "workflow" and "activity", each once."""
    types = t.string_list("queue_types", QUEUE_TYPES)
    if not types or len(set(types)) != len(types) or any(q not in QUEUE_TYPES for q in types):
        t.problems.add(
            t.path + ("queue_types",),
            f'must list "workflow" and/or "activity", each once, got {show(list(types))}',
        )
        return QUEUE_TYPES
    return types


DEFAULT_PLATFORMS = ("linux/amd64",)
ARCHITECTURES = ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")
# The variants each architecture may name (OCI image index `platform.variant`): none elsewhere.
VARIANTS = {"arm": ("v5", "v6", "v7"), "arm64": ("v8",), "amd64": ("v2", "v3", "v4")}


def platform_problem(platform: str) -> str:
    """Why `platform` is not "linux/<arch>[/<variant>]" ("" when it is)."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or parts[0] != "linux":
        return f'"{platform}" is not "linux/<arch>[/<variant>]"'
    if parts[1] not in ARCHITECTURES:
        return f'"{platform}" names an unknown architecture (one of {", ".join(ARCHITECTURES)})'
    if len(parts) == 3 and parts[2] not in VARIANTS.get(parts[1], ()):
        allowed = ", ".join(VARIANTS.get(parts[1], ())) or "none"
        return f'"{platform}" names a variant {parts[1]} does not have (variants: {allowed})'
    return ""


def _platforms(t: Table) -> tuple[str, ...]:
    """The platforms to build: a non-empty list of "linux/<arch>[/<variant>]", each once."""
    platforms = t.string_list("platforms", DEFAULT_PLATFORMS)
    problems = [p for p in (platform_problem(each) for each in platforms) if p]
    if not platforms:
        problems = ["must list at least one platform"]
    elif len(set(platforms)) != len(platforms):
        twice = sorted({p for p in platforms if platforms.count(p) > 1})
        problems.append(f"must name each platform once, got {', '.join(show(p) for p in twice)} more than once")
    if problems:
        t.problems.add(t.path + ("platforms",), "; ".join(problems))
        return DEFAULT_PLATFORMS
    return platforms


def _architecture(t: Table, platforms: tuple[str, ...]) -> str:
    """ "" or one architecture of the platforms: the pods' nodeSelector kubernetes.io/arch."""
    architecture = t.string("architecture", "", None)
    built = sorted({p.split("/")[1] for p in platforms})
    if architecture and architecture not in built:
        reason = f'must be "" or an architecture of platforms ({", ".join(built)}), got "{architecture}"'
        t.problems.add(t.path + ("architecture",), reason)
        return ""
    return architecture


_STAGE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*\S+\s+AS\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def _build_files(t: Table, base_dir: Path, context_text: str, dockerfile_text: str, build_target: str) -> tuple[Path, Path]:
    """The build context and its Dockerfile, absolute; they and the named stage must exist before any build."""
    context_key, dockerfile_key = t.path + ("build_context",), t.path + ("dockerfile",)
    context = dockerfile = base_dir
    if t.problems.failed_under(context_key, dockerfile_key):
        return context, dockerfile
    context, mode = _usable_path(t, "build_context", context_text, base_dir)
    if mode is None or not stat.S_ISDIR(mode):
        if not t.problems.failed_under(context_key):  # else _usable_path said why
            t.problems.add(context_key, f"must be an existing directory, got {context}")
        return context, dockerfile
    dockerfile, mode = _usable_path(t, "dockerfile", dockerfile_text, context)
    if mode is None or not stat.S_ISREG(mode):
        if not t.problems.failed_under(dockerfile_key):  # else _usable_path said why
            t.problems.add(dockerfile_key, f"must be an existing file, got {dockerfile}")
        return context, dockerfile
    target_key = t.path + ("build_target",)
    if not build_target or t.problems.failed_under(target_key):
        return context, dockerfile
    try:
        stages = _STAGE.findall(dockerfile.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return context, dockerfile  # unreadable now; the build will report it in Docker's own words
    if build_target not in stages:
        listed = ", ".join(f'"{stage}"' for stage in stages) or "none"
        reason = f'must name a stage of {dockerfile} (stages: {listed}), got "{build_target}"'
        t.problems.add(target_key, reason)
    return context, dockerfile


def _check_default_app(problems: Problems, pipeline: PipelineSection, apps: Mapping[str, AppConfig]) -> None:
    key = ("pipeline", "default_app")
    if pipeline.default_app in apps or problems.failed_under(key):
        return
    known = ", ".join(f'"{name}"' for name in apps) or "none"
    reason = f'must name an [apps.<name>] table (known apps: {known}), got "{pipeline.default_app}"'
    problems.add(key, reason)


def _check_pipeline_role(problems: Problems, pipeline: PipelineSection, apps: dict[str, AppConfig]) -> dict[str, AppConfig]:
    """At most one app is the pipeline itself; it polls [pipeline].task_queue and never lets a pod go first.

    Its task_queue, when left out, is [pipeline].task_queue; maxUnavailable must be 0, so an old
    pipeline pod keeps polling until its replacement is ready (it may be running this very rollout).
    """
    owners = [app.name for app in apps.values() if app.role == "pipeline"]
    for extra in owners[1:]:
        problems.add(
            ("apps", extra, "role"), f'"pipeline" is already the role of [apps.{owners[0]}]; only one app can be the pipeline'
        )
    result = dict(apps)
    for name in owners:
        app = apps[name]
        if not app.task_queue:
            app = result[name] = replace(app, task_queue=pipeline.task_queue)
        elif app.task_queue != pipeline.task_queue and not problems.failed_under(("apps", name, "task_queue")):
            problems.add(
                ("apps", name, "task_queue"),
                f'must be [pipeline].task_queue ("{pipeline.task_queue}") for role "pipeline" (or left out), got "{app.task_queue}"',
            )
        if app.rollout.strategy != "rolling" and not problems.failed_under(("apps", name, "rollout", "strategy")):
            problems.add(
                ("apps", name, "rollout", "strategy"),
                f'must be "rolling" for role "pipeline" (the pipeline worker is unversioned), got "{app.rollout.strategy}"',
            )
        if not rules.is_zero(app.rollout.max_unavailable):
            problems.add(
                ("apps", name, "rollout", "max_unavailable"),
                f'must be 0 for role "pipeline" (the old pipeline pods poll until the new ones are ready), '
                f"got {app.rollout.max_unavailable!r}",
            )
    return result


def _check_task_queues(problems: Problems, pipeline: PipelineSection, apps: Mapping[str, AppConfig]) -> None:
    """Two workers polling one task queue would take each other's tasks, so each needs its own.

    The exception is the pipeline's own worker (role "pipeline"), which polls [pipeline].task_queue.
    """
    owners: dict[str, str] = {pipeline.task_queue: "[pipeline]"}
    for app in apps.values():
        key = ("apps", app.name, "task_queue")
        if not app.task_queue or problems.failed_under(key) or app.role == "pipeline":
            continue
        me = f"[apps.{app.name}]"
        owner = owners.setdefault(app.task_queue, me)
        if owner != me:
            problems.add(key, f'must differ from {owner}.task_queue, got "{app.task_queue}"')
