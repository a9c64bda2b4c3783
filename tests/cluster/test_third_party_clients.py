"""Two independent Python clients, lightkube and kr8s, through list, watch, server-side apply, patch, delete and exec.

Neither shares code with the `kubernetes` client or kubectl, so each trips over
different details: kr8s connects by GETting `/version/` (its URL builder joins
`["/version", ""]`) and discovers with `/api/` and `/apis/`, which the cluster
must answer as kube-apiserver does (it answered 404 once, so kr8s could not
connect at all); lightkube decodes every response into typed models (a DELETE
answer, a create's `status`), pages lists with `continue`, watches with field
selectors and execs over WebSocket v5 with stdin. kr8s execs over
`v4.channel.k8s.io` (the only subprotocol it offers). They run against the
session's cluster with the kubelet, since exec needs a running container.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import docker
import kr8s
import kr8s.asyncio
import pytest
import yaml
from kr8s.objects import ConfigMap as Kr8sConfigMap, Pod as Kr8sPod
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service, ServiceAccount
from lightkube.types import PatchType

from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess

__all__ = ["docker_engine"]  # a session fixture used by name


@pytest.fixture(scope="module")
def env(workload_cluster: ClusterProcess, docker_engine: docker.DockerClient) -> Iterator[dict[str, Any]]:
    """A namespace with one running pod `box`, and a lightkube client of the workload cluster."""
    lk = Client(KubeConfig.from_file(str(workload_cluster.kubeconfig)), field_manager="lightkube-test")
    namespace = unique("clients")
    lk.create(Namespace(metadata=ObjectMeta(name=namespace)))
    lk.create(
        Pod.from_dict(
            {
                "metadata": {"name": "box", "namespace": namespace},
                "spec": {
                    "containers": [
                        {
                            "name": "box",
                            "image": BASE_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-c", "import time; time.sleep(3600)"],
                        }
                    ]
                },
            }
        )
    )
    poll_until(
        lambda: lk.get(Pod, "box", namespace=namespace).status.phase == "Running",
        timeout=60,
        what="pod box running",
    )
    try:
        yield {"lk": lk, "namespace": namespace, "kubeconfig": str(workload_cluster.kubeconfig)}
    finally:
        lk.delete(Namespace, namespace)
        lk.close()


def _watch_in_thread(events: list[tuple[str, str]], iterate: Iterator[tuple[str, str]]) -> threading.Thread:
    def run() -> None:
        for kind, name in iterate:
            events.append((kind, name))
            if kind == "DELETED":
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# ----- lightkube -----


def test_lightkube_list_pages_and_get(env: dict[str, Any]) -> None:
    lk, namespace = env["lk"], env["namespace"]
    for i in range(3):
        lk.create(ConfigMap(metadata=ObjectMeta(name=f"page-{i}", namespace=namespace, labels={"set": "paged"})))
    paged = [cm.metadata.name for cm in lk.list(ConfigMap, namespace=namespace, labels={"set": "paged"}, chunk_size=1)]
    assert paged == ["page-0", "page-1", "page-2"]  # three requests, two continue tokens
    assert "box" in [p.metadata.name for p in lk.list(Pod, namespace=namespace)]
    assert lk.get(Pod, "box", namespace=namespace).status.phase == "Running"
    created = lk.create(
        Service.from_dict({"metadata": {"name": "svc", "namespace": namespace}, "spec": {"ports": [{"port": 80}]}})
    )
    assert created.spec.clusterIP and created.status.loadBalancer is not None


def test_lightkube_watch_apply_patch_delete(env: dict[str, Any]) -> None:
    lk, namespace = env["lk"], env["namespace"]
    events: list[tuple[str, str]] = []
    watched = (
        (kind, obj.metadata.name) for kind, obj in lk.watch(ConfigMap, namespace=namespace, fields={"metadata.name": "lk"})
    )
    thread = _watch_in_thread(events, watched)
    time.sleep(0.5)
    applied = lk.apply(ConfigMap(metadata=ObjectMeta(name="lk", namespace=namespace), data={"a": "1"}))
    assert applied.data == {"a": "1"}
    assert [m.manager for m in applied.metadata.managedFields] == ["lightkube-test"]
    # another manager setting the same field conflicts (409) unless it forces
    with pytest.raises(ApiError) as conflict:
        lk.apply(ConfigMap(metadata=ObjectMeta(name="lk", namespace=namespace), data={"a": "2"}), field_manager="other")
    assert conflict.value.status.code == 409 and conflict.value.status.reason == "Conflict"
    forced = lk.apply(
        ConfigMap(metadata=ObjectMeta(name="lk", namespace=namespace), data={"a": "2"}), field_manager="other", force=True
    )
    assert forced.data == {"a": "2"}
    patched = lk.patch(ConfigMap, "lk", {"data": {"b": "2"}}, namespace=namespace)  # strategic merge
    patched = lk.patch(ConfigMap, "lk", {"data": {"c": "3"}}, namespace=namespace, patch_type=PatchType.MERGE)
    patched = lk.patch(ConfigMap, "lk", [{"op": "remove", "path": "/data/b"}], namespace=namespace, patch_type=PatchType.JSON)
    assert patched.data == {"a": "2", "c": "3"}
    lk.delete(ConfigMap, "lk", namespace=namespace)
    thread.join(10)
    assert [kind for kind, _ in events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    with pytest.raises(ApiError) as gone:
        lk.get(ConfigMap, "lk", namespace=namespace)
    assert gone.value.status.code == 404
    # DELETE answers that lightkube decodes into the resource's model (a Service and a ServiceAccount return the object)
    lk.create(ServiceAccount(metadata=ObjectMeta(name="sa", namespace=namespace)))
    lk.delete(ServiceAccount, "sa", namespace=namespace)


def test_lightkube_exec(env: dict[str, Any]) -> None:
    lk, namespace = env["lk"], env["namespace"]
    result = lk.exec(
        "box", namespace=namespace, command=["sh", "-c", "cat; echo e >&2; exit 2"], stdin="in\n", stdout=True, stderr=True
    )
    assert (result.stdout, result.stderr, result.exit_code) == ("in\n", "e\n", 2)
    ok = lk.exec("box", namespace=namespace, command=["true"], stdout=True)
    assert ok.exit_code == 0


# ----- kr8s -----


def test_kr8s_connects_and_discovers(env: dict[str, Any]) -> None:
    api = kr8s.api(kubeconfig=env["kubeconfig"])  # GETs /version/ on connect
    assert api.version()["gitVersion"].startswith("v1.32")
    names = {r["name"] for r in api.api_resources()}
    assert {"pods", "deployments", "configmaps"} <= names


def test_kr8s_list_watch_patch_delete_exec(env: dict[str, Any]) -> None:
    api = kr8s.api(kubeconfig=env["kubeconfig"])
    namespace = env["namespace"]
    assert "box" in [p.name for p in api.get("pods", namespace=namespace)]
    events: list[tuple[str, str]] = []
    watched = ((kind, obj.name) for kind, obj in api.watch("configmaps", namespace=namespace, field_selector="metadata.name=k8"))
    thread = _watch_in_thread(events, watched)
    time.sleep(0.5)
    cm = Kr8sConfigMap(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k8", "namespace": namespace}, "data": {"a": "1"}}, api=api
    )
    cm.create()
    cm.patch({"data": {"b": "2"}})
    cm.patch([{"op": "add", "path": "/data/c", "value": "3"}], type="json")
    assert cm.raw["data"] == {"a": "1", "b": "2", "c": "3"}
    cm.delete()
    thread.join(10)
    assert [kind for kind, _ in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert not cm.exists()
    pod = Kr8sPod.get("box", namespace=namespace, api=api)
    done = pod.exec(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (done.stdout, done.stderr, done.returncode) == (b"out\n", b"err\n", 3)


async def test_kr8s_server_side_apply(env: dict[str, Any]) -> None:
    """kr8s has no apply helper: its raw call_api with `application/apply-patch+yaml`, as its docs suggest."""
    api = await kr8s.asyncio.api(kubeconfig=env["kubeconfig"])
    namespace = env["namespace"]
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "v"}})
    for expected in (201, 200):  # create, then a no-op apply of the same intent
        async with api.call_api(
            "PATCH",
            version="v1",
            url="configmaps/ssa",
            namespace=namespace,
            content=body,
            headers={"Content-Type": "application/apply-patch+yaml"},
            params={"fieldManager": "kr8s-test"},
        ) as resp:
            assert resp.status_code == expected
            obj = resp.json()
    assert obj["data"] == {"k": "v"}
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["kr8s-test"]
    cm = await kr8s.asyncio.objects.ConfigMap.get("ssa", namespace=namespace, api=api)
    await cm.delete()
