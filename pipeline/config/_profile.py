"""Temporal's own client configuration (temporalio.envconfig) as a layer of [temporal].

The temporal CLI and every SDK read a profile from a TOML file
(`TEMPORAL_CONFIG_FILE`, default `~/.config/temporalio/temporal.toml`; profile
`TEMPORAL_PROFILE`, default "default") and then the `TEMPORAL_*` variables.
The pipeline reads the same, with config.toml's [temporal] as the project's
default. One rule, for every setting (address, namespace, API key, TLS on/off,
client certificate and key, server CA, server name):

    PIPELINE__TEMPORAL__<KEY>   the project's explicit override, wins over all below
    TEMPORAL_* variable         envconfig's variable (TEMPORAL_ADDRESS, TEMPORAL_TLS_CLIENT_CERT_PATH, ...)
    the selected profile        only when selected: TEMPORAL_PROFILE or TEMPORAL_CONFIG_FILE
                                (or [temporal].profile / config_file) is set
    config.toml [temporal]      the project's default
    built-in default            127.0.0.1:7233, "default", no TLS

A profile is used only when one is selected: a default profile in the home
directory, made for some other server, does not silently redirect a project
whose config.toml says where its Temporal is (`export TEMPORAL_PROFILE=default`
selects it). Every value a profile sets is traced like an env override
(`profile "cloud" of /home/me/.config/temporalio/temporal.toml: [temporal].address: ...`).

Secrets stay out of the configuration: a profile's `api_key` is not copied;
[temporal].api_key_env becomes "" with this profile as its origin, and the
process that connects reads the key from the profile itself
(pipeline/temporal_client.py). Certificates and keys are files, named by path;
inline `*_data` forms are refused with one line saying to use a path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from temporalio.envconfig import ClientConfig, ClientConfigProfile, DataSource

from pipeline.config._reader import Origin, Path_, Problems

Data = MutableMapping[str, object]

DEFAULT_PROFILE = "default"


def default_config_file(env: Mapping[str, str]) -> Path:
    """Where envconfig looks without TEMPORAL_CONFIG_FILE: the OS config dir's temporalio/temporal.toml."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "temporalio" / "temporal.toml"


def selected(data: Mapping[str, object]) -> tuple[str, str] | None:
    """(profile, config file) when [temporal] (after the env overrides) selects a profile, else None."""
    temporal = data.get("temporal")
    if not isinstance(temporal, Mapping):
        return None
    profile, config_file = temporal.get("profile", ""), temporal.get("config_file", "")
    if not isinstance(profile, str) or not isinstance(config_file, str) or not (profile or config_file):
        return None
    return profile, config_file


def load_profile(profile: str, config_file: str, env: Mapping[str, str]) -> tuple[ClientConfigProfile | None, str]:
    """The named profile (None when the file has no such profile) and the file's name; ValueError in one line."""
    path = Path(config_file).expanduser() if config_file else default_config_file(env)
    if config_file and not path.is_file():
        raise ValueError(f"the Temporal client config file {path} does not exist")
    try:
        loaded = ClientConfig.load(config_source=path) if path.is_file() else ClientConfig(profiles={})
    except Exception as error:  # temporal_sdk_bridge.ConfigError: the TOML's own message, first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"the Temporal client config file {path} cannot be read: {first}") from None
    found = loaded.profiles.get(profile or DEFAULT_PROFILE)
    if found is None and profile:
        names = ", ".join(sorted(loaded.profiles)) or "none"
        raise ValueError(f'no profile "{profile}" in the Temporal client config file {path} (its profiles: {names})')
    return found, str(path)


def apply_profile(data: Data, env: Mapping[str, str], problems: Problems) -> None:
    """Write the selected profile's settings into [temporal] where no env override set them."""
    selection = selected(data)
    if selection is None:
        return
    profile, config_file = selection
    try:
        found, path = load_profile(profile, config_file, env)
    except ValueError as error:
        label = problems.origin(("temporal", "profile" if profile else "config_file")).label
        problems.add_line(f"{label}: {error}")
        return
    if found is None:
        return
    origin = Origin(f'profile "{profile or DEFAULT_PROFILE}" of {path}')
    values: dict[str, object] = {}
    if found.address:
        values["address"] = found.address
    if found.namespace:
        values["namespace"] = found.namespace
    if found.api_key:
        values["api_key_env"] = ""  # the key is read from the profile when connecting, never copied here
        values["tls"] = True  # envconfig: an API key turns TLS on unless the profile's tls says otherwise
    tls = found.tls
    if tls is not None:
        values["tls"] = not tls.disabled if tls.disabled is not None else True
        if tls.server_name:
            values["tls_server_name"] = tls.server_name
        for key, source, toml_key in (
            ("tls_client_cert_path", tls.client_cert, "client_cert"),
            ("tls_client_key_path", tls.client_private_key, "client_key"),
            ("tls_server_ca_cert_path", tls.server_root_ca_cert, "server_ca_cert"),
        ):
            text = _path_of(source)
            if text is None:
                problems.origins[("temporal", key)] = origin
                problems.add(
                    ("temporal", key),
                    f"given inline (tls.{toml_key}_data): the pipeline reads TLS certificates and keys from files: "
                    f"use tls.{toml_key}_path instead",
                )
            elif text:
                values[key] = text
    section = data.setdefault("temporal", {})
    if not isinstance(section, MutableMapping):
        return  # a [temporal] that is not a table is reported by the schema
    for key, value in values.items():
        path_: Path_ = ("temporal", key)
        if path_ not in problems.origins:
            section[key] = value
            problems.origins[path_] = origin


def _path_of(source: DataSource | None) -> str | None:
    """The path; "" when unset; None when inline data (refused)."""
    if source is None:
        return ""
    if isinstance(source, Path):
        return str(source)
    return None
