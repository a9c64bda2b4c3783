"""config.toml loading: the shipped file, every rejection's exact wording, env overrides.

Bad inputs are made by editing the shipped config.toml's text, so the tests
follow the documented example as it changes.
"""

from __future__ import annotations

import dataclasses
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.config import (
    NAMED_ENV_OVERRIDES,
    ConfigError,
    PipelineConfig,
    cpu_millicores,
    derived_registry_name,
    load_config,
    memory_bytes,
    parse_cpu,
    parse_memory,
    parse_value,
    to_dict,
    to_toml,
)
from tests.helpers import REPO_ROOT
from tests.helpers.config import APP, SHIPPED_CONFIG as SHIPPED, SHIPPED_TEXT, write_config

pytestmark = pytest.mark.unit

SUB = "0f7c6a3e-1b2d-4c5e-8f90-123456789abc"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so the file is named "config.toml" in messages, as by default."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(*edits: tuple[str, str, str | None], env: dict[str, str] | None = None) -> list[str]:
    """The problem lines for the shipped config with `edits` (run inside `workdir`)."""
    write_config(Path.cwd(), *edits)
    with pytest.raises(ConfigError) as info:
        load_config(Path("config.toml"), env=env or {})
    assert info.value.message == "\n".join(info.value.problems)
    return info.value.problems


def load(*edits: tuple[str, str, str | None], env: dict[str, str] | None = None) -> PipelineConfig:
    write_config(Path.cwd(), *edits)
    return load_config(Path("config.toml"), env=env or {})


# --- the shipped file ---------------------------------------------------------------------


def test_shipped_config_loads_with_documented_defaults() -> None:
    config = load_config(SHIPPED, env={})
    assert config.source == str(SHIPPED)
    assert config.target == "local"
    assert (config.temporal.address, config.temporal.namespace) == ("127.0.0.1:7233", "default")
    assert (config.temporal.tls, config.temporal.api_key_env) == (False, "")
    assert config.temporal.ui_url == "http://127.0.0.1:8233"
    assert (config.pipeline.task_queue, config.pipeline.default_app) == ("deployments", "sample-worker")
    assert config.azure.subscription_id == ""
    assert (config.azure.resource_group, config.azure.location) == ("temporal-workers", "eastus")
    assert config.azure.endpoint == "https://management.azure.com"
    derived = derived_registry_name("", "temporal-workers")  # names are global: derived, not a fixed default
    assert (config.acr.name, config.acr.login_server) == (derived, f"{derived}.azurecr.io")
    assert config.acr.role_assignment_mode == "LegacyRegistryPermissions"
    assert (config.aks.cluster_name, config.aks.admin_credentials) == ("temporal-aks", False)
    assert config.kubernetes.namespace == "temporal-workers"
    assert (config.kubernetes.kubeconfig, config.kubernetes.context) == ("", "")
    assert config.registry.address == "127.0.0.1:5000"
    assert config.env_overrides == {}

    app = config.app(None)
    assert app is config.apps["sample-worker"] and list(config.apps) == ["sample-worker", "pipeline-worker"]
    assert (app.name, app.task_queue, app.replicas) == ("sample-worker", "sample-worker", 2)
    assert app.build_context == REPO_ROOT and app.dockerfile == REPO_ROOT / "Dockerfile"
    assert (app.build_target, app.command, app.health_port) == ("sample-worker", (), 8080)
    assert app.termination_grace_period_seconds == 30
    assert app.resources == config.resources
    assert (app.resources.cpu_request, app.resources.cpu_request_millicores) == ("100m", 100)
    assert (app.resources.cpu_limit, app.resources.cpu_limit_millicores) == ("500m", 500)
    assert app.resources.memory_request_bytes == 128 * 2**20
    assert app.resources.memory_limit_bytes == 256 * 2**20
    assert app.rollout == config.rollout
    assert dataclasses.astuple(app.rollout)[:5] == (120, 1, 0, 60, True)
    assert (app.rollout.strategy, app.rollout.steps, app.rollout.drained_replicas) == ("rolling", (), 0)


def test_loaded_config_is_frozen() -> None:
    config = load_config(SHIPPED, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.target = "aks"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.app().rollout.auto_rollback = False  # type: ignore[misc]


def test_default_path_is_pipeline_config_env_then_cwd(workdir: Path) -> None:
    write_config(workdir)
    assert load_config(env={}).source == "config.toml"
    other = workdir / "sub"
    other.mkdir()
    path = write_config(other, ("apps.sample-worker", "replicas", "5"))
    config = load_config(env={"PIPELINE_CONFIG": "sub/config.toml"})
    assert (config.source, config.path, config.app().replicas) == ("sub/config.toml", path, 5)


def test_app_lookup_names_the_known_apps(workdir: Path) -> None:
    config = load()
    with pytest.raises(ConfigError) as info:
        config.app("nope")
    assert info.value.problems == ['config.toml: no app named "nope"; known apps: "sample-worker", "pipeline-worker"']


def test_effective_config_round_trips_through_toml(workdir: Path) -> None:
    config = load(("apps.sample-worker", "command", '["python", "-m", "w"]'), env={"TEMPORAL_ADDRESS": "temporal:7233"})
    (workdir / "again.toml").write_text(to_toml(to_dict(config)))
    again = load_config(workdir / "again.toml", env={})
    assert tomllib.loads(to_toml(to_dict(config))) == to_dict(config)
    assert again.app() == config.app() and again.temporal == config.temporal


# --- one bad value, one exact line --------------------------------------------------------

LONG = "a" * 64
DNS = 'a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)'
BAD_VALUES = [
    ("", "target", '"gke"', 'target: must be one of "local", "aks", got "gke"'),
    ("", "target", "1", 'target: must be one of "local", "aks", got 1'),
    ("", "colour", '"blue"', "colour: unknown key"),
    ("", "target", '"aks"', '[azure].subscription_id: required when target = "aks"; set the '
     "subscription UUID here or in AZURE_SUBSCRIPTION_ID"),
    ("temporal", "address", '"nope"', '[temporal].address: must be host:port, got "nope"'),
    ("temporal", "address", '"host:70000"', '[temporal].address: must be host:port, got "host:70000"'),
    ("temporal", "address", "7233", "[temporal].address: must be host:port, got 7233"),
    ("temporal", "adress", '"h:1"', '[temporal].adress: unknown key (did you mean "address"?)'),
    ("temporal", "tls", '"yes"', '[temporal].tls: must be true or false, got "yes"'),
    ("temporal", "tls", "1", "[temporal].tls: must be true or false, got 1"),
    ("temporal", "namespace", '"my ns"',
     '[temporal].namespace: must be a non-empty Temporal namespace without whitespace, got "my ns"'),
    ("temporal", "api_key_env", '"sk live secret"', '[temporal].api_key_env: must be the NAME of the '
     'env var holding the API key (letters, digits and "_") or "", never the key itself'),
    ("temporal", "api_key_secret", '"just-a-name"', '[temporal].api_key_secret: must be a Kubernetes Secret and key as '
     '"secret-name/key" or "", never the key itself'),
    ("apps.sample-worker", "build_args", '"BASE_IMAGE=x"',
     '[apps.sample-worker].build_args: must be a table of strings, got "BASE_IMAGE=x"'),
    ("apps.sample-worker", "build_args", "{ N = 1 }", "[apps.sample-worker.build_args].N: must be a string, got 1"),
    ("temporal", "ui_url", '"ftp://x"', '[temporal].ui_url: must be an http(s) URL with a host, got "ftp://x"'),
    ("temporal", "ui_url", '"http://"', '[temporal].ui_url: must be an http(s) URL with a host, got "http://"'),
    ("pipeline", "task_queue", '"two words"',
     '[pipeline].task_queue: must be a non-empty task queue name without whitespace, got "two words"'),
    ("pipeline", "default_app", '"nope"',
     '[pipeline].default_app: must name an [apps.<name>] table (known apps: "sample-worker", "pipeline-worker"), got "nope"'),
    ("azure", "subscription_id", '"abc"', '[azure].subscription_id: must be a subscription UUID like '
     '"00000000-0000-0000-0000-000000000000", got "abc"'),
    ("azure", "endpoint", '"http://arm.local"',
     '[azure].endpoint: must be an https URL with a host, got "http://arm.local"'),
    ("azure", "identity", '"a b"', "[azure].identity: must be a managed identity name: 3-128 letters, digits, '-' and '_', "
     'starting with a letter or digit, got "a b"'),
    ("azure", "authority_host", '"login.example"', '[azure].authority_host: must be an https URL with a host, or "", '
     'got "login.example"'),
    ("azure", "ca_bundle", '"missing.pem"', "[azure].ca_bundle: no such file: {dir}/missing.pem"),
    ("azure", "location", '"East US"', '[azure].location: must be an Azure region name like "eastus", got "East US"'),
    ("azure", "resource_group", '"rg."', '[azure].resource_group: must be an Azure resource group name '
     '(1-90 letters, digits, "_", "-", ".", "(" or ")", not ending with "."), got "rg."'),
    ("acr", "name", '"my-acr"',
     '[acr].name: must be 5-50 letters and digits (the Azure Container Registry naming rule), or "" for a name '
     'derived from [azure].subscription_id and [azure].resource_group, got "my-acr"'),
    ("acr", "name", '"abc"',
     '[acr].name: must be 5-50 letters and digits (the Azure Container Registry naming rule), or "" for a name '
     'derived from [azure].subscription_id and [azure].resource_group, got "abc"'),
    ("acr", "login_server", '"https://x.azurecr.io"', '[acr].login_server: must be a registry host like '
     '"myregistry.azurecr.io" (no scheme), or "" for the default, got "https://x.azurecr.io"'),
    ("aks", "admin_credentials", '"false"', '[aks].admin_credentials: must be true or false, got "false"'),
    ("aks", "cluster_name", '"-aks"', '[aks].cluster_name: must be an AKS cluster name (1-63 letters, digits, '
     '"-" or "_", starting and ending with a letter or digit), got "-aks"'),
    ("kubernetes", "namespace", '"Temporal_Workers"', f'[kubernetes].namespace: must be {DNS}, got "Temporal_Workers"'),
    ("kubernetes", "namespace", f'"{LONG}"', f'[kubernetes].namespace: must be {DNS}, got "{LONG[:57]}..."'),
    ("kubernetes", "context", "false", "[kubernetes].context: must be a string, got false"),
    ("registry", "address", '"localhost"', '[registry].address: must be host:port, got "localhost"'),
    ("resources", "cpu_limit", '"lots"',
     '[resources].cpu_limit: must be a positive CPU quantity like "500m", "0.5" or "2", got "lots"'),
    ("resources", "cpu_request", "1",
     '[resources].cpu_request: must be a positive CPU quantity like "500m", "0.5" or "2", got 1'),
    ("resources", "memory_request", '"128MB"', '[resources].memory_request: must be a positive memory '
     'quantity like "256Mi", "1Gi" or "128974848", got "128MB"'),
    ("resources", "memory_limit", '"256m"', '[resources].memory_limit: must be a positive memory '
     'quantity like "256Mi", "1Gi" or "128974848", got "256m"'),
    ("resources", "cpu_limit", '"50m"', '[resources].cpu_limit: must be at least cpu_request ("100m"), got "50m"'),
    ("resources", "memory_limit", '"64Mi"',
     '[resources].memory_limit: must be at least memory_request ("128Mi"), got "64Mi"'),
    ("rollout", "max_surge", '"lots"',
     '[rollout].max_surge: must be a non-negative integer or a percentage like "25%", got "lots"'),
    ("rollout", "max_surge", '"150%"',
     '[rollout].max_surge: must be a non-negative integer or a percentage like "25%", got "150%"'),
    ("rollout", "max_unavailable", "-1",
     '[rollout].max_unavailable: must be a non-negative integer or a percentage like "25%", got -1'),
    ("rollout", "max_surge", '"0%"',
     "[rollout].max_unavailable: cannot be 0 when max_surge is 0 too (no pod could ever be replaced)"),
    ("rollout", "progress_deadline_seconds", "0",
     "[rollout].progress_deadline_seconds: must be a positive integer, got 0"),
    ("rollout", "verification_timeout_seconds", '"60"',
     '[rollout].verification_timeout_seconds: must be a positive integer, got "60"'),
    ("rollout", "auto_rollback", '"yes"', '[rollout].auto_rollback: must be true or false, got "yes"'),
    (APP, "replicas", "0", f"[{APP}].replicas: must be an integer from 1 to 100, got 0"),
    (APP, "replicas", "101", f"[{APP}].replicas: must be an integer from 1 to 100, got 101"),
    (APP, "replicas", "true", f"[{APP}].replicas: must be an integer from 1 to 100, got true"),
    (APP, "replicas", "2.0", f"[{APP}].replicas: must be an integer from 1 to 100, got 2.0"),
    (APP, "health_port", "70000", f"[{APP}].health_port: must be an integer from 0 to 65535, got 70000"),
    (APP, "termination_grace_period_seconds", "-1",
     f"[{APP}].termination_grace_period_seconds: must be an integer from 0 to 3600, got -1"),
    (APP, "task_queue", None, f"[{APP}].task_queue: missing; this key is required"),
    (APP, "task_queue", '""', f'[{APP}].task_queue: must be a non-empty task queue name without whitespace, got ""'),
    (APP, "task_queue", '"deployments"', f'[{APP}].task_queue: must differ from [pipeline].task_queue, got "deployments"'),
    (APP, "command", '"python"', f'[{APP}].command: must be an array of strings, got "python"'),
    (APP, "command", '["python", 1]', f"[{APP}].command: must be an array of strings, got an array"),
    (APP, "comand", "[]", f'[{APP}].comand: unknown key (did you mean "command"?)'),
    (APP, "build_context", '"missing"', f"[{APP}].build_context: must be an existing directory, got {{dir}}/missing"),
    (APP, "dockerfile", '"Nope.dockerfile"', f"[{APP}].dockerfile: must be an existing file, got {{dir}}/Nope.dockerfile"),
    (APP, "build_target", '"worker"', f'[{APP}].build_target: must name a stage of {{dir}}/Dockerfile '
     '(stages: "deps", "sample-worker", "pipeline-worker"), got "worker"'),
    (APP, "platforms", "[]", f"[{APP}].platforms: must list at least one platform"),
    (APP, "platforms", '"linux/amd64"', f'[{APP}].platforms: must be an array of strings, got "linux/amd64"'),
    (APP, "platforms", '["linux/amd64", "linux/amd64"]',
     f'[{APP}].platforms: must name each platform once, got "linux/amd64" more than once'),
    (APP, "platforms", '["windows/amd64"]',
     f'[{APP}].platforms: "windows/amd64" is not "linux/<arch>[/<variant>]"'),
    (APP, "platforms", '["linux/mips"]', f'[{APP}].platforms: "linux/mips" names an unknown architecture '
     '(one of amd64, arm64, arm, 386, ppc64le, s390x, riscv64)'),
    (APP, "platforms", '["linux/386/v7"]',
     f'[{APP}].platforms: "linux/386/v7" names a variant 386 does not have (variants: none)'),
    (APP, "architecture", '"arm64"',
     f'[{APP}].architecture: must be "" or an architecture of platforms (amd64), got "arm64"'),
    (APP, "architecture", "1", f"[{APP}].architecture: must be a string, got 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"), BAD_VALUES, ids=[f"{s or 'root'}.{k}={v}" for s, k, v, _ in BAD_VALUES]
)
def test_one_bad_value_is_one_exact_line(workdir: Path, section: str, key: str, value: str | None, expected: str) -> None:
    expected = expected.format(dir=workdir.resolve())
    assert problems((section, key, value)) == [f"config.toml: {expected}"]


def test_bad_app_name_and_unknown_section(workdir: Path) -> None:
    text = SHIPPED_TEXT.replace("[apps.sample-worker]", "[apps.Sample_Worker]") + "\n[temporl]\nx = 1\n"
    write_config(workdir, ("pipeline", "default_app", '"Sample_Worker"'), text=text)
    with pytest.raises(ConfigError) as info:
        load_config(Path("config.toml"), env={})
    assert info.value.problems == [
        f"config.toml: [apps.Sample_Worker]: app name must be {DNS}",
        'config.toml: [temporl]: unknown section (did you mean "temporal"?)',
    ]


def test_every_problem_in_the_file_is_reported_together(workdir: Path) -> None:
    found = problems(
        ("", "target", '"gke"'),
        ("temporal", "tls", '"no"'),
        ("resources", "cpu_request", '"2"'),  # above the 500m limit: cross-field, still reported
        ("kubernetes", "namespace", '"Bad NS"'),
        (APP, "replicas", "0"),
        (APP, "extra", "1"),
    )
    assert found == [
        'config.toml: target: must be one of "local", "aks", got "gke"',
        'config.toml: [temporal].tls: must be true or false, got "no"',
        f'config.toml: [kubernetes].namespace: must be {DNS}, got "Bad NS"',
        'config.toml: [resources].cpu_limit: must be at least cpu_request ("2"), got "500m"',
        f"config.toml: [{APP}].replicas: must be an integer from 1 to 100, got 0",
        f"config.toml: [{APP}].extra: unknown key",
    ]


def test_app_overrides_merge_over_defaults_and_are_checked_after_merging(workdir: Path) -> None:
    text = (
        SHIPPED_TEXT + '\n[apps.sample-worker.resources]\ncpu_limit = "2"\n\n'
        '[apps.sample-worker.rollout]\nmax_surge = "25%"\nauto_rollback = false\n'
    )
    write_config(workdir, text=text)
    app = load_config(Path("config.toml"), env={}).app("sample-worker")
    assert (app.resources.cpu_request, app.resources.cpu_limit, app.resources.memory_limit) == ("100m", "2", "256Mi")
    assert (app.rollout.max_surge, app.rollout.max_unavailable, app.rollout.auto_rollback) == ("25%", 0, False)

    bad = (
        SHIPPED_TEXT + '\n[apps.sample-worker.resources]\nmemory_request = "1Gi"\n\n[apps.sample-worker.rollout]\nmax_surge = 0\n'
    )
    write_config(workdir, text=bad)
    with pytest.raises(ConfigError) as info:
        load_config(Path("config.toml"), env={})
    assert info.value.problems == [
        f'config.toml: [{APP}.resources].memory_limit: must be at least memory_request ("1Gi"), got "256Mi"',
        f"config.toml: [{APP}.rollout].max_unavailable: cannot be 0 when max_surge is 0 too (no pod could ever be replaced)",
    ]


def test_two_apps_cannot_share_a_task_queue(workdir: Path) -> None:
    text = SHIPPED_TEXT + '\n[apps.other]\ntask_queue = "sample-worker"\n'
    write_config(workdir, text=text)
    with pytest.raises(ConfigError) as info:
        load_config(Path("config.toml"), env={})
    assert info.value.problems == [
        'config.toml: [apps.other].task_queue: must differ from [apps.sample-worker].task_queue, got "sample-worker"'
    ]


def test_aks_target_with_subscription(workdir: Path) -> None:
    config = load(
        ("", "target", '"aks"'), ("azure", "subscription_id", f'"{SUB}"'), ("acr", "login_server", '"registry.example.com:5443"')
    )
    assert (config.target, config.azure.subscription_id) == ("aks", SUB)
    assert config.acr.login_server == "registry.example.com:5443"


def test_relative_kubeconfig_resolves_against_the_config_directory(workdir: Path) -> None:
    config = load(("kubernetes", "kubeconfig", '"kube/config"'))
    assert config.kubernetes.kubeconfig == str(workdir.resolve() / "kube" / "config")


# --- file-level failures ------------------------------------------------------------------


def test_missing_file_is_one_line(workdir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Path("nowhere.toml"), env={})
    assert info.value.problems == [
        f"nowhere.toml: file not found (looked for {workdir.resolve()}/nowhere.toml; pass --config or set PIPELINE_CONFIG)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('target = "local"\n\n[temporal\n', "config.toml: line 3: expected ']' at the end of a table declaration (column 10)"),
        ("target = \n", "config.toml: line 1: invalid value (column 10)"),
        ('target = "local\n', "config.toml: line 1: illegal character '\\n' (column 16)"),
        ('target = """local', "config.toml: end of file: unterminated string"),
    ],
)
def test_toml_syntax_error_is_one_line(workdir: Path, text: str, expected: str) -> None:
    (workdir / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Path("config.toml"), env={})
    assert info.value.problems == [expected]


# --- environment overrides ----------------------------------------------------------------

NAMED_CASES = [
    ("PIPELINE_TARGET", "aks", lambda c: c.target),
    ("TEMPORAL_ADDRESS", "temporal.example:7233", lambda c: c.temporal.address),
    ("TEMPORAL_NAMESPACE", "prod", lambda c: c.temporal.namespace),
    ("TEMPORAL_TASK_QUEUE", "workers-v2", lambda c: c.app().task_queue),
    ("TEMPORAL_TLS", "true", lambda c: c.temporal.tls),
    ("TEMPORAL_API_KEY_ENV", "TEMPORAL_API_KEY", lambda c: c.temporal.api_key_env),
    ("TEMPORAL_UI_URL", "https://cloud.temporal.io", lambda c: c.temporal.ui_url),
    ("AZURE_SUBSCRIPTION_ID", SUB, lambda c: c.azure.subscription_id),
    ("AZURE_RESOURCE_GROUP", "rg-prod", lambda c: c.azure.resource_group),
    ("AZURE_LOCATION", "westeurope", lambda c: c.azure.location),
    ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us", lambda c: c.azure.authority_host),
    ("ACR_NAME", "prodregistry", lambda c: (c.acr.name, c.acr.login_server)),
    ("AKS_CLUSTER_NAME", "prod-aks", lambda c: c.aks.cluster_name),
    ("K8S_NAMESPACE", "prod-workers", lambda c: c.kubernetes.namespace),
    ("KUBECONFIG", "/etc/kube/config", lambda c: c.kubernetes.kubeconfig),
    # temporalio.envconfig's variables (tests/test_temporal_settings.py shows their precedence)
    ("TEMPORAL_PROFILE", "cloud", lambda c: c.temporal.profile),
    ("TEMPORAL_CONFIG_FILE", "/tmp/temporal-envconfig-test.toml", lambda c: c.temporal.config_file),
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/etc/temporal/client.pem", lambda c: c.temporal.tls_client_cert_path),
    ("TEMPORAL_TLS_CLIENT_KEY_PATH", "/etc/temporal/client.key", lambda c: c.temporal.tls_client_key_path),
    ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/etc/temporal/ca.pem", lambda c: c.temporal.tls_server_ca_cert_path),
    ("TEMPORAL_TLS_SERVER_NAME", "temporal.internal", lambda c: c.temporal.tls_server_name),
]
# What a named override needs beside it to be valid on its own.
COMPANIONS = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": {"TEMPORAL_TLS_CLIENT_KEY_PATH": "/etc/temporal/client.key"},
    "TEMPORAL_TLS_CLIENT_KEY_PATH": {"TEMPORAL_TLS_CLIENT_CERT_PATH": "/etc/temporal/client.pem"},
}
PROFILE_FILE = '[profile.default]\naddress = "from-profile:7233"\n[profile.cloud]\nnamespace = "from-profile"\n'
EXPECTED = {
    "TEMPORAL_TLS": True,
    "ACR_NAME": ("prodregistry", "prodregistry.azurecr.io"),
}
OVERRIDDEN_KEY = {
    "TEMPORAL_TASK_QUEUE": "apps.sample-worker.task_queue",
    "KUBECONFIG": "kubernetes.kubeconfig",
}


def test_every_named_override_is_tested() -> None:
    assert {name for name, _, _ in NAMED_CASES} == set(NAMED_ENV_OVERRIDES) | set(OVERRIDDEN_KEY)


@pytest.mark.parametrize(("name", "value", "read"), NAMED_CASES, ids=[n for n, _, _ in NAMED_CASES])
def test_named_env_override_beats_the_file(workdir: Path, name: str, value: str, read: object) -> None:
    env = {name: value}
    if name == "PIPELINE_TARGET":
        env["AZURE_SUBSCRIPTION_ID"] = SUB
    env.update(COMPANIONS.get(name, {}))
    if name in ("TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"):  # a profile must exist to be selected
        Path("/tmp/temporal-envconfig-test.toml").write_text(PROFILE_FILE)
        env["TEMPORAL_CONFIG_FILE"] = "/tmp/temporal-envconfig-test.toml"
    config = load(env=env)
    assert read(config) == EXPECTED.get(name, value)  # type: ignore[operator]
    key = OVERRIDDEN_KEY.get(name) or ".".join(NAMED_ENV_OVERRIDES[name])
    assert config.env_overrides[key] == name


def test_empty_named_override_counts_as_unset(workdir: Path) -> None:
    config = load(env={"TEMPORAL_ADDRESS": "", "KUBECONFIG": "", "TEMPORAL_TASK_QUEUE": ""})
    assert (config.temporal.address, config.app().task_queue) == ("127.0.0.1:7233", "sample-worker")
    assert config.env_overrides == {}


def test_kubeconfig_env_only_fills_an_empty_file_value(workdir: Path) -> None:
    config = load(("kubernetes", "kubeconfig", '"/from/file"'), env={"KUBECONFIG": "/from/env"})
    assert config.kubernetes.kubeconfig == "/from/file"
    listed = load(env={"KUBECONFIG": "/a:/b"})
    assert listed.kubernetes.kubeconfig == "/a:/b"


def test_env_text_is_a_string_where_a_string_is_expected(workdir: Path) -> None:
    config = load(env={"ACR_NAME": "12345", "TEMPORAL_NAMESPACE": "true"})
    assert (config.acr.name, config.temporal.namespace) == ("12345", "true")


def test_generic_overrides_reach_any_key_and_win(workdir: Path) -> None:
    env = {
        "PIPELINE__APPS__SAMPLE_WORKER__REPLICAS": "3",
        "PIPELINE__APPS__SAMPLE_WORKER__COMMAND": '["python", "-m", "sample_worker.worker"]',
        "PIPELINE__APPS__SAMPLE_WORKER__RESOURCES__CPU_LIMIT": "2",
        "PIPELINE__ROLLOUT__MAX_SURGE": "25%",
        "PIPELINE__TEMPORAL__TLS": "true",
        "PIPELINE__TEMPORAL__ADDRESS": "generic:7233",
        "TEMPORAL_ADDRESS": "named:7233",
        "PIPELINE__TARGET": "local",
    }
    config = load(env=env)
    app = config.app()
    assert (app.replicas, app.command, app.resources.cpu_limit) == (3, ("python", "-m", "sample_worker.worker"), "2")
    assert (app.rollout.max_surge, config.rollout.max_surge) == ("25%", "25%")
    assert (config.temporal.tls, config.temporal.address) == (True, "generic:7233")
    assert config.env_overrides["temporal.address"] == "PIPELINE__TEMPORAL__ADDRESS"
    assert config.env_overrides["apps.sample-worker.replicas"] == "PIPELINE__APPS__SAMPLE_WORKER__REPLICAS"


def test_task_queue_override_follows_an_overridden_default_app(workdir: Path) -> None:
    write_config(workdir, text=SHIPPED_TEXT + '\n[apps.other]\ntask_queue = "other"\n')
    env = {"PIPELINE__PIPELINE__DEFAULT_APP": "other", "TEMPORAL_TASK_QUEUE": "other-v2"}
    config = load_config(Path("config.toml"), env=env)
    assert (config.app().name, config.app().task_queue) == ("other", "other-v2")
    assert config.apps["sample-worker"].task_queue == "sample-worker"


def test_bad_env_values_name_their_source(workdir: Path) -> None:
    found = problems(
        env={
            "TEMPORAL_ADDRESS": "nope",
            "TEMPORAL_TLS": "maybe",
            "TEMPORAL_TASK_QUEUE": "has space",
            "PIPELINE__APPS__SAMPLE_WORKER__REPLICAS": "0",
            "PIPELINE__TEMPORAL__ADRESS": "x:1",
            "PIPELINE__TEMPORL__ADDRESS": "x:1",
            "PIPELINE__APPS__NOPE__REPLICAS": "1",
            "PIPELINE__APPS__SAMPLE_WORKER": "1",
        }
    )
    assert found == [
        'env PIPELINE__APPS__NOPE__REPLICAS: no app matches "nope" (known apps: "sample-worker", "pipeline-worker"; write "-" as "_")',
        "env PIPELINE__APPS__SAMPLE_WORKER: must name a key with double underscores, like "
        "PIPELINE__APPS__SAMPLE_WORKER__REPLICAS",
        'env TEMPORAL_ADDRESS: [temporal].address: must be host:port, got "nope"',
        'env TEMPORAL_TLS: [temporal].tls: must be true or false, got "maybe"',
        'env PIPELINE__TEMPORAL__ADRESS: [temporal].adress: unknown key (did you mean "address"?)',
        f'env TEMPORAL_TASK_QUEUE: [{APP}].task_queue: must be a non-empty task queue name without whitespace, got "has space"',
        f"env PIPELINE__APPS__SAMPLE_WORKER__REPLICAS: [{APP}].replicas: must be an integer from 1 to 100, got 0",
        'env PIPELINE__TEMPORL__ADDRESS: [temporl]: unknown section (did you mean "temporal"?)',
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("true", True),
        ("false", False),
        ("1.5", 1.5),
        ('"quoted"', "quoted"),
        ('["a", "b"]', ["a", "b"]),
        ("127.0.0.1:7233", "127.0.0.1:7233"),
        ("25%", "25%"),
        ("plain words", "plain words"),
        ("", ""),
        ("1\nx = 2", "1\nx = 2"),
    ],
)
def test_env_values_are_toml_when_they_parse(text: str, value: object) -> None:
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


# --- quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores", "millicores"),
    [
        ("500m", "0.5", 500),
        ("0.5", "0.5", 500),
        ("2", "2", 2000),
        ("100m", "0.1", 100),
        (".25", "0.25", 250),
        ("1e3", "1000", 1000000),
        ("0.0001", "0.0001", 1),
        ("1.5m", "0.0015", 2),
    ],
)
def test_cpu_quantities(text: str, cores: str, millicores: int) -> None:
    assert parse_cpu(text) == Decimal(cores)
    assert cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("128974848", 128974848),
        ("129e6", 129000000),
        ("123M", 123000000),
        ("1Ki", 1024),
        ("1k", 1000),
        ("1.5Gi", 3 * 2**29),
        ("0.5", 1),
        ("2E", 2 * 10**18),
        ("1E3", 1000),
    ],
)
def test_memory_quantities(text: str, size: int) -> None:
    assert memory_bytes(text) == size
    assert parse_memory(text) >= size - 1


@pytest.mark.parametrize("text", ["", "m", "-1", "0", "0m", "1Mi", "1e3m", "1 m", "1.2.3", "500M", "1e", "+1"])
def test_bad_cpu_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="CPU quantity"):
        parse_cpu(text)


@pytest.mark.parametrize("text", ["", "Mi", "-1Mi", "0", "128MB", "256m", "1u", "1mi", "1 Gi", "1.5.2Gi"])
def test_bad_memory_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="memory quantity"):
        parse_memory(text)
