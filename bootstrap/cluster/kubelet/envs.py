"""A container's environment, as kubelet builds it: envFrom, env, valueFrom and `$(VAR)` expansion.

Order and precedence follow Kubernetes: envFrom sources in order (later wins),
then `env` entries (which win over envFrom); a value may reference variables
defined before it as `$(NAME)`, `$$` escapes a dollar, and an unknown
reference stays as written. A missing ConfigMap, Secret or key that is not
optional is an EnvError, which the kubelet reports as CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any

from bootstrap.cluster.kubelet.quantity import parse_quantity
from bootstrap.cluster.resources import CONFIGMAPS, SECRETS
from bootstrap.cluster.store import Obj, Store

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class EnvError(Exception):
    """The environment cannot be built; the message is kubelet's."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion.MappingFuncFor: `$(VAR)` from env, `$$` -> `$`, unknown references untouched."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REF.sub(repl, text)


def _config_data(store: Store, res: Any, namespace: str, name: str, *, optional: bool) -> dict[str, str] | None:
    obj = store.try_get(res, namespace, name)
    if obj is None:
        if optional:
            return None
        kind = "configmap" if res is CONFIGMAPS else "secret"
        raise EnvError(f'{kind} "{name}" not found')
    if res is SECRETS:
        data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
        return data
    data = dict(obj.get("data") or {})
    data.update({k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _field_ref(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    status = pod.get("status") or {}
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(ip.get("ip", "") for ip in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(ip.get("ip", "") for ip in status.get("hostIPs") or []),
    }
    if path not in values:
        raise EnvError(f"unsupported fieldRef fieldPath: {path}")
    return str(values[path])


def _resource_field_ref(container: Obj, ref: Mapping[str, Any], node_cpus: int, node_memory: int) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    default = node_cpus if name == "cpu" else node_memory
    value = parse_quantity(raw) if raw is not None else float(default)
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(value / divisor)) if divisor else str(value)


def build_env(store: Store, pod: Obj, container: Obj, *, node_cpus: int, node_memory: int) -> dict[str, str]:
    """The container's final environment, in Kubernetes' precedence order."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = _config_data(store, CONFIGMAPS, namespace, ref.get("name", ""), optional=bool(ref.get("optional")))
        else:
            ref = source.get("secretRef") or {}
            data = _config_data(store, SECRETS, namespace, ref.get("name", ""), optional=bool(ref.get("optional")))
        for key, value in (data or {}).items():
            env[prefix + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        value_from = item["valueFrom"]
        if "fieldRef" in value_from:
            env[name] = _field_ref(pod, value_from["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in value_from:
            env[name] = _resource_field_ref(container, value_from["resourceFieldRef"], node_cpus, node_memory)
        else:
            is_cm = "configMapKeyRef" in value_from
            ref = value_from.get("configMapKeyRef") or value_from.get("secretKeyRef") or {}
            optional = bool(ref.get("optional"))
            data = _config_data(store, CONFIGMAPS if is_cm else SECRETS, namespace, ref.get("name", ""), optional=optional)
            key = ref.get("key", "")
            if data is None:
                continue
            if key not in data:
                if optional:
                    continue
                kind = "ConfigMap" if is_cm else "Secret"
                raise EnvError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')}")
            env[name] = data[key]
    return env
