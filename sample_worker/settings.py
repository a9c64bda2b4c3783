"""The sample worker's whole configuration, read once from the environment.

Kubernetes hands configuration to the pod as environment variables (the API
key through a Secret's ``secretKeyRef``), so this module is the one place that
knows their names, defaults and rules. A bad value stops the process before it
connects anywhere: ``exit_on_error`` prints one line naming the variable and
exits 2, so ``kubectl logs`` of a crash-looping pod says what to fix.

Contract (an empty value counts as unset):

==============================  ===============  ====================================
variable                        default          meaning
==============================  ===============  ====================================
TEMPORAL_ADDRESS                127.0.0.1:7233   frontend host:port
TEMPORAL_NAMESPACE              default          Temporal namespace
TEMPORAL_TASK_QUEUE             sample-worker    task queue to poll
TEMPORAL_TLS                    auto             true/false; auto = on when an API
                                                 key or a TLS file is given
TEMPORAL_TLS_SERVER_CA_CERT_PATH (none)          server CA bundle (PEM)
TEMPORAL_TLS_CLIENT_CERT_PATH   (none)           client certificate (mTLS), with
TEMPORAL_TLS_CLIENT_KEY_PATH    (none)           its private key; set both or none
TEMPORAL_TLS_SERVER_NAME        (none)           name the server's certificate must
                                                 carry (SNI), if not the address's host
TEMPORAL_API_KEY                (none)           API key value (Temporal Cloud);
                                                 never logged, never echoed
POD_NAME                        hostname         part of the worker identity
POD_NAMESPACE                   (none)           shown by the health endpoints
BUILD_ID                        dev              image tag or digest; identity
HEALTH_HOST                     0.0.0.0          health server bind address
HEALTH_PORT                     0 (none)         health server port; unset or 0: none
SHUTDOWN_GRACE_SECONDS          25               time in-flight activities get
                                                 after SIGTERM
TEMPORAL_WORKER_BUILD_ID        BUILD_ID         build id; wins over BUILD_ID when
                                                 both are set (the pipeline sets
                                                 the image digest, sha256:<hex>)
TEMPORAL_DEPLOYMENT_NAME        (none)           Worker Deployment of this app, e.g.
                                                 workers/sample-worker
TEMPORAL_USE_WORKER_VERSIONING  false            true/false (also 1/0, yes/no):
                                                 poll as version DEPLOYMENT_NAME +
                                                 build id of that Worker Deployment
==============================  ===============  ====================================

The TLS file variables are temporalio.envconfig's own names, the ones the
pipeline sets for a pod whose [temporal].tls_secret is mounted (and the temporal
CLI reads); the older TEMPORAL_TLS_CA_FILE / _CERT_FILE / _KEY_FILE still work.

Worker versioning (Temporal Worker Deployments): with
TEMPORAL_USE_WORKER_VERSIONING=true the worker polls as the Worker Deployment
Version (TEMPORAL_DEPLOYMENT_NAME, build id) and the server routes to it only
what that version is entitled to (new workflows once it is the deployment's
current version; pinned workflows that started on it). Both names are then
required, and checked against the server's own rules
(temporalio/temporal common/worker_versioning/worker_versioning.go,
ValidateDeploymentVersionFields: a deployment name holds no '.' and no ':',
neither value starts with '__'). Without it, or with false, the worker polls
unversioned exactly as before and only reports its build id.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from temporalio.client import Client
from temporalio.service import TLSConfig

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Temporal rejects build ids longer than this; deployment names are held to the same bound.
_MAX_BUILD_ID = 255
# What the server refuses in a deployment name: the separators of its version strings
# ("<name>.<build>", and ":" in its system workflow ids). "__" starts reserved names.
_DEPLOYMENT_NAME_FORBIDDEN = (".", ":")
_RESERVED_PREFIX = "__"
# The TLS files by envconfig's names (server CA, client certificate, client key), and the names read before them:
# the older names count only when none of envconfig's is set.
_TLS_FILE_VARS = (
    ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_CA_FILE"),
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CERT_FILE"),
    ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_KEY_FILE"),
)


class SettingsError(ValueError):
    """A variable has a value the worker cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the worker, its health server and the starter need."""

    temporal_address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "sample-worker"
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str | None = None
    # repr=False: a logged or printed Settings must never carry the key.
    api_key: str | None = field(default=None, repr=False)
    pod_name: str = field(default_factory=socket.gethostname)
    pod_namespace: str | None = None
    build_id: str = "dev"
    health_host: str = "0.0.0.0"
    health_port: int = 0  # no health server unless a port is given
    shutdown_grace_seconds: float = 25.0
    # Worker Deployment this app belongs to; used only when use_worker_versioning is on.
    deployment_name: str | None = None
    use_worker_versioning: bool = False

    @property
    def identity(self) -> str:
        """Worker identity as shown by `temporal task-queue describe`: which pod, which build."""
        return f"{self.pod_name}@{self.build_id}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment (``os.environ`` by default); raise SettingsError on a bad value."""
    env = {k: v.strip() for k, v in (os.environ if environ is None else environ).items() if v.strip()}

    api_key = env.get("TEMPORAL_API_KEY")
    if api_key is not None and any(c.isspace() for c in api_key):
        # Do not echo the value: it is a credential.
        raise SettingsError("TEMPORAL_API_KEY contains whitespace; check how the Secret was created")

    legacy = not any(name in env for name, _ in _TLS_FILE_VARS)
    ca_var, cert_var, key_var = (older if legacy else name for name, older in _TLS_FILE_VARS)
    ca_file = _existing_file(env, ca_var)
    cert_file = _existing_file(env, cert_var)
    key_file = _existing_file(env, key_var)
    if (cert_file is None) != (key_file is None):
        given = cert_var if cert_file else key_var
        raise SettingsError(f"{cert_var} and {key_var} must be set together (only {given} is set)")

    wants_tls = bool(api_key or ca_file or cert_file)
    tls = _bool(env, "TEMPORAL_TLS", default=wants_tls)
    if not tls and wants_tls:
        reason = "TEMPORAL_API_KEY" if api_key else "TEMPORAL_TLS_* files"
        raise SettingsError(f"TEMPORAL_TLS=false conflicts with {reason}; unset TEMPORAL_TLS or set it to true")

    build_var = "TEMPORAL_WORKER_BUILD_ID" if "TEMPORAL_WORKER_BUILD_ID" in env else "BUILD_ID"
    build_id = env.get(build_var, "dev")
    if len(build_id) > _MAX_BUILD_ID or any(c.isspace() for c in build_id):
        raise SettingsError(f"{build_var} must be at most {_MAX_BUILD_ID} characters without spaces, got {build_id!r}")

    versioning = _bool(env, "TEMPORAL_USE_WORKER_VERSIONING", default=False)
    deployment_name = env.get("TEMPORAL_DEPLOYMENT_NAME")
    if versioning:
        _check_versioning(deployment_name, build_var if build_var in env else None, build_id)

    return Settings(
        temporal_address=_address(env, "TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        namespace=env.get("TEMPORAL_NAMESPACE", "default"),
        task_queue=env.get("TEMPORAL_TASK_QUEUE", "sample-worker"),
        tls=tls,
        tls_ca_file=ca_file,
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        tls_server_name=env.get("TEMPORAL_TLS_SERVER_NAME"),
        api_key=api_key,
        pod_name=env.get("POD_NAME") or socket.gethostname(),
        pod_namespace=env.get("POD_NAMESPACE"),
        build_id=build_id,
        health_host=env.get("HEALTH_HOST", "0.0.0.0"),
        # None by default: the pipeline sets HEALTH_PORT only for an app that declares health_port, and a
        # fixed default port would collide between pods sharing a host network.
        health_port=_port(env, "HEALTH_PORT", 0, allow_zero=True),
        shutdown_grace_seconds=_seconds(env, "SHUTDOWN_GRACE_SECONDS", 25.0),
        deployment_name=deployment_name,
        use_worker_versioning=versioning,
    )


def _check_versioning(deployment_name: str | None, build_var: str | None, build_id: str) -> None:
    """Versioning on: both halves of the Worker Deployment Version given, in a form the server accepts."""
    if deployment_name is None:
        raise SettingsError("TEMPORAL_USE_WORKER_VERSIONING=true needs TEMPORAL_DEPLOYMENT_NAME, which is not set")
    if build_var is None:
        raise SettingsError("TEMPORAL_USE_WORKER_VERSIONING=true needs TEMPORAL_WORKER_BUILD_ID (or BUILD_ID), neither is set")
    if (
        len(deployment_name) > _MAX_BUILD_ID
        or any(c.isspace() or c in _DEPLOYMENT_NAME_FORBIDDEN for c in deployment_name)
        or deployment_name.startswith(_RESERVED_PREFIX)
    ):
        raise SettingsError(
            f"TEMPORAL_DEPLOYMENT_NAME must be at most {_MAX_BUILD_ID} characters without spaces, '.' or ':'"
            f" and must not start with '__', got {deployment_name!r}"
        )
    if build_id.startswith(_RESERVED_PREFIX):
        raise SettingsError(f"{build_var} must not start with '__' when worker versioning is on, got {build_id!r}")


def load_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """Entry-point variant: one line on stderr and exit 2 instead of a traceback."""
    try:
        return load_settings(environ)
    except SettingsError as err:
        exit_on_error(err)


def exit_on_error(err: SettingsError) -> NoReturn:
    print(f"sample-worker: configuration error: {err}", file=sys.stderr)
    raise SystemExit(2)


async def connect(settings: Settings, *, identity: str | None = None) -> Client:
    """Connect the way the settings say: plain, TLS, mTLS, or API key (which implies TLS)."""
    tls: bool | TLSConfig = settings.tls
    if settings.tls and (settings.tls_ca_file or settings.tls_cert_file or settings.tls_server_name):
        tls = TLSConfig(
            domain=settings.tls_server_name,
            server_root_ca_cert=settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None,
            client_cert=settings.tls_cert_file.read_bytes() if settings.tls_cert_file else None,
            client_private_key=settings.tls_key_file.read_bytes() if settings.tls_key_file else None,
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=tls,
        identity=identity,
    )


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _port(env: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    low = 0 if allow_zero else 1
    if not raw.isdigit() or not low <= int(raw) <= 65535:
        raise SettingsError(f"{name} must be a port number from {low} to 65535, got {raw!r}")
    return int(raw)


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, default)
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingsError(f"{name} must be host:port (for example 127.0.0.1:7233), got {raw!r}")
    return raw


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise SettingsError(f"{name} must be a non-negative number of seconds, got {raw!r}")
    return value


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name} points to {raw!r}, which is not a readable file")
    return path
