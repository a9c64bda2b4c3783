"""Temporal's own client configuration (temporalio.envconfig) and config.toml's [temporal]: which wins.

The rule (pipeline/config/_profile.py), shown here for every setting, one layer added at a time:

    config.toml [temporal]  <  the selected profile  <  TEMPORAL_* variable  <  PIPELINE__TEMPORAL__<KEY>

and what `connect` makes of the result: the key read from where the config points, the TLS
files read and checked, never a value in a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from pipeline.config import ConfigError, PipelineConfig, load_config, to_dict
from pipeline.errors import PipelineError
from pipeline.inputs import temporal_target
from pipeline.temporal_client import api_key_from_env, tls_setting
from tests.helpers.config import write_config

pytestmark = pytest.mark.unit

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class Setting:
    """One setting as each layer writes it, and the value each layer should produce."""

    name: str
    file: tuple[str, str]  # [temporal] key, TOML value text
    profile: str  # lines of [profile.p] (or of [profile.p.tls] when starting with "tls.")
    env: dict[str, str]  # envconfig's TEMPORAL_* variables
    pipeline: dict[str, str]  # PIPELINE__TEMPORAL__* overrides
    read: Callable[[PipelineConfig, dict[str, str]], object]
    expected: tuple[object, object, object, object]  # after: file, + profile, + TEMPORAL_*, + PIPELINE__


def _key(config: PipelineConfig, env: dict[str, str]) -> object:
    return api_key_from_env(temporal_target(config), env)


SETTINGS = [
    Setting(
        "address",
        ("address", '"file:7233"'),
        'address = "profile:7233"',
        {"TEMPORAL_ADDRESS": "env:7233"},
        {"PIPELINE__TEMPORAL__ADDRESS": "pipeline:7233"},
        lambda c, _: c.temporal.address,
        ("file:7233", "profile:7233", "env:7233", "pipeline:7233"),
    ),
    Setting(
        "namespace",
        ("namespace", '"file-ns"'),
        'namespace = "profile-ns"',
        {"TEMPORAL_NAMESPACE": "env-ns"},
        {"PIPELINE__TEMPORAL__NAMESPACE": "pipeline-ns"},
        lambda c, _: c.temporal.namespace,
        ("file-ns", "profile-ns", "env-ns", "pipeline-ns"),
    ),
    Setting(
        "API key",
        ("api_key_env", '"FILE_KEY"'),
        'api_key = "profile-secret"',
        {"TEMPORAL_API_KEY": "env-secret"},
        {"PIPELINE__TEMPORAL__API_KEY_ENV": "PIPELINE_KEY"},
        _key,
        ("file-secret", "profile-secret", "env-secret", "pipeline-secret"),
    ),
    Setting(
        "TLS on/off",
        ("tls", "false"),
        "tls.disabled = false",
        {"TEMPORAL_TLS": "false"},
        {"PIPELINE__TEMPORAL__TLS": "true"},
        lambda c, _: c.temporal.tls,
        (False, True, False, True),
    ),
    Setting(
        "client certificate",
        ("tls_client_cert_path", '"/file/client.pem"'),
        'tls.client_cert_path = "/profile/client.pem"',
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": "/env/client.pem"},
        {"PIPELINE__TEMPORAL__TLS_CLIENT_CERT_PATH": "/pipeline/client.pem"},
        lambda c, _: c.temporal.tls_client_cert_path,
        ("/file/client.pem", "/profile/client.pem", "/env/client.pem", "/pipeline/client.pem"),
    ),
    Setting(
        "client key",
        ("tls_client_key_path", '"/file/client.key"'),
        'tls.client_key_path = "/profile/client.key"',
        {"TEMPORAL_TLS_CLIENT_KEY_PATH": "/env/client.key"},
        {"PIPELINE__TEMPORAL__TLS_CLIENT_KEY_PATH": "/pipeline/client.key"},
        lambda c, _: c.temporal.tls_client_key_path,
        ("/file/client.key", "/profile/client.key", "/env/client.key", "/pipeline/client.key"),
    ),
    Setting(
        "server CA",
        ("tls_server_ca_cert_path", '"/file/ca.pem"'),
        'tls.server_ca_cert_path = "/profile/ca.pem"',
        {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/env/ca.pem"},
        {"PIPELINE__TEMPORAL__TLS_SERVER_CA_CERT_PATH": "/pipeline/ca.pem"},
        lambda c, _: c.temporal.tls_server_ca_cert_path,
        ("/file/ca.pem", "/profile/ca.pem", "/env/ca.pem", "/pipeline/ca.pem"),
    ),
    Setting(
        "server name",
        ("tls_server_name", '"file.example"'),
        'tls.server_name = "profile.example"',
        {"TEMPORAL_TLS_SERVER_NAME": "env.example"},
        {"PIPELINE__TEMPORAL__TLS_SERVER_NAME": "pipeline.example"},
        lambda c, _: c.temporal.tls_server_name,
        ("file.example", "profile.example", "env.example", "pipeline.example"),
    ),
]
# Keys whose file value needs a partner to be valid alone (a certificate needs its key).
PARTNERS = {
    "tls_client_cert_path": ("tls_client_key_path", '"/partner/client.key"'),
    "tls_client_key_path": ("tls_client_cert_path", '"/partner/client.pem"'),
}
SECRETS = {"FILE_KEY": "file-secret", "PIPELINE_KEY": "pipeline-secret"}


def profile_file(directory: Path, lines: str) -> Path:
    plain = [line for line in lines.splitlines() if not line.startswith("tls.")]
    tls = [line.removeprefix("tls.") for line in lines.splitlines() if line.startswith("tls.")]
    text = "[profile.p]\n" + "\n".join(plain) + "\n" + ("[profile.p.tls]\n" + "\n".join(tls) + "\n" if tls else "")
    path = directory / "temporal.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_each_layer_beats_the_one_before(tmp_path: Path, setting: Setting) -> None:
    key, value = setting.file
    edits = [("temporal", key, value)]
    if key in PARTNERS:
        edits.append(("temporal", *PARTNERS[key]))
    config_path = write_config(tmp_path, *edits)
    selecting = {"TEMPORAL_CONFIG_FILE": str(profile_file(tmp_path, setting.profile)), "TEMPORAL_PROFILE": "p"}
    layers = [dict(SECRETS), {**SECRETS, **selecting}]
    layers.append({**layers[-1], **setting.env})
    layers.append({**layers[-1], **setting.pipeline})
    seen = []
    for env in layers:
        config = load_config(config_path, env=env)
        seen.append(setting.read(config, env))
    assert tuple(seen) == setting.expected


def test_a_profile_counts_only_when_selected(tmp_path: Path) -> None:
    """A default profile in the home directory's config file does not redirect the project unless selected."""
    home_config = tmp_path / "xdg" / "temporalio"
    home_config.mkdir(parents=True)
    (home_config / "temporal.toml").write_text('[profile.default]\naddress = "cloud.example:7233"\n')
    config_path = write_config(tmp_path, ("temporal", "address", '"file:7233"'))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert load_config(config_path, env=env).temporal.address == "file:7233"
    assert load_config(config_path, env={**env, "TEMPORAL_PROFILE": "default"}).temporal.address == "cloud.example:7233"


def test_profile_values_are_traced_and_the_key_never_copied(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, 'address = "profile:7233"\napi_key = "profile-secret-value"')
    config_path = write_config(tmp_path, ("temporal", "address", '"file:7233"'))
    config = load_config(config_path, env={"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "p"})
    assert "profile-secret-value" not in repr(config) + repr(to_dict(config)) + repr(temporal_target(config))
    assert config.temporal.api_key_env == ""  # read from the profile when connecting
    assert api_key_from_env(temporal_target(config), {}) == "profile-secret-value"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TEMPORAL_PROFILE": "nope"}, 'no profile "nope" in the Temporal client config file'),
        ({"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"}, "/nonexistent/temporal.toml does not exist"),
        ({"TEMPORAL_TLS_CLIENT_KEY_DATA": "-----BEGIN PRIVATE KEY----- secret"}, "set TEMPORAL_TLS_CLIENT_KEY_PATH instead"),
        ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "/c.pem"}, "[temporal].tls_client_key_path: missing: tls_client_cert_path is set"),
    ],
    ids=["unknown profile", "missing file", "inline key", "certificate without key"],
)
def test_bad_client_settings_are_one_line_each(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    profile = profile_file(tmp_path, 'address = "profile:7233"')
    env = {"TEMPORAL_CONFIG_FILE": str(profile), **env} if "TEMPORAL_PROFILE" in env else env
    config_path = write_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(config_path, env=env)
    assert len(caught.value.problems) == 1 and expected in caught.value.problems[0], caught.value.problems
    assert "secret" not in caught.value.problems[0]


def test_inline_key_in_a_profile_is_refused(tmp_path: Path) -> None:
    profile = profile_file(tmp_path, 'tls.client_cert_path = "/c.pem"\ntls.client_key_data = "SECRET-KEY-DATA"')
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path), env={"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "p"})
    assert caught.value.problems == [
        f'profile "p" of {profile}: [temporal].tls_client_key_path: given inline (tls.client_key_data): the pipeline '
        "reads TLS certificates and keys from files: use tls.client_key_path instead"
    ]


def test_relative_paths_in_the_file_are_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edits = [("temporal", "tls_client_cert_path", '"certs/c.pem"'), ("temporal", "tls_client_key_path", '"certs/c.key"')]
    config = load_config(write_config(tmp_path, *edits), env={})
    assert config.temporal.tls_client_cert_path == str(tmp_path.resolve() / "certs/c.pem")
    monkeypatch.chdir(tmp_path / "..")
    config = load_config(
        write_config(tmp_path), env={"TEMPORAL_TLS_CLIENT_CERT_PATH": "x.pem", "TEMPORAL_TLS_CLIENT_KEY_PATH": "x.key"}
    )
    assert config.temporal.tls_client_key_path == str(Path.cwd() / "x.key")


# ----- what connect makes of it -----


def _target(tmp_path: Path, env: dict[str, str]) -> object:
    return temporal_target(load_config(write_config(tmp_path), env=env))


def test_tls_files_are_read_into_the_connection(tmp_path: Path) -> None:
    for name in ("c.pem", "c.key", "ca.pem"):
        (tmp_path / name).write_bytes(PEM)
    env = {
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "c.key"),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "ca.pem"),
        "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
    }
    tls = tls_setting(temporal_target(load_config(write_config(tmp_path), env=env)), api_key=None)
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert, tls.domain) == (PEM, PEM, PEM, "temporal.internal")


@pytest.mark.parametrize(
    ("tls", "api_key", "expected"), [(False, None, False), (True, None, True), (False, "k", True)], ids=["off", "on", "api key"]
)
def test_an_api_key_is_never_sent_in_plain_text(tmp_path: Path, tls: bool, api_key: str | None, expected: bool) -> None:
    config = load_config(write_config(tmp_path, ("temporal", "tls", "true" if tls else "false")), env={})
    assert tls_setting(temporal_target(config), api_key=api_key) is expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), (b"just text", "is not a PEM file"), ("dir", "is a directory")],
    ids=["missing", "not PEM", "directory"],
)
def test_an_unusable_certificate_is_one_line_naming_it(tmp_path: Path, content: bytes | str | None, problem: str) -> None:
    cert = tmp_path / "client.pem"
    if content == "dir":
        cert.mkdir()
    elif isinstance(content, bytes):
        cert.write_bytes(content)
    (tmp_path / "client.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n-----END PRIVATE KEY-----\n")
    env = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "client.key")}
    with pytest.raises(PipelineError) as caught:
        tls_setting(temporal_target(load_config(write_config(tmp_path), env=env)), api_key=None)
    message = caught.value.message
    assert message == (
        f"the Temporal client certificate {cert} ([temporal].tls_client_cert_path / TEMPORAL_TLS_CLIENT_CERT_PATH) {problem}"
        + (" (no -----BEGIN line)" if problem == "is not a PEM file" else "")
    )
    assert "\n" not in message and "SECRETKEYBYTES" not in message and "just text" not in message
