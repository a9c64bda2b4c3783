"""Environment overrides: env beats config.toml, and every override is traceable.

Two forms are read, the generic one winning when both set the same key:

* the names the seed scripts and the Temporal/Azure/kubectl tools already use
  (`TEMPORAL_ADDRESS`, `AZURE_SUBSCRIPTION_ID`, `KUBECONFIG`, ...); an empty
  value counts as unset, as those tools treat it;
* `PIPELINE__SECTION__KEY` for any key, app names written with "_" for "-"
  (`PIPELINE__APPS__SAMPLE_WORKER__REPLICAS=3`).

Values are TOML when they parse as TOML (`3`, `true`, `["a"]`), else strings.
Each override records its `Origin`, so a bad value is reported as
`env TEMPORAL_ADDRESS: [temporal].address: ...` rather than blamed on the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, MutableMapping

from pipeline.config._reader import Origin, Path_, Problems

NAMED: Mapping[str, Path_] = {
    "PIPELINE_TARGET": ("target",),
    "TEMPORAL_ADDRESS": ("temporal", "address"),
    "TEMPORAL_NAMESPACE": ("temporal", "namespace"),
    "TEMPORAL_TLS": ("temporal", "tls"),
    "TEMPORAL_API_KEY_ENV": ("temporal", "api_key_env"),
    "TEMPORAL_UI_URL": ("temporal", "ui_url"),
    # temporalio.envconfig's own variables (what the temporal CLI and every SDK read), files only
    "TEMPORAL_PROFILE": ("temporal", "profile"),
    "TEMPORAL_CONFIG_FILE": ("temporal", "config_file"),
    "TEMPORAL_TLS_CLIENT_CERT_PATH": ("temporal", "tls_client_cert_path"),
    "TEMPORAL_TLS_CLIENT_KEY_PATH": ("temporal", "tls_client_key_path"),
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": ("temporal", "tls_server_ca_cert_path"),
    "TEMPORAL_TLS_SERVER_NAME": ("temporal", "tls_server_name"),
    "AZURE_SUBSCRIPTION_ID": ("azure", "subscription_id"),
    "AZURE_RESOURCE_GROUP": ("azure", "resource_group"),
    "AZURE_LOCATION": ("azure", "location"),
    "AZURE_AUTHORITY_HOST": ("azure", "authority_host"),
    "ACR_NAME": ("acr", "name"),
    "AKS_CLUSTER_NAME": ("aks", "cluster_name"),
    "K8S_NAMESPACE": ("kubernetes", "namespace"),
}
"""Seed-compatible names with a fixed key. Three more are special-cased below:
TEMPORAL_TASK_QUEUE sets the default app's task_queue, KUBECONFIG sets
[kubernetes].kubeconfig only where the file leaves it empty, and
TEMPORAL_API_KEY (envconfig's variable holding the key itself) sets
[temporal].api_key_env to its own *name*, "TEMPORAL_API_KEY", unless
TEMPORAL_API_KEY_ENV names another: the value never enters the config."""

API_KEY_VAR = "TEMPORAL_API_KEY"
# envconfig's inline forms: the pipeline passes files by path only (pods get them from a Secret as files).
INLINE_TLS = {
    "TEMPORAL_TLS_CLIENT_CERT_DATA": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}

GENERIC_PREFIX = "PIPELINE__"

Data = MutableMapping[str, object]


def parse_value(text: str) -> object:
    """`3` -> 3, `true` -> True, `["a"]` -> ["a"]; anything else stays text."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if list(parsed) == ["v"] else text


def apply_env(data: Data, env: Mapping[str, str], problems: Problems) -> None:
    """Write the overrides into `data` (the parsed file), recording each in `problems.origins`."""
    for name in sorted(env):
        if name.startswith(GENERIC_PREFIX):
            path = _generic_path(name, data, problems)
            if path is not None:
                _set(data, path, name, env[name], problems)
    for name, path in NAMED.items():
        if env.get(name) and path not in problems.origins:
            _set(data, path, name, env[name], problems)
    api_key_env = ("temporal", "api_key_env")
    if env.get(API_KEY_VAR) and api_key_env not in problems.origins:
        _set(data, api_key_env, API_KEY_VAR, API_KEY_VAR, problems)  # the variable's name, never its value
    for name, instead in INLINE_TLS.items():
        if env.get(name):
            problems.add_line(f"env {name}: the pipeline reads TLS certificates and keys from files: set {instead} instead")
    _apply_task_queue(data, env.get("TEMPORAL_TASK_QUEUE", ""), problems)
    _apply_kubeconfig(data, env.get("KUBECONFIG", ""), problems)


def _generic_path(name: str, data: Data, problems: Problems) -> Path_ | None:
    """`PIPELINE__APPS__SAMPLE_WORKER__REPLICAS` -> ("apps", "sample-worker", "replicas")."""
    parts = [part.lower() for part in name[len(GENERIC_PREFIX) :].split("__")]
    if not all(parts) or (parts[0] == "apps" and len(parts) < 3):
        example = "APPS__SAMPLE_WORKER__REPLICAS" if parts[0] == "apps" else "TEMPORAL__ADDRESS"
        problems.add_line(f"env {name}: must name a key with double underscores, like {GENERIC_PREFIX}{example}")
        return None
    if parts[0] != "apps":
        return tuple(parts)
    apps = data.get("apps")
    names = list(apps) if isinstance(apps, dict) else []
    matches = [app for app in names if app.replace("-", "_") == parts[1]]
    if not matches:
        known = ", ".join(f'"{app}"' for app in names) or "none"
        problems.add_line(f'env {name}: no app matches "{parts[1]}" (known apps: {known}; write "-" as "_")')
        return None
    return ("apps", matches[0], *parts[2:])


def _apply_task_queue(data: Data, text: str, problems: Problems) -> None:
    """TEMPORAL_TASK_QUEUE is the worker's queue, i.e. the default app's task_queue."""
    pipeline = data.get("pipeline")
    default_app = pipeline.get("default_app", "sample-worker") if isinstance(pipeline, dict) else None
    apps = data.get("apps")
    if not text or not isinstance(default_app, str) or not isinstance(apps, dict):
        return  # a broken [pipeline] or [apps] is reported by the schema
    path = ("apps", default_app, "task_queue")
    if default_app in apps and path not in problems.origins:
        _set(data, path, "TEMPORAL_TASK_QUEUE", text, problems)


def _apply_kubeconfig(data: Data, text: str, problems: Problems) -> None:
    """KUBECONFIG fills [kubernetes].kubeconfig only when the file leaves it empty."""
    path = ("kubernetes", "kubeconfig")
    section = data.get("kubernetes")
    from_file = section.get("kubeconfig", "") if isinstance(section, dict) else ""
    if text and from_file == "" and path not in problems.origins:
        _set(data, path, "KUBECONFIG", text, problems)


def _set(data: Data, path: Path_, name: str, text: str, problems: Problems) -> None:
    """Put the parsed value at `path`, creating tables on the way."""
    table = data
    for depth, key in enumerate(path[:-1]):
        child = table.setdefault(key, {})
        if not isinstance(child, dict):
            where = "[" + ".".join(path[: depth + 1]) + "]"
            problems.add_line(f"env {name}: cannot set a key inside {where}: it is not a table")
            return
        table = child
    table[path[-1]] = parse_value(text)
    problems.origins[path] = Origin.env(name, text)
