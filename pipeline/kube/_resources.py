"""Where each kind we handle lives in the API: a small table instead of discovery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pipeline.kube.errors import KubeInvalid


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, *, namespace: str = "", name: str = "") -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base


RESOURCES: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r
    for r in (
        Resource("v1", "Namespace", "namespaces", namespaced=False),
        Resource("v1", "ServiceAccount", "serviceaccounts"),
        Resource("v1", "ConfigMap", "configmaps"),
        Resource("v1", "Secret", "secrets"),
        Resource("v1", "Service", "services"),
        Resource("v1", "Pod", "pods"),
        Resource("apps/v1", "Deployment", "deployments"),
        Resource("apps/v1", "ReplicaSet", "replicasets"),
        Resource("batch/v1", "Job", "jobs"),
        Resource("rbac.authorization.k8s.io/v1", "Role", "roles"),
        Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    )
}


def describe(kind: str, namespace: str, name: str) -> str:
    """How messages name an object: `Deployment temporal-workers/sample-worker`, `Namespace x`."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def describe_obj(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return describe(str(obj.get("kind", "?")), str(meta.get("namespace") or ""), str(meta.get("name", "?")))


def resource_for(*, api_version: str, kind: str) -> Resource:
    found = RESOURCES.get((api_version, kind))
    if found is None:
        known = ", ".join(f"{v} {k}" for v, k in RESOURCES)
        raise KubeInvalid(f"{kind} ({api_version}): this pipeline cannot apply that kind; it knows {known}", reason="UnknownKind")
    return found


def object_path(obj: Mapping[str, Any]) -> tuple[Resource, str, str, str]:
    """(resource, namespace, name, path) of a manifest; KubeInvalid when it lacks what is needed."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise KubeInvalid(f"{obj.get('kind', '?')} without metadata.name cannot be applied", reason="Invalid")
    resource = resource_for(api_version=str(obj.get("apiVersion", "")), kind=str(obj.get("kind", "")))
    namespace = str(meta.get("namespace") or "") if isinstance(meta, Mapping) else ""
    if resource.namespaced and not namespace:
        raise KubeInvalid(f"{resource.kind} {name}: metadata.namespace is required", reason="Invalid")
    return resource, namespace, name, resource.path(namespace=namespace, name=name)
