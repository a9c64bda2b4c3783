"""`pipeline bootstrap`: the Kubernetes Secrets that give deployed pods their Temporal credentials.

What the user names, never the values:

    [temporal].api_key_secret = "name/key"   filled from the variable [temporal].api_key_env names
                                             (TEMPORAL_API_KEY sets it), or from the selected profile's api_key
    [temporal].tls_secret = "name"           a kubernetes.io/tls Secret: tls.crt and tls.key from
                                             [temporal].tls_client_cert_path / tls_client_key_path, and
                                             ca.crt from tls_server_ca_cert_path when one is set

Observed state -> a pure plan (`plan`) -> a thin executor (`apply`). Each Secret is
written (server-side apply, labelled as the pipeline's) when this process has the
values; kept when it does not but the Secret already holds the keys; else it is
missing, and the plan says the exact command that makes it. Values are read
in `apply` only, go to the API server only, and never into a message.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline import kube
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.inputs import temporal_target
from pipeline.render import MANAGED_BY, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY, namespace as namespace_object
from pipeline.temporal_client import CLIENT_CERT, CLIENT_KEY, SERVER_CA, api_key_from_env, read_tls_file

Action = Literal["write", "keep", "missing"]


@dataclass(frozen=True)
class SecretPlan:
    """One Secret: what bootstrap does with it, and why, in words without values."""

    name: str
    namespace: str
    kind: Literal["api-key", "tls"]
    action: Action
    keys: tuple[str, ...]
    source: str  # where the values come from ("$TEMPORAL_API_KEY", "/path/client.pem, /path/client.key")
    fix: str = ""  # for "missing": the command that makes it


def plan(config: PipelineConfig, *, existing: Mapping[str, frozenset[str]], env: Mapping[str, str]) -> list[SecretPlan]:
    """`existing`: Secret name -> its key names, in [kubernetes].namespace. Pure: reads no file and no value."""
    t = config.temporal
    ns = config.kubernetes.namespace
    out: list[SecretPlan] = []
    if t.api_key_secret:
        name, key = t.api_key_secret.split("/", 1)
        if t.api_key_env:
            source, available = f"${t.api_key_env}", bool(env.get(t.api_key_env))
        elif t.profile or t.config_file:
            source, available = f'profile "{t.profile or "default"}"', True  # read (and checked) in apply
        else:
            source, available = "", False
        out.append(
            _decide(
                name,
                ns,
                "api-key",
                (key,),
                source,
                available,
                existing,
                fix=(
                    f"export {t.api_key_env or 'TEMPORAL_API_KEY'}=<the API key> and run `pipeline bootstrap` again, or "
                    f"`kubectl create secret generic {name} -n {ns} --from-literal={key}=<the API key>`"
                ),
            )
        )
    if t.tls_secret:
        keys = (TLS_CERT_KEY, TLS_KEY_KEY) + ((TLS_CA_KEY,) if t.tls_server_ca_cert_path else ())
        files = [p for p in (t.tls_client_cert_path, t.tls_client_key_path, t.tls_server_ca_cert_path) if p]
        ca_file = f" --from-file={TLS_CA_KEY}=<ca.pem>" if t.tls_server_ca_cert_path else ""
        out.append(
            _decide(
                t.tls_secret,
                ns,
                "tls",
                keys,
                ", ".join(files),
                bool(t.tls_client_cert_path and t.tls_client_key_path),
                existing,
                fix=(
                    "set [temporal].tls_client_cert_path and tls_client_key_path (TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH) "
                    f"and run `pipeline bootstrap` again, or `kubectl create secret generic {t.tls_secret} -n {ns} "
                    f"--type=kubernetes.io/tls --from-file={TLS_CERT_KEY}=<client.pem> --from-file={TLS_KEY_KEY}=<client.key>{ca_file}`"
                ),
            )
        )
    return out


def _decide(
    name: str,
    ns: str,
    kind: Literal["api-key", "tls"],
    keys: tuple[str, ...],
    source: str,
    available: bool,
    existing: Mapping[str, frozenset[str]],
    *,
    fix: str,
) -> SecretPlan:
    if available:
        return SecretPlan(name, ns, kind, "write", keys, source)
    if name in existing and set(keys) <= existing[name]:
        return SecretPlan(name, ns, kind, "keep", keys, source)
    return SecretPlan(name, ns, kind, "missing", keys, source, fix=fix)


def describe(p: SecretPlan) -> str:
    """One line for the user: never a value."""
    where = f"Secret {p.namespace}/{p.name}"
    keys = ", ".join(p.keys)
    if p.action == "write":
        return f"{where}: {keys} written from {p.source} (values not shown)"
    if p.action == "keep":
        return f"{where}: has {keys}; kept (nothing here to write it from)"
    return f"{where} is missing {keys}: {p.fix}"


def secret_object(p: SecretPlan, config: PipelineConfig, env: Mapping[str, str]) -> dict[str, object]:
    """The Secret with its values, read here (from the variable, profile or files) and nowhere else."""
    t = config.temporal
    data: dict[str, bytes]
    if p.kind == "api-key":
        key = api_key_from_env(temporal_target(config), env)
        if not key:
            raise PipelineError(f"Secret {p.namespace}/{p.name}: {p.source} holds no API key; {p.fix}")
        data = {p.keys[0]: key.encode()}
        kind = "Opaque"
    else:
        data = {
            TLS_CERT_KEY: read_tls_file(t.tls_client_cert_path, CLIENT_CERT),
            TLS_KEY_KEY: read_tls_file(t.tls_client_key_path, CLIENT_KEY),
        }
        if t.tls_server_ca_cert_path:
            data[TLS_CA_KEY] = read_tls_file(t.tls_server_ca_cert_path, SERVER_CA)
        kind = "kubernetes.io/tls"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def existing_keys(kc: kube.KubeClient, *, namespace: str, names: list[str]) -> dict[str, frozenset[str]]:
    """Secret name -> its key names (the values are dropped at once)."""
    out: dict[str, frozenset[str]] = {}
    for name in names:
        secret = kube.get_object(kc, api_version="v1", kind="Secret", namespace=namespace, name=name)
        if secret is not None:
            out[name] = frozenset(str(k) for k in (secret.get("data") or {}))
        del secret
    return out


def ensure(kc: kube.KubeClient, config: PipelineConfig, *, env: Mapping[str, str], say: Callable[[str], None]) -> bool:
    """Write or check the Secrets [temporal] names; False when one is missing (its fix was said)."""
    t = config.temporal
    names = [n for n in (t.api_key_secret.split("/", 1)[0] if t.api_key_secret else "", t.tls_secret) if n]
    if not names:
        return True
    ns = config.kubernetes.namespace
    plans = plan(config, existing=existing_keys(kc, namespace=ns, names=names), env=env)
    writes = [p for p in plans if p.action == "write"]
    if writes:
        objects = [secret_object(p, config, env) for p in writes]  # every file checked before anything is written
        kube.server_side_apply(kc, [namespace_object(name=ns)], field_manager=kube.FIELD_MANAGER, force=True)
        kube.server_side_apply(kc, objects, field_manager=kube.FIELD_MANAGER, force=True)
        del objects
    for p in plans:
        say(describe(p))
    return all(p.action != "missing" for p in plans)
