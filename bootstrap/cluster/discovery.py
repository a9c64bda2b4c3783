"""Discovery documents: what kubectl and client-go read to map kinds and short names to REST paths.

Served as plain JSON (`APIVersions`, `APIGroupList`, `APIResourceList`). kubectl
1.32 first asks for aggregated discovery (`as=APIGroupDiscoveryList`); a plain
`application/json` answer tells it the server does not aggregate, and it falls
back to one request per group version, then caches the result.
"""

from __future__ import annotations

from typing import Any

from bootstrap.cluster import hpa_v1, metrics
from bootstrap.cluster.resources import ALL, CREATE_ONLY, ResourceType, groups

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-local",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


# Versions served besides a group's stored one, after it (kube lists the preferred version first).
_MORE_VERSIONS = {"autoscaling": ["v1"]}  # hpa_v1.py: autoscaling/v1 HorizontalPodAutoscalers over the v2 storage


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    more = [{"groupVersion": f"{name}/{v}", "version": v} for v in _MORE_VERSIONS.get(name, [])]
    return {"name": name, "versions": [gv, *more], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            *(_group(name, resources[0].version) for name, resources in groups().items()),
            _group(metrics.GROUP, metrics.VERSION),  # metrics-server's APIService (metrics.py)
        ],
    }


def api_group(name: str) -> dict[str, Any] | None:
    if name == metrics.GROUP:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, metrics.VERSION)}
    resources = groups().get(name)
    if not resources:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, resources[0].version)}


STREAMING_KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}


def _subresource(res: ResourceType, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{res.plural}/{sub}",
        "singularName": "",
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": ["get", "patch", "update"],
    }
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub in STREAMING_KINDS:  # served by bootstrap/cluster/streaming.py and portforward.py
        entry.update(kind=STREAMING_KINDS[sub], verbs=["create", "get"])
    elif sub == "token":
        entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest", verbs=["create"])
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group version (`group=""` is the core group), or None if unknown."""
    if (group, version) == (hpa_v1.V1.group, hpa_v1.V1.version):
        listed = resource_list(group, "v2")
        assert listed is not None
        entries = [dict(e, kind=e["kind"]) for e in listed["resources"] if e["name"].startswith(hpa_v1.V1.plural)]
        return {**listed, "groupVersion": hpa_v1.V1.api_version, "resources": entries}
    if (group, version) == (metrics.GROUP, metrics.VERSION):
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": metrics.API_VERSION,
            "resources": metrics.RESOURCES,
        }
    selected = [r for r in ALL + CREATE_ONLY if r.group == group and r.version == version]
    if not selected:
        return None
    resources: list[dict[str, Any]] = []
    for res in selected:
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": VERBS if res.plural != "namespaces" else [v for v in VERBS if v != "deletecollection"],
        }
        if res in CREATE_ONLY:
            entry["verbs"] = ["create"]
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.group == "apps":
            entry["categories"] = ["all"]
        elif res.plural in ("pods", "services", "jobs", "cronjobs", "horizontalpodautoscalers"):
            entry["categories"] = ["all"]
        resources.append(entry)
        for sub in res.subresources:
            resources.append(_subresource(res, sub))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
