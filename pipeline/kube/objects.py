"""Small reads and deletes of single objects, as plain dicts (None when absent)."""

from __future__ import annotations

from typing import Any

from pipeline.kube._resources import describe, resource_for
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
