"""List chunking (limit/continue) and Table includeObject, through the real kubectl and the `kubernetes` client."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.cluster import ClusterProcess, kubectl

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def raw_get(api: client.ApiClient, path: str, accept: str = "application/json", **query: str) -> tuple[int, dict]:
    method, url, headers, _, _ = api.param_serialize(
        "GET", path, query_params=list(query.items()), header_params={"Accept": accept}, auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, headers)
    response.read()
    return response.status, json.loads(response.data)


def configmaps(core: client.CoreV1Api, namespace: str, names: list[str], labels: dict | None = None) -> None:
    for name in names:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": name}})


def all_pages(core: client.CoreV1Api, namespace: str, limit: int, **kw: str) -> list[client.V1ConfigMapList]:
    pages, token = [], None
    while True:
        page = core.list_namespaced_config_map(namespace, limit=limit, _continue=token, **kw)
        pages.append(page)
        token = page.metadata._continue
        if not token:
            return pages


def test_python_client_pages_through_configmaps(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    configmaps(core, namespace, ["e", "a", "d", "b", "c"])
    everything = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert everything == sorted(everything) and {"a", "b", "c", "d", "e"} <= set(everything)

    first = core.list_namespaced_config_map(namespace, limit=2)
    assert [cm.metadata.name for cm in first.items] == everything[:2]
    assert first.metadata.remaining_item_count == len(everything) - 2
    token = json.loads(base64.urlsafe_b64decode(first.metadata._continue + "=="))
    assert token["v"] == "meta.k8s.io/v1" and token["rv"] == int(first.metadata.resource_version)

    pages = all_pages(core, namespace, 2)
    assert [cm.metadata.name for p in pages for cm in p.items] == everything
    assert all(len(p.items) == 2 for p in pages[:-1]) and pages[-1].metadata.remaining_item_count is None


def test_continue_is_consistent_at_the_first_pages_version(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    configmaps(core, namespace, ["a", "b", "c", "d"])
    first = core.list_namespaced_config_map(namespace, limit=1)
    before = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    core.delete_namespaced_config_map("d", namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "zz"}})
    core.patch_namespaced_config_map("c", namespace, {"data": {"k": "changed"}})
    rest = core.list_namespaced_config_map(namespace, _continue=first.metadata._continue)
    assert rest.metadata.resource_version == first.metadata.resource_version
    assert [cm.metadata.name for cm in first.items + rest.items] == before
    assert next(cm for cm in rest.items if cm.metadata.name == "c").data == {"k": "c"}


def test_limit_counts_after_selectors(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    configmaps(core, namespace, ["a", "c", "e"], {"pick": "yes"})
    configmaps(core, namespace, ["b", "d", "f", "g"], {"pick": "no"})
    first = core.list_namespaced_config_map(namespace, limit=2, label_selector="pick=yes")
    assert [cm.metadata.name for cm in first.items] == ["a", "c"]
    assert first.metadata._continue and first.metadata.remaining_item_count is None
    pages = all_pages(core, namespace, 2, label_selector="pick=yes")
    assert [cm.metadata.name for p in pages for cm in p.items] == ["a", "c", "e"]


def test_malformed_continue_is_400(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    bad_json = base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":0,"start":"a"}').decode()
    escaping = base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":5,"start":"../other/a"}').decode()
    for token in ["!!not-base64!!", "bm90IGpzb24", bad_json, escaping]:
        with pytest.raises(ApiException) as caught:
            core.list_namespaced_config_map(namespace, limit=2, _continue=token)
        assert caught.value.status == 400
        status = json.loads(caught.value.body)
        assert status["reason"] == "BadRequest" and "continue key is not valid" in status["message"]


def test_kubectl_chunk_size_lists_everything(cluster: ClusterProcess, api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    names = [f"cm-{i}" for i in range(7)]
    configmaps(core, namespace, names)
    for i in range(3):
        core.create_namespaced_pod(
            namespace,
            {"metadata": {"name": f"pod-{i}"}, "spec": {"containers": [{"name": "m", "image": "pipeline-base:bookworm"}]}},
        )
    kc = cluster.kubeconfig
    got = kubectl(kc, "get", "configmaps", "-n", namespace, "--chunk-size=2", "-o", "name", "-v=6")
    assert {f"configmap/{n}" for n in names} <= set(got.stdout.split())
    assert "limit=2" in got.stderr and "continue=" in got.stderr
    table = kubectl(kc, "get", "pods", "-n", namespace, "--chunk-size=2").stdout.splitlines()
    assert table[0].split()[0] == "NAME" and [line.split()[0] for line in table[1:]] == ["pod-0", "pod-1", "pod-2"]
    default = kubectl(kc, "get", "configmaps", "-n", namespace).stdout.splitlines()[1:]
    assert {n for n in names} <= {line.split()[0] for line in default}


def test_table_include_object(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    configmaps(core, namespace, ["a", "b", "c"])
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, default = raw_get(api, path, TABLE, limit="2")
    assert default["metadata"]["continue"] and default["metadata"]["remainingItemCount"] >= 1
    assert [r["object"]["kind"] for r in default["rows"]] == ["PartialObjectMetadata"] * 2
    _, full = raw_get(api, path, TABLE, includeObject="Object")
    objects = [r["object"] for r in full["rows"]]
    assert {o["kind"] for o in objects} == {"ConfigMap"} and {o["metadata"]["name"]: o.get("data") for o in objects}["b"] == {
        "k": "b"
    }
    _, bare = raw_get(api, path, TABLE, includeObject="None")
    assert all(r["object"] is None for r in bare["rows"]) and bare["rows"]
    _, one = raw_get(api, f"{path}/a", TABLE, includeObject="Object")
    assert one["rows"][0]["object"]["data"] == {"k": "a"}
    status, body = raw_get(api, path, TABLE, includeObject="Everything")
    assert status == 400 and body["message"] == 'unrecognized includeObject value: "Everything"'


def test_kubectl_sort_by_and_custom_columns(cluster: ClusterProcess, api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    starts = {"p-a": "2024-01-01T00:00:03Z", "p-b": "2024-01-01T00:00:01Z", "p-c": "2024-01-01T00:00:02Z"}
    for name, start in starts.items():
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": name}, "spec": {"containers": [{"name": "m", "image": "pipeline-base:bookworm"}]}}
        )
        core.patch_namespaced_pod_status(name, namespace, {"status": {"startTime": start}})
    for name, last in {"ev-x": "2024-01-01T00:00:09Z", "ev-y": "2024-01-01T00:00:05Z"}.items():
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "name": "p-a", "namespace": namespace},
                "reason": "Tested",
                "message": name,
                "type": "Normal",
                "firstTimestamp": last,
                "lastTimestamp": last,
            },
        )
    kc = cluster.kubeconfig
    pods = kubectl(kc, "get", "pods", "-n", namespace, "--sort-by=.status.startTime").stdout.splitlines()
    assert [line.split()[0] for line in pods[1:]] == ["p-b", "p-c", "p-a"]
    events = kubectl(kc, "get", "events", "-n", namespace, "--sort-by=.lastTimestamp").stdout
    assert "ev-y" in events and events.index("ev-y") < events.index("ev-x")
    columns = kubectl(
        kc, "get", "pods", "-n", namespace, "-o", "custom-columns=NAME:.metadata.name,START:.status.startTime"
    ).stdout.splitlines()
    assert columns[0].split() == ["NAME", "START"]
    assert [line.split() for line in columns[1:]] == [[n, s] for n, s in sorted(starts.items())]
