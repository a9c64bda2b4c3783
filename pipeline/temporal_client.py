"""Connecting to Temporal with credentials that are looked up, never passed around.

Config and workflow inputs carry only references: `api_key_env`, the *name*
of the environment variable holding the API key (or the envconfig profile
holding it), and the *paths* of the TLS files. The values are read here, in
the process that connects, and go nowhere else: not into a workflow's input,
result or history, not into a log line or an error message.

Which setting wins when several places set it (TEMPORAL_* variables, the
selected temporalio.envconfig profile, config.toml's [temporal]) is decided
once, when the configuration is loaded: see pipeline/config/_profile.py.

A pipeline worker connects for its activities with its *own* credentials
(`use_own_credentials`, called by `run_worker`): the request names the
Temporal address and namespace, but the CLI's certificate paths or key
variable mean nothing inside a pod, which has its own (mounted from a Secret).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.service import TLSConfig

from pipeline.errors import (
    PipelineError,
    TemporalUnreachable,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
)
from pipeline.models import TemporalTarget

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` that lets the SDK's native bridge wind down before the interpreter does.

    Seen here with temporalio 1.35: a process that made a Client sometimes
    aborted at exit ("Fatal Python error: PyGILState_Release ... finalizing")
    because the Rust bridge called back into Python during finalization.
    Freeing the client's cycles and yielding once more while the loop is alive
    avoids it (the sample worker does the same for the same reason).
    """

    async def wrapped() -> T:
        try:
            return await coro
        finally:
            gc.collect()
            await asyncio.sleep(0.1)

    return asyncio.run(wrapped())


# The credentials of the pipeline worker running in this process (None: use each target's own).
_own: TemporalTarget | None = None


def use_own_credentials(target: TemporalTarget | None) -> None:
    """From now on `connect` authenticates with `target`'s API key and TLS files, whatever target it is given."""
    global _own
    _own = target


def api_key_from_env(target: TemporalTarget, env: Mapping[str, str] | None = None) -> str | None:
    """The API key `target` refers to: the variable api_key_env names, else the selected profile's, else None."""
    env = os.environ if env is None else env
    if not target.api_key_env:
        return _profile_api_key(target, env)
    value = env.get(target.api_key_env, "")
    if not value:
        raise PipelineError(f"[temporal].api_key_env names {target.api_key_env}, but that environment variable is empty or unset")
    return value


def _profile_api_key(target: TemporalTarget, env: Mapping[str, str]) -> str | None:
    if not (target.profile or target.config_file):
        return None
    from pipeline.config import load_profile  # not at the top: pipeline.config is not needed by most connects

    try:
        found, _ = load_profile(target.profile, target.config_file, env)
    except ValueError as error:
        raise PipelineError(f"[temporal].profile: {error}") from None
    return found.api_key if found is not None and found.api_key else None


@dataclass(frozen=True)
class _File:
    """One TLS file: the [temporal] key and envconfig variable that name it, for the message."""

    key: str
    variable: str
    what: str


CLIENT_CERT = _File("tls_client_cert_path", "TEMPORAL_TLS_CLIENT_CERT_PATH", "client certificate")
CLIENT_KEY = _File("tls_client_key_path", "TEMPORAL_TLS_CLIENT_KEY_PATH", "client key")
SERVER_CA = _File("tls_server_ca_cert_path", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "server CA certificate")


def read_tls_file(path: str, file: _File) -> bytes:
    """The PEM bytes at `path`, or a one-line PipelineError naming the file and the setting (never its content)."""
    where = f"[temporal].{file.key} / {file.variable}"
    try:
        data = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a directory"
    except PermissionError:
        problem = "cannot be read (permission denied)"
    except OSError as error:
        problem = f"cannot be read ({error.strerror or type(error).__name__})"
    else:
        if b"-----BEGIN " in data:
            return data
        problem = "is not a PEM file (no -----BEGIN line)"
    raise PipelineError(f"the Temporal {file.what} {path} ({where}) {problem}")


def tls_setting(target: TemporalTarget, *, api_key: str | None) -> bool | TLSConfig:
    """What Client.connect's `tls` gets: False, True (system CAs), or a TLSConfig with the files read.

    TLS is on when [temporal].tls says so, or an API key or a client certificate is given:
    neither is ever sent in plain text.
    """
    if bool(target.tls_client_cert_path) != bool(target.tls_client_key_path):
        raise PipelineError(
            "a Temporal client certificate needs its key and the key its certificate: set both "
            "[temporal].tls_client_cert_path and tls_client_key_path (TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH)"
        )
    files = target.tls_client_cert_path or target.tls_server_ca_cert_path
    if not (target.tls or api_key or files or target.tls_server_name):
        return False
    if not (files or target.tls_server_name):
        return True
    return TLSConfig(
        domain=target.tls_server_name or None,
        server_root_ca_cert=read_tls_file(target.tls_server_ca_cert_path, SERVER_CA) if target.tls_server_ca_cert_path else None,
        client_cert=read_tls_file(target.tls_client_cert_path, CLIENT_CERT) if target.tls_client_cert_path else None,
        client_private_key=read_tls_file(target.tls_client_key_path, CLIENT_KEY) if target.tls_client_key_path else None,
    )


async def connect(target: TemporalTarget, *, identity: str | None = None) -> Client:
    """A client of `target`'s address and namespace, authenticated as this process may (see the module doc)."""
    creds = _own or target
    api_key = api_key_from_env(creds)
    tls = tls_setting(creds, api_key=api_key)
    try:
        return await Client.connect(
            target.address,
            namespace=target.namespace,
            api_key=api_key,
            tls=tls,
            identity=identity,
        )
    except RuntimeError as exc:  # the SDK's error for every connect failure
        raise TemporalUnreachable(
            f"cannot reach Temporal at {target.address} (namespace {target.namespace}): {_one_line(str(exc))}"
            + _hint(str(exc), creds, tls)
        ) from exc


def _hint(message: str, creds: TemporalTarget, tls: bool | TLSConfig) -> str:
    """What to check when the failure may come from TLS (a server that demands a client certificate closes
    the connection after the handshake, so the SDK may say no more than "connection closed")."""
    lower = message.lower()
    if any(word in lower for word in ("connection refused", "dns error", "failed to lookup", "name or service not known")):
        return ""
    tls_words = ("tls", "certificate", "handshake", "ssl", "alert", "invalidcontenttype")
    if tls is False:
        return (
            "; the server may want TLS: set [temporal].tls = true (TEMPORAL_TLS=true)"
            if any(w in lower for w in tls_words)
            else ""
        )
    if not creds.tls_client_cert_path:
        return (
            "; if the server demands a client certificate (mTLS), name it and its key with "
            "[temporal].tls_client_cert_path / tls_client_key_path (TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH)"
        )
    return "; check that the server accepts this client certificate and that the server CA and name match"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
