"""Small reads and deletes of single objects, as plain dicts (None when absent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.kube._resources import RESOURCES, describe, resource_for
from pipeline.kube.client import KubeClient
from pipeline.kube.errors import KubeNotFound


def get_object(kc: KubeClient, *, api_version: str, kind: str, namespace: str = "", name: str) -> dict[str, Any] | None:
    """The live object, or None when it (or its namespace) does not exist."""
    resource = resource_for(api_version=api_version, kind=kind)
    try:
        return kc.request(
            method="GET",
            path=resource.path(namespace=namespace, name=name),
            what=describe(kind, namespace if resource.namespaced else "", name),
        )
    except KubeNotFound:
        return None


def get_configmap(kc: KubeClient, *, namespace: str, name: str) -> dict[str, str] | None:
    """The ConfigMap's `data`, or None when there is no such ConfigMap."""
    found = get_object(kc, api_version="v1", kind="ConfigMap", namespace=namespace, name=name)
    if found is None:
        return None
    return {str(k): str(v) for k, v in (found.get("data") or {}).items()}


def get_deployment(kc: KubeClient, *, namespace: str, name: str) -> dict[str, Any] | None:
    return get_object(kc, api_version="apps/v1", kind="Deployment", namespace=namespace, name=name)


def delete_object(
    kc: KubeClient, *, api_version: str, kind: str, namespace: str = "", name: str, propagation: str = "Background"
) -> bool:
    """Delete the object; False when it was already gone."""
    resource = resource_for(api_version=api_version, kind=kind)
    try:
        kc.request(
            method="DELETE",
            path=resource.path(namespace=namespace, name=name),
            what=describe(kind, namespace if resource.namespaced else "", name),
            body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation},
        )
    except KubeNotFound:
        return False
    return True


def list_objects(
    kc: KubeClient, *, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The live objects of `kind` in `namespace` whose labels match `selector` (name order)."""
    resource = resource_for(api_version=api_version, kind=kind)
    found = kc.request(
        method="GET",
        path=resource.path(namespace=namespace),
        what=f"{resource.plural} in namespace {namespace}",
        query=[("labelSelector", ",".join(f"{k}={v}" if v else k for k, v in sorted(selector.items())))],
    )
    items = [dict(item) for item in found.get("items") or []]
    return sorted(items, key=lambda o: str(o.get("metadata", {}).get("name", "")))


def list_namespace(kc: KubeClient, *, namespace: str, skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Every object in `namespace` of each namespaced kind this layer knows (but the kinds in `skip`), with
    `apiVersion` and `kind` set (a list's items lack them); kind, then name order. [] for a missing namespace."""
    found: list[dict[str, Any]] = []
    for resource in RESOURCES.values():
        if resource.namespaced and resource.kind not in skip:
            for obj in list_objects(kc, api_version=resource.api_version, kind=resource.kind, namespace=namespace, selector={}):
                found.append({**obj, "apiVersion": resource.api_version, "kind": resource.kind})
    return found


def scale_deployment(kc: KubeClient, *, namespace: str, name: str, replicas: int) -> None:
    """Set the Deployment's replicas through its `scale` subresource (what `kubectl scale` does): the pod
    template is left as it is, so no pod restarts."""
    resource = resource_for(api_version="apps/v1", kind="Deployment")
    kc.request(
        method="PATCH",
        path=resource.path(namespace=namespace, name=name) + "/scale",
        what=describe("Deployment", namespace, name) + " (scale)",
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )
