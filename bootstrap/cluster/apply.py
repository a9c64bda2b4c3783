"""Server-side apply and field ownership (`metadata.managedFields`), after structured-merge-diff.

Every write through the API records who set which field:
- `apply(...)` (PATCH `application/apply-patch+yaml`) makes the applied
  configuration the manager's whole intent: its fields are merged into the live
  object (keyed lists item by item, see `schema.LISTS`), fields it applied last
  time but no longer does are removed unless another manager owns them, and
  setting a field another manager owns to a different value is a conflict
  (409 with one cause per field) unless `force` transfers ownership.
- `track_update(...)` (create, update, the other patches) gives the manager the
  fields it changed and takes them away from everyone else, as an `Update`
  entry.

Field sets are kept as sets of paths such as
`("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image")`
and serialized in Kubernetes' FieldsV1 format (nested maps whose leaves are
`{}`; `.` marks a keyed item itself).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from bootstrap.cluster import errors
from bootstrap.cluster.resources import ResourceType
from bootstrap.cluster.schema import ATOMIC, FREE, ListType, Node
from bootstrap.cluster.store import now_rfc3339

Path_ = tuple[str, ...]
FieldSet = set[Path_]
Obj = dict[str, Any]

_SERVER_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    }
)
_MISSING = object()


# ----- field sets -----


def _item_key(item: Obj, lt: ListType) -> str:
    values = {k: item.get(k, lt.key_defaults.get(k)) for k in lt.keys}
    return "k:" + json.dumps(values, separators=(",", ":"))


def _fields(value: Any, node: Node, prefix: Path_, out: FieldSet) -> None:
    """Add the leaf paths of `value` (a map or struct at `node`) under `prefix` to `out`."""
    for key, sub in value.items():
        path = prefix + (f"f:{key}",)
        child = node.child(key) or FREE
        if isinstance(sub, dict) and sub:
            if prefix:  # a nested map or struct is itself owned (`.`): dropping it from an apply removes it whole
                out.add(path + (".",))
            _fields(sub, child, path, out)
        elif isinstance(sub, list):
            lt = node.list_type(key) if node is not FREE else ATOMIC
            if lt.kind == "map" and all(isinstance(i, dict) for i in sub):
                items = child.items()
                for item in sub:
                    kpath = path + (_item_key(item, lt),)
                    out.add(kpath + (".",))
                    for k in lt.keys:
                        out.add(kpath + (f"f:{k}",))
                    _fields({k: v for k, v in item.items() if k not in lt.keys}, items, kpath, out)
            elif lt.kind == "set":
                for v in sub:
                    out.add(path + ("v:" + json.dumps(v, separators=(",", ":")),))
            else:
                out.add(path)
        else:
            out.add(path)


def field_set(obj: Obj, node: Node, *, status: bool = False) -> FieldSet:
    """The paths an object (or an applied configuration) sets, without server-owned metadata.

    `status=False` leaves `.status` out (what the main resource's managers own);
    `status=True` gives only `.status` (the status subresource's managers).
    """
    out: FieldSet = set()
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    if status:
        body = {"status": obj["status"]} if isinstance(obj.get("status"), dict) else {}
    elif meta:
        body["metadata"] = meta
    else:
        body.pop("metadata", None)
    _fields(body, node, (), out)
    return out


def to_fields_v1(paths: Iterable[Path_]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields_v1(tree: Obj, prefix: Path_ = ()) -> FieldSet:
    out: FieldSet = set()
    for key, sub in tree.items():
        path = prefix + (key,)
        if isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


def _lookup(obj: Any, path: Path_) -> Any:
    """The value at `path` in `obj`, or _MISSING."""
    node = obj
    for part in path:
        if part == ".":
            return node
        kind, _, rest = part.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return _MISSING
            node = node[rest]
        elif kind == "k":
            if not isinstance(node, list):
                return _MISSING
            wanted = json.loads(rest)
            node = next(
                (
                    i
                    for i in node
                    if isinstance(i, dict) and all(i.get(k, "TCP" if k == "protocol" else None) == v for k, v in wanted.items())
                ),
                _MISSING,
            )
            if node is _MISSING:
                return _MISSING
        elif kind == "v":
            if not isinstance(node, list):
                return _MISSING
            value = json.loads(rest)
            return value if value in node else _MISSING
    return node


def _remove_path(obj: Any, path: Path_) -> None:
    """Delete the field (or keyed item, or set value) at `path` from `obj` in place, if present."""
    last = path[-1]
    if last == ".":
        parent_path = path[:-2]
        container = _lookup(obj, parent_path)
        target = _lookup(obj, path[:-1])
        if isinstance(container, list) and target is not _MISSING:
            container.remove(target)
        elif isinstance(container, dict) and path[-2].startswith("f:"):  # a map or struct: the field goes whole
            container.pop(path[-2][2:], None)
        return
    container = _lookup(obj, path[:-1])
    kind, _, rest = last.partition(":")
    if kind == "f" and isinstance(container, dict):
        container.pop(rest, None)
    elif kind == "v" and isinstance(container, list):
        value = json.loads(rest)
        if value in container:
            container.remove(value)


# ----- managedFields entries -----


def _entries(obj: Obj) -> list[Obj]:
    return [e for e in (obj.get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]


def _entry_set(entry: Obj) -> FieldSet:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _same_owner(entry: Obj, manager: str, operation: str, subresource: str | None) -> bool:
    return (
        entry.get("manager") == manager
        and entry.get("operation") == operation
        and (entry.get("subresource") or None) == subresource
    )


def _rebuild(
    old_entries: list[Obj],
    sets: list[FieldSet],
    *,
    manager: str,
    operation: str,
    subresource: str | None,
    api_version: str,
    own: FieldSet,
) -> list[Obj]:
    """New managedFields: others' entries with their (possibly reduced) sets, and the manager's own."""
    result: list[Obj] = []
    placed = False
    for entry, fs in zip(old_entries, sets, strict=True):
        if _same_owner(entry, manager, operation, subresource):
            placed = True
            if not own:
                continue
            if fs == own and entry.get("apiVersion") == api_version:
                result.append(entry)
            else:
                result.append(_entry(manager, operation, subresource, api_version, own))
            continue
        if not fs:
            continue
        if fs == _entry_set(entry):
            result.append(entry)
        else:
            changed = dict(entry)
            changed["fieldsV1"] = to_fields_v1(fs)
            result.append(changed)
    if not placed and own:
        result.append(_entry(manager, operation, subresource, api_version, own))
    return result


def _entry(manager: str, operation: str, subresource: str | None, api_version: str, fs: FieldSet) -> Obj:
    entry: Obj = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(fs),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _leaves(fs: FieldSet) -> FieldSet:
    """Paths whose value is compared for conflicts (a keyed item's `.` is existence, never a conflict)."""
    return {p for p in fs if p[-1] != "."}


def track_update(
    old: Obj | None,
    new: Obj,
    node: Node,
    *,
    manager: str,
    subresource: str | None = None,
) -> Obj:
    """Return `new` with managedFields updated for a non-apply write by `manager` (an `Update` entry)."""
    status = subresource == "status"
    new_fs = field_set(new, node, status=status)
    old_fs = field_set(old, node, status=status) if old is not None else set()
    changed = {p for p in new_fs if old is None or _lookup(old, p) != _lookup(new, p)}
    removed = old_fs - new_fs
    base = _entries(old) if old is not None else []
    sets = [
        (_entry_set(e) - changed - removed) if not _same_owner(e, manager, "Update", subresource) else _entry_set(e) for e in base
    ]
    own = set()
    for e, fs in zip(base, sets, strict=True):
        if _same_owner(e, manager, "Update", subresource):
            own = (fs - removed) | changed
    if not any(_same_owner(e, manager, "Update", subresource) for e in base):
        own = changed
    result = copy.deepcopy(new)
    entries = _rebuild(
        base,
        sets,
        manager=manager,
        operation="Update",
        subresource=subresource,
        api_version=new.get("apiVersion", ""),
        own=own,
    )
    _set_entries(result, entries)
    return result


def _set_entries(obj: Obj, entries: list[Obj]) -> None:
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


# ----- apply -----


def _merge(live: Any, applied: Any, node: Node) -> Any:
    """Merge an applied configuration into the live value: maps by key, keyed lists by item key."""
    if not isinstance(applied, dict):
        return copy.deepcopy(applied)
    result = copy.deepcopy(live) if isinstance(live, dict) else {}
    for key, value in applied.items():
        child = node.child(key) or FREE
        if isinstance(value, dict):
            result[key] = _merge(result.get(key), value, child) if value else {}
        elif isinstance(value, list):
            lt = node.list_type(key) if node is not FREE else ATOMIC
            existing = result.get(key)
            current: list[Any] = existing if isinstance(existing, list) else []
            if lt.kind == "map" and all(isinstance(i, dict) for i in value):
                merged = list(current)
                for item in value:
                    key_str = _item_key(item, lt)
                    index = next((i for i, e in enumerate(merged) if isinstance(e, dict) and _item_key(e, lt) == key_str), None)
                    if index is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[index] = _merge(merged[index], item, child.items())
                result[key] = merged
            elif lt.kind == "set":
                result[key] = list(current) + [v for v in value if v not in current]
            else:
                result[key] = copy.deepcopy(value)
        else:
            result[key] = value
    return result


def _describe(path: Path_) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as kube prints conflict paths."""
    text = ""
    for part in path:
        kind, _, rest = part.partition(":")
        if kind == "f":
            text += f".{rest}"
        elif kind == "k":
            keys = json.loads(rest)
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif kind == "v":
            text += f"[{rest}]"
    return text


def apply(
    live: Obj | None,
    applied: Obj,
    res: ResourceType,
    node: Node,
    *,
    manager: str,
    force: bool,
) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: the object does not exist yet).

    Raises 409 Conflict listing every field another manager owns with a different value, unless `force`.
    """
    base = copy.deepcopy(live) if live is not None else {}
    applied = copy.deepcopy(applied)
    applied_meta = applied.get("metadata") or {}
    applied_meta.pop("managedFields", None)
    applied.pop("status", None)
    new_fs = field_set(applied, node)
    entries = _entries(base)
    sets = [_entry_set(e) for e in entries]
    merged: Obj = _merge(base, {k: v for k, v in applied.items() if k != "metadata"}, node)
    merged_meta = _merge(
        base.get("metadata") or {},
        {k: v for k, v in applied_meta.items() if k not in _SERVER_META},
        node.child("metadata") or FREE,
    )
    for k in ("name", "namespace"):
        if k in applied_meta and k not in merged_meta:
            merged_meta[k] = applied_meta[k]
    merged["metadata"] = merged_meta

    conflicts: list[tuple[Path_, str, str]] = []
    for entry, fs in zip(entries, sets, strict=True):
        if _same_owner(entry, manager, "Apply", None) or entry.get("subresource"):
            continue
        for path in sorted(_leaves(fs & new_fs)):
            if _lookup(base, path) != _lookup(merged, path):
                conflicts.append((path, str(entry.get("manager", "")), str(entry.get("apiVersion", ""))))
    if conflicts and not force:
        raise _conflict_error(res, str(applied_meta.get("name", "")), conflicts)
    stolen = {c[0] for c in conflicts}
    sets = [fs - stolen if not _same_owner(e, manager, "Apply", None) else fs for e, fs in zip(entries, sets, strict=True)]

    previous = next((fs for e, fs in zip(entries, sets, strict=True) if _same_owner(e, manager, "Apply", None)), set())
    others: FieldSet = set()
    for e, fs in zip(entries, sets, strict=True):
        if not _same_owner(e, manager, "Apply", None):
            others |= fs
    # Whole keyed items first (their fields go with them; removing a key field first would lose the item),
    # then the deepest fields, so a parent is never removed before its children are looked up.
    for path in sorted(previous - new_fs - others, key=lambda p: (p[-1] != ".", -len(p))):
        if path[-1] == "." and any(p[: len(path) - 1] == path[:-1] for p in others | new_fs):
            continue
        _remove_path(merged, path)

    result_entries = _rebuild(
        entries,
        sets,
        manager=manager,
        operation="Apply",
        subresource=None,
        api_version=res.api_version,
        own=new_fs,
    )
    _set_entries(merged, result_entries)
    merged["apiVersion"] = res.api_version
    merged["kind"] = res.kind
    return merged


def _conflict_error(res: ResourceType, name: str, conflicts: list[tuple[Path_, str, str]]) -> errors.ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {api_version}',
            "field": _describe(path),
        }
        for path, manager, api_version in conflicts
    ]
    lines = "\n".join(f'- conflict with "{m}" using {v}: {_describe(p)}' for p, m, v in conflicts)
    plural = f"{res.plural}.{res.group}" if res.group else res.plural
    message = f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''}: "
    message += lines[2:] if len(conflicts) == 1 else "\n" + lines
    return errors.ApiError(
        409,
        "Conflict",
        message,
        details={"name": name, "group": res.group, "kind": res.plural, "causes": causes} | ({} if plural else {}),
    )
