"""Generate `schemas.json`, the OpenAPI definitions of the kinds the cluster serves.

Run `python -m bootstrap.cluster.schemagen` after changing `resources.ALL` or
upgrading the `kubernetes` client. The models of the official Python client
carry every field's JSON name, type, required flag and description, so the
generated definitions match Kubernetes without vendoring its 3 MB OpenAPI
document; the API server loads the small JSON at start instead of importing
the client (which would cost ~40 MB of resident memory).

Patch and list metadata (`x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
...) are not in the client models; they come from `LIST_KEYS` in `schema.py`,
the same table strategic merge patch and server-side apply use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bootstrap.cluster.resources import ALL, ResourceType

OUTPUT = Path(__file__).with_name("schemas.json")

_META = {
    "ObjectMeta",
    "ListMeta",
    "LabelSelector",
    "LabelSelectorRequirement",
    "OwnerReference",
    "ManagedFieldsEntry",
    "Status",
    "StatusDetails",
    "StatusCause",
    "DeleteOptions",
    "Preconditions",
    "Condition",
    "MicroTime",
    "Time",
}
_PKG = {
    "": "core",
    "apps": "apps",
    "batch": "batch",
    "rbac.authorization.k8s.io": "rbac",
    "coordination.k8s.io": "coordination",
    "policy": "policy",
    "autoscaling": "autoscaling",
}
_ROOT_CLASS = {"Event": "CoreV1Event"}
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytearray": {"type": "string", "format": "byte"},
    "bytes": {"type": "string", "format": "byte"},
}
# Fields whose Python type is `object`: int-or-string ports and percentages, else free-form.
_INT_OR_STRING = {"port", "targetPort", "maxSurge", "maxUnavailable"}


def _bare(class_name: str) -> str:
    return re.sub(r"^(CoreV1|RbacV1|V\d+(?:alpha\d+|beta\d+)?)", "", class_name)


def _definition_name(class_name: str, group: str) -> str:
    bare = _bare(class_name)
    if bare in _META:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{bare}"
    version = re.match(r"^V(\d+)(?!alpha|beta)[A-Z]", class_name)  # autoscaling/v2's V2...; alpha/beta kept as v1
    return f"io.k8s.api.{_PKG[group]}.v{version.group(1) if version else '1'}.{bare}"


def generate() -> dict[str, Any]:
    """Walk the client models from every served kind and return {definitions, roots}."""
    import kubernetes.client.models as models

    definitions: dict[str, Any] = {}
    names: dict[str, str] = {}

    def type_schema(py_type: str, json_name: str, group: str) -> dict[str, Any]:
        if py_type in _PRIMITIVES:
            return dict(_PRIMITIVES[py_type])
        if py_type == "object":
            if json_name in _INT_OR_STRING:
                return {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True}
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        m = re.fullmatch(r"[Ll]ist\[(.+)\]", py_type)
        if m:
            return {"type": "array", "items": type_schema(m.group(1), json_name, group)}
        m = re.fullmatch(r"[Dd]ict[\[(](\w+), (.+)[\])]", py_type)
        if m:
            return {"type": "object", "additionalProperties": type_schema(m.group(2), json_name, group)}
        return {"$ref": "#/definitions/" + visit(py_type, group)}

    def visit(class_name: str, group: str) -> str:
        if class_name in names:
            return names[class_name]
        name = _definition_name(class_name, group)
        names[class_name] = name
        cls = getattr(models, class_name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].strip()
        schema: dict[str, Any] = {"description": doc, "type": "object", "properties": {}}
        required = []
        for attr, py_type in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            prop = type_schema(py_type, json_name, group)
            field = cls.model_fields.get(attr)
            if field is not None:
                if field.description:
                    prop["description"] = field.description
                if field.is_required():
                    required.append(json_name)
            schema["properties"][json_name] = prop
        if required:
            schema["required"] = required
        definitions[name] = schema
        return name

    roots: dict[str, str] = {}
    for res in ALL:
        class_name = _ROOT_CLASS.get(res.kind, f"{res.version.upper()}{res.kind}")
        name = visit(class_name, res.group)
        definitions[name]["x-kubernetes-group-version-kind"] = [{"group": res.group, "version": res.version, "kind": res.kind}]
        roots[_root_key(res)] = name
        list_name = visit(class_name.replace(res.kind, res.list_kind) if res.kind != "Event" else "CoreV1EventList", res.group)
        definitions[list_name]["x-kubernetes-group-version-kind"] = [
            {"group": res.group, "version": res.version, "kind": res.list_kind}
        ]
    for extra in ("V1Scale", "V1Status", "V1DeleteOptions", "V1APIResourceList"):
        visit(extra, "" if extra != "V1Scale" else "apps")
    scale = definitions[names["V1Scale"]]
    scale["x-kubernetes-group-version-kind"] = [{"group": "autoscaling", "version": "v1", "kind": "Scale"}]
    return {"definitions": dict(sorted(definitions.items())), "roots": roots}


def _root_key(res: ResourceType) -> str:
    return f"{res.api_version}/{res.kind}"


def main() -> None:
    OUTPUT.write_text(json.dumps(generate(), separators=(",", ":"), sort_keys=False))
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
