"""OpenAPI v2 and v3 documents, built once from `schema.definitions()` and served as cached bytes.

kubectl reads OpenAPI v3 (`/openapi/v3` then one document per group version)
for `explain`, for client-side validation and to learn that the server supports
the `fieldValidation` parameter (a schema carrying the kind's
`x-kubernetes-group-version-kind`); v2 is served as JSON for older clients
(kubectl asks for v2 as protobuf, which this server does not speak, and then
lives without it).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from bootstrap.cluster import schema
from bootstrap.cluster.resources import ALL, ResourceType

_INFO = {"title": "Kubernetes", "version": "v1.32.0"}


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite_refs(v) for k, v in value.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            out["$ref"] = ref.replace("#/definitions/", "#/components/schemas/")
            if len(out) > 1:  # OpenAPI 3.0 ignores siblings of $ref: kube wraps them in allOf
                return {"allOf": [{"$ref": out.pop("$ref")}], **out}
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value


def _base_path(res: ResourceType) -> str:
    prefix = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    return f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"


_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _operation(res: ResourceType, action: str, ref: str, body: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{action}{res.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "parameters": [{"name": q, "in": "query", "schema": {"type": "string"}, "uniqueItems": True} for q in _QUERY],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}},
    }
    if body:
        op["requestBody"] = {"content": {"*/*": {"schema": {"$ref": ref}}}}
    return op


def _paths(resources: list[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for res in resources:
        ref = "#/components/schemas/" + schema.root_name(res)
        base = _base_path(res)
        paths[base] = {"post": _operation(res, "post", ref, True), "get": _operation(res, "list", ref, False)}
        paths[base + "/{name}"] = {
            "get": _operation(res, "get", ref, False),
            "put": _operation(res, "put", ref, True),
            "patch": _operation(res, "patch", ref, True),
            "delete": _operation(res, "delete", ref, False),
        }
    return paths


def _gv_key(res: ResourceType) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


@functools.cache
def _v3_documents() -> dict[str, bytes]:
    schemas = _rewrite_refs(schema.definitions())
    by_gv: dict[str, list[ResourceType]] = {}
    for res in ALL:
        by_gv.setdefault(_gv_key(res), []).append(res)
    docs: dict[str, bytes] = {}
    for key, resources in by_gv.items():
        doc = {"openapi": "3.0.0", "info": _INFO, "paths": _paths(resources), "components": {"schemas": schemas}}
        docs[key] = json.dumps(doc, separators=(",", ":")).encode()
    return docs


def v3_root() -> dict[str, Any]:
    """`/openapi/v3`: one entry per group version with a content-hash URL (clients cache by it)."""
    paths = {}
    for key, body in _v3_documents().items():
        digest = hashlib.sha512(body).hexdigest()[:64].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def v3_document(key: str) -> bytes | None:
    return _v3_documents().get(key)


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _pb_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2); payloads here are < 128 bytes."""
    assert len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


@functools.cache
def v2_protobuf() -> bytes:
    """A schema-less OpenAPI v2 document in gnostic's protobuf encoding.

    kubectl downloads v2 (protobuf only) when a manifest names a kind OpenAPI v3
    does not know; an empty document lets it skip client-side validation and
    report the unknown kind itself, as it does against a real API server.
    """
    info = _pb_field(1, _INFO["title"].encode()) + _pb_field(2, _INFO["version"].encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info) + _pb_field(8, b"") + _pb_field(9, b"")


@functools.cache
def v2_document() -> bytes:
    paths = {
        path: {verb: {k: v for k, v in op.items() if k not in ("requestBody",)} for verb, op in ops.items()}
        for path, ops in _paths(list(ALL)).items()
    }
    doc = {
        "swagger": "2.0",
        "info": _INFO,
        "paths": json.loads(json.dumps(paths).replace("#/components/schemas/", "#/definitions/")),
        "definitions": schema.definitions(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()
