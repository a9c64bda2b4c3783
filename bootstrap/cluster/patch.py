"""The three non-apply PATCH flavours of the Kubernetes API, applied to plain JSON objects.

- JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge,
  `null` deletes, lists replace.
- JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace,
  move, copy, test over JSON pointers.
- Strategic merge patch (`application/strategic-merge-patch+json`): a merge
  patch where the lists Kubernetes declares as keyed (containers, env, ports,
  volumes, ...; see `schema.LISTS`) merge item by item on their merge key, and
  the directives `$patch: delete|replace|merge` on maps and list items,
  `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured
  (`$retainKeys` is accepted and ignored).

Every function returns a new object and never mutates its inputs. Malformed
patches raise `ApiError` 400 (or 422 for a failed `test`), as the API does.
"""

from __future__ import annotations

import copy
from typing import Any

from bootstrap.cluster import errors
from bootstrap.cluster.schema import ATOMIC, FREE, Node

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


# ----- RFC 7386 -----


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: recursive map merge; `null` removes a key; anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ----- RFC 6902 -----


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"invalid JSON pointer {path!r}: must start with '/'")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    try:
        i = int(token)
    except ValueError:
        raise errors.bad_request(f"invalid array index {token!r}") from None
    limit = len(container) if for_add else len(container) - 1
    if i < 0 or i > limit:
        raise errors.bad_request(f"array index {i} out of bounds")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise errors.bad_request(f"json patch: path {path!r} does not exist")
    return node


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise errors.bad_request(f"json patch: path {path!r} does not exist")
    return node


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise errors.bad_request("json patch: cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise errors.bad_request(f"json patch: path {path!r} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise errors.bad_request(f"json patch: path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise errors.bad_request(f"json patch: path {path!r} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, for_add=False)] = value
        else:
            parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise errors.bad_request(f"json patch: path {path!r} does not exist")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 over a copy of `target`."""
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise errors.bad_request(f"json patch {kind} at {path!r} needs a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
        elif kind == "move":
            value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise errors.ApiError(422, "Invalid", f"json patch test failed at {path!r}")
        else:
            raise errors.bad_request(f"json patch: unknown operation {kind!r}")
    return doc


# ----- strategic merge patch -----


def strategic_merge_patch(target: Any, patch: Any, node: Node) -> Any:
    """Merge `patch` into `target`, merging keyed lists by their Kubernetes merge key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _smp_map(target if isinstance(target, dict) else {}, patch, node)


def _smp_map(target: dict[str, Any], patch: dict[str, Any], node: Node) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        child = node.child(key) or FREE
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                existing = result.get(key)
                result[key] = _smp_map(existing if isinstance(existing, dict) else {}, value, child)
        elif isinstance(value, list):
            lt = node.list_type(key) if node is not FREE else ATOMIC
            existing = result.get(key)
            current = existing if isinstance(existing, list) else []
            result[key] = _smp_list(current, value, lt.kind, lt.merge_key, child.items())
        else:
            result[key] = value
    for name, order in orders.items():
        lt = node.list_type(name)
        if isinstance(result.get(name), list) and lt.kind == "map":
            result[name] = _reorder(result[name], order, lt.merge_key)
    return result


def _smp_list(current: list[Any], patch: list[Any], kind: str, merge_key: str, items: Node) -> list[Any]:
    if kind == "set":
        merged = list(current)
        for v in patch:
            if v not in merged:
                merged.append(v)
        return merged
    if kind != "map":
        if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
            return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
        return copy.deepcopy(patch)
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict):
            raise errors.bad_request(f"strategic merge patch: list item {item!r} must be a map with {merge_key!r}")
        if merge_key not in item:
            raise errors.bad_request(f"strategic merge patch: list item is missing its merge key {merge_key!r}")
        key = item[merge_key]
        index = next((i for i, e in enumerate(result) if isinstance(e, dict) and e.get(merge_key) == key), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_smp_map({}, item, items))
        else:
            result[index] = _smp_map(result[index], item, items)
    return result


def _reorder(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    """Apply `$setElementOrder`: listed keys first in that order, the rest after in their order."""
    rank = {}
    for i, entry in enumerate(order):
        key = entry.get(merge_key) if isinstance(entry, dict) else entry
        rank[repr(key)] = i
    indexed = list(enumerate(items))
    indexed.sort(key=lambda p: rank.get(repr(p[1].get(merge_key) if isinstance(p[1], dict) else p[1]), len(order) + p[0]))
    return [item for _, item in indexed]
