"""The typed shape of every served kind: field names, list merge keys, unknown-field checks.

One source of truth for three consumers: OpenAPI (what kubectl reads for
`explain` and validation), strategic merge patch and server-side apply (which
lists are maps keyed by which fields), and `fieldValidation` (which fields a
kind does not declare). The definitions come from `schemas.json` (see
`schemagen.py`); the list semantics from `LISTS`, copied from Kubernetes'
`x-kubernetes-patch-merge-key` / `x-kubernetes-list-map-keys` annotations.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.cluster.resources import ResourceType

Schema = dict[str, Any]


@dataclass(frozen=True)
class ListType:
    """How a list field merges: `map` lists by `keys` (SSA) and `merge_key` (SMP), `set` lists by value."""

    kind: str  # "map", "set" or "atomic"
    keys: tuple[str, ...] = ()
    merge_key: str = ""
    key_defaults: dict[str, Any] = field(default_factory=dict)


def _map(*keys: str, defaults: dict[str, Any] | None = None) -> ListType:
    return ListType("map", keys, keys[0], defaults or {})


_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."

LISTS: dict[tuple[str, str], ListType] = {
    (_CORE + "PodSpec", "containers"): _map("name"),
    (_CORE + "PodSpec", "initContainers"): _map("name"),
    (_CORE + "PodSpec", "ephemeralContainers"): _map("name"),
    (_CORE + "PodSpec", "volumes"): _map("name"),
    (_CORE + "PodSpec", "imagePullSecrets"): _map("name"),
    (_CORE + "PodSpec", "hostAliases"): _map("ip"),
    (_CORE + "PodSpec", "resourceClaims"): _map("name"),
    (_CORE + "PodSpec", "schedulingGates"): _map("name"),
    (_CORE + "Container", "env"): _map("name"),
    (_CORE + "Container", "ports"): _map("containerPort", "protocol", defaults={"protocol": "TCP"}),
    (_CORE + "Container", "volumeMounts"): _map("mountPath"),
    (_CORE + "Container", "volumeDevices"): _map("devicePath"),
    (_CORE + "EphemeralContainer", "env"): _map("name"),
    (_CORE + "EphemeralContainer", "volumeMounts"): _map("mountPath"),
    (_CORE + "ServiceSpec", "ports"): _map("port", "protocol", defaults={"protocol": "TCP"}),
    (_CORE + "ServiceAccount", "secrets"): _map("name"),
    (_CORE + "PodStatus", "conditions"): _map("type"),
    (_CORE + "NamespaceStatus", "conditions"): _map("type"),
    (_CORE + "NodeStatus", "conditions"): _map("type"),
    (_CORE + "NodeStatus", "addresses"): _map("type"),
    (_APPS + "DeploymentStatus", "conditions"): _map("type"),
    (_APPS + "ReplicaSetStatus", "conditions"): _map("type"),
    ("io.k8s.api.batch.v1.JobStatus", "conditions"): _map("type"),
    (_META + "ObjectMeta", "ownerReferences"): _map("uid"),
    (_META + "ObjectMeta", "finalizers"): ListType("set"),
}
ATOMIC = ListType("atomic")

_FILE = Path(__file__).with_name("schemas.json")


@functools.cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_FILE.read_text())
    for (definition, prop), lt in LISTS.items():
        schema = loaded["definitions"].get(definition, {}).get("properties", {}).get(prop)
        if schema is None:
            continue
        if lt.kind == "map":
            schema["x-kubernetes-patch-merge-key"] = lt.merge_key
            schema["x-kubernetes-patch-strategy"] = "merge"
            schema["x-kubernetes-list-type"] = "map"
            schema["x-kubernetes-list-map-keys"] = list(lt.keys)
        elif lt.kind == "set":
            schema["x-kubernetes-patch-strategy"] = "merge"
            schema["x-kubernetes-list-type"] = "set"
    return loaded


def definitions() -> dict[str, Schema]:
    """OpenAPI v2 definitions (refs as `#/definitions/<name>`)."""
    result: dict[str, Schema] = _document()["definitions"]
    return result


def root_name(res: ResourceType) -> str:
    return str(_document()["roots"][f"{res.api_version}/{res.kind}"])


@dataclass(frozen=True)
class Node:
    """A position in a schema: the definition it belongs to (for list lookups) and its own schema."""

    definition: str
    schema: Schema

    def child(self, name: str) -> Node | None:
        """The schema of property or map value `name`; None when the field is not declared."""
        props = self.schema.get("properties")
        if props is not None:
            sub = props.get(name)
            return _resolve(self.definition, sub) if sub is not None else None
        extra = self.schema.get("additionalProperties")
        if extra is not None:
            return _resolve(self.definition, extra)
        if self.schema.get("x-kubernetes-preserve-unknown-fields") or self.is_free_form:
            return FREE
        return None

    def items(self) -> Node:
        return _resolve(self.definition, self.schema.get("items") or {})

    def list_type(self, name: str) -> ListType:
        return LISTS.get((self.definition, name), ATOMIC)

    @property
    def is_free_form(self) -> bool:
        return (
            self.schema.get("type") == "object" and "properties" not in self.schema and "additionalProperties" not in self.schema
        )

    @property
    def is_map_of_values(self) -> bool:
        return "additionalProperties" in self.schema


FREE = Node("", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})


def _resolve(definition: str, sub: Schema) -> Node:
    ref = sub.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return Node(name, definitions()[name])
    return Node(definition, sub)


def root(res: ResourceType) -> Node:
    name = root_name(res)
    return Node(name, definitions()[name])


def unknown_fields(obj: Any, node: Node, path: str = "") -> list[str]:
    """Dotted paths (`spec.template.spec.containers[0].foo`) of fields the schema does not declare."""
    found: list[str] = []
    if isinstance(obj, dict) and node.schema.get("type") == "object" and not node.is_free_form:
        for key, value in obj.items():
            child = node.child(key)
            here = f"{path}.{key}" if path else key
            if child is None:
                found.append(here)
            elif value is not None:
                found.extend(unknown_fields(value, child, here))
    elif isinstance(obj, list) and node.schema.get("type") == "array":
        items = node.items()
        for i, value in enumerate(obj):
            found.extend(unknown_fields(value, items, f"{path}[{i}]"))
    return found


def prune(obj: Any, node: Node) -> Any:
    """A copy of `obj` without undeclared fields, as the API server drops them when decoding."""
    if isinstance(obj, dict) and node.schema.get("type") == "object" and not node.is_free_form:
        out = {}
        for key, value in obj.items():
            child = node.child(key)
            if child is not None:
                out[key] = prune(value, child) if value is not None else value
        return out
    if isinstance(obj, list) and node.schema.get("type") == "array":
        items = node.items()
        return [prune(v, items) for v in obj]
    return obj
