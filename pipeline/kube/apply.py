"""Server-side apply (one field manager, idempotent) and a server-side dry run that says what would change.

    applied = server_side_apply(kc, manifests.objects, field_manager=FIELD_MANAGER)
    changes = diff_for_dry_run(kc, manifests.objects, field_manager=FIELD_MANAGER)

Apply is `PATCH` with `Content-Type: application/apply-patch+yaml` (a JSON body
is valid YAML), `fieldManager`, `force` and, for a dry run, `dryRun=All`: the
server runs admission, defaulting and validation and stores nothing.

Before a Namespace is applied, it is created (POST) with the annotation
`CREATED_BY_ANNOTATION`, owned by the field manager `<manager>-create`, so later
applies (which do not name it) never remove it; when it exists already the
create is refused (409) and nothing changes. `pipeline teardown` deletes a
namespace only when it carries that mark; one that existed before only gets the
pipeline's label from the apply.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from pipeline.kube._resources import describe, object_path
from pipeline.kube.client import KubeClient
from pipeline.kube.errors import KubeConflict, KubeForbidden, KubeNotFound

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CREATED_BY_ANNOTATION = "pipeline.temporal.io/created-by"
"""On a Namespace the pipeline created (the value is the field manager); absent on one that existed before."""
Action = Literal["created", "changed", "unchanged"]

# Server-maintained bookkeeping that says nothing about what was applied.
_VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


@dataclass(frozen=True)
class ObjectChange:
    """What applying one object would do; `diff` is a unified diff of its YAML (empty when unchanged)."""

    kind: str
    namespace: str
    name: str
    action: Action
    diff: str = ""


def apply_one(
    kc: KubeClient, obj: Mapping[str, Any], *, field_manager: str, force: bool = True, dry_run: bool = False
) -> dict[str, Any]:
    """Server-side apply of one object; the server's answer (the object as stored, or as it would be)."""
    resource, namespace, name, path = object_path(obj)
    query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
    if dry_run:
        query.append(("dryRun", "All"))
    return kc.request(
        method="PATCH",
        path=path,
        what=describe(resource.kind, namespace, name),
        query=query,
        body=dict(obj),
        content_type=APPLY_CONTENT_TYPE,
    )


def server_side_apply(
    kc: KubeClient,
    objects: Iterable[Mapping[str, Any]],
    *,
    field_manager: str,
    force: bool = True,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Apply `objects` in order; the server's answers, in the same order. Stops at the first KubeError.

    A Namespace that does not exist yet is created first, marked as the pipeline's (`create_marked`)."""
    applied = []
    for obj in objects:
        if obj.get("kind") == "Namespace" and not dry_run:
            create_marked(kc, obj, field_manager=field_manager)
        applied.append(apply_one(kc, obj, field_manager=field_manager, force=force, dry_run=dry_run))
    return applied


def create_marked(kc: KubeClient, obj: Mapping[str, Any], *, field_manager: str) -> bool:
    """Create `obj` with CREATED_BY_ANNOTATION when it does not exist; True if this call made it.

    A plain create (POST) under the field manager `<manager>-create`: 409 (it exists: made before, or by
    another apply meanwhile) and 403 (the in-cluster worker may patch its own namespace but never create
    one) leave it to the apply that follows, as before.
    """
    resource, namespace, name, _ = object_path(obj)
    body = copy.deepcopy(dict(obj))
    body.setdefault("metadata", {}).setdefault("annotations", {})[CREATED_BY_ANNOTATION] = field_manager
    try:
        kc.request(
            method="POST",
            path=resource.path(namespace=namespace),
            what=describe(resource.kind, namespace, name),
            query=[("fieldManager", f"{field_manager}-create")],
            body=body,
        )
    except (KubeConflict, KubeForbidden):
        return False
    return True


def diff_for_dry_run(kc: KubeClient, objects: Sequence[Mapping[str, Any]], *, field_manager: str) -> list[ObjectChange]:
    """Per object: "created", "changed" (with a diff) or "unchanged", from a server-side dry run; stores nothing.

    Objects in a namespace that the same dry run would create cannot be
    dry-run by the server (their namespace does not exist yet); they are
    reported as created, with the rendered object as the diff.
    """
    changes: list[ObjectChange] = []
    new_namespaces: set[str] = set()
    for obj in objects:
        resource, namespace, name, path = object_path(obj)
        what = describe(resource.kind, namespace, name)
        try:
            live: dict[str, Any] | None = kc.request(method="GET", path=path, what=what)
        except KubeNotFound:
            live = None
        if live is None and resource.namespaced and namespace in new_namespaces:
            after: dict[str, Any] = dict(obj)
        else:
            after = apply_one(kc, obj, field_manager=field_manager, dry_run=True)
        if live is None and resource.kind == "Namespace":
            new_namespaces.add(name)
        before_text = _yaml(normalize(live)) if live is not None else ""
        after_text = _yaml(normalize(after))
        if live is None:
            action: Action = "created"
        elif before_text == after_text:
            action = "unchanged"
        else:
            action = "changed"
        diff = ""
        if action != "unchanged":
            diff = "".join(
                difflib.unified_diff(
                    before_text.splitlines(keepends=True),
                    after_text.splitlines(keepends=True),
                    fromfile=f"{what} (live)" if live is not None else "/dev/null",
                    tofile=f"{what} (after apply)",
                )
            )
        changes.append(ObjectChange(kind=resource.kind, namespace=namespace, name=name, action=action, diff=diff))
    return changes


def normalize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` without status and server bookkeeping (managedFields, resourceVersion, generation, timestamps, uid)."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _VOLATILE_METADATA:
            meta.pop(key, None)
        if not meta.get("annotations"):
            meta.pop("annotations", None)
    return out


def _yaml(obj: Mapping[str, Any]) -> str:
    return str(yaml.safe_dump(dict(obj), sort_keys=True, default_flow_style=False, width=1000))
