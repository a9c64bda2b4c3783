"""The kubelet's Node: registered at start, listed, described and printed as kubectl shows a node.

The workload cluster's kubelet registers one Node named as the pods' `spec.nodeName`,
with the machine's real architecture; the API-only cluster, having no kubelet, has no node.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from bootstrap.cluster.kubelet.node import arch
from bootstrap.cluster.resources import NODES
from bootstrap.cluster.store import Store
from tests.cluster.workloads import docker_engine, registry_image, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine", "registry_image"]  # session fixtures used by name

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())


@pytest.fixture(scope="module")
def scheduled_pod(workload_cluster: ClusterProcess, registry_image: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """(namespace, pod name) of a running pod on the workload cluster's node."""
    ns, name = unique("nodes"), "sleeper"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": registry_image[0], "command": ["sleep", "300"]}],
                },
            },
        ],
    }
    kubectl(workload_cluster.kubeconfig, "apply", "-f", "-", input=json.dumps(manifest))

    def running() -> bool:
        out = kubectl(workload_cluster.kubeconfig, "get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}").stdout
        return out == "Running"

    poll_until(running, timeout=60, what="the pod to run")
    yield ns, name
    kubectl(workload_cluster.kubeconfig, "delete", "namespace", ns, "--wait=false", check=False)


def _node_name(workload_cluster: ClusterProcess, pod: tuple[str, str]) -> str:
    ns, name = pod
    return kubectl(workload_cluster.kubeconfig, "get", "pod", name, "-n", ns, "-o", "jsonpath={.spec.nodeName}").stdout


def test_arch_is_the_machines() -> None:
    assert arch() == ARCH
    assert arch() in ("amd64", "arm64") or platform.machine() not in ("x86_64", "aarch64", "arm64")


def test_kubectl_get_nodes_shows_the_ready_node_of_the_pods(
    workload_cluster: ClusterProcess, scheduled_pod: tuple[str, str]
) -> None:
    node = _node_name(workload_cluster, scheduled_pod)
    assert node
    out = kubectl(workload_cluster.kubeconfig, "get", "nodes").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert len(out) == 2
    name, status, roles, _age, version = out[1].split()
    assert (name, status, roles, version) == (node, "Ready", "<none>", "v1.32.0")
    assert kubectl(workload_cluster.kubeconfig, "get", "no", "-o", "name").stdout.strip() == f"node/{node}"
    labels = json.loads(kubectl(workload_cluster.kubeconfig, "get", "node", node, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["kubernetes.io/arch"] == ARCH
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/hostname"] == node
    assert not any(k.startswith("node-role.kubernetes.io/") for k in labels)


def test_kubectl_get_nodes_wide(workload_cluster: ClusterProcess, scheduled_pod: tuple[str, str]) -> None:
    node = _node_name(workload_cluster, scheduled_pod)
    out = kubectl(workload_cluster.kubeconfig, "get", "nodes", "-o", "wide").stdout.splitlines()
    header = re.split(r"\s{2,}", out[0].strip())
    assert header == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    row = out[1]
    assert row.startswith(node)
    assert "127.0.0.1" in row and "<none>" in row
    assert platform.release() in row
    assert re.search(r"docker://\d+\.\d+", row), row


def test_kubectl_describe_node(workload_cluster: ClusterProcess, scheduled_pod: tuple[str, str]) -> None:
    ns, pod = scheduled_pod
    node = _node_name(workload_cluster, scheduled_pod)
    result = kubectl(workload_cluster.kubeconfig, "describe", "node", node)
    out = result.stdout
    assert re.search(rf"^Name:\s+{node}$", out, re.M), out
    assert re.search(r"^Roles:\s+<none>$", out, re.M), out
    assert f"kubernetes.io/arch={ARCH}" in out
    assert re.search(r"Ready\s+True\s+.*KubeletReady\s+kubelet is posting ready status", out), out
    assert re.search(r"MemoryPressure\s+False", out), out
    assert "InternalIP:  127.0.0.1" in out
    assert re.search(rf"HolderIdentity:\s+{node}", out), out  # the kube-node-lease Lease
    assert re.search(r"Container Runtime Version:\s+docker://", out), out
    assert re.search(r"Kubelet Version:\s+v1\.32\.0", out), out
    assert re.search(rf"^\s+{ns}\s+{pod}\s", out, re.M), out  # Non-terminated Pods, by fieldSelector spec.nodeName
    assert re.search(r"Starting\s+.*Starting kubelet\.", out), out  # the kubelet's events
    assert "error" not in result.stderr.lower(), result.stderr


def test_python_client_reads_nodes(workload_cluster: ClusterProcess, scheduled_pod: tuple[str, str]) -> None:
    node = _node_name(workload_cluster, scheduled_pod)
    api_client = config.new_client_from_config(config_file=str(workload_cluster.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        nodes = core.list_node()
        assert [n.metadata.name for n in nodes.items] == [node]
        read = core.read_node(node)
        assert read.metadata.labels["kubernetes.io/arch"] == ARCH
        assert read.status.node_info.kubelet_version == "v1.32.0"
        assert read.status.node_info.architecture == ARCH
        assert read.status.node_info.container_runtime_version.startswith("docker://")
        assert int(read.status.capacity["cpu"]) >= 1
        assert read.status.capacity["pods"] == "110"
        assert read.status.capacity["memory"].endswith("Ki")
        ready = next(c for c in read.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("True", "KubeletReady")
        assert ready.last_heartbeat_time is not None
        assert {a.type: a.address for a in read.status.addresses} == {"InternalIP": "127.0.0.1", "Hostname": node}
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
        assert scheduled_pod[1] in {p.metadata.name for p in pods.items}
    finally:
        api_client.close()


def test_api_only_cluster_has_no_nodes(cluster: ClusterProcess) -> None:
    result = kubectl(cluster.kubeconfig, "get", "nodes")
    assert result.stdout == ""
    assert "No resources found" in result.stderr
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        assert client.CoreV1Api(api_client).list_node().items == []
    finally:
        api_client.close()


def test_node_is_served_in_discovery_and_openapi(cluster: ClusterProcess) -> None:
    resources = kubectl(cluster.kubeconfig, "api-resources", "--api-group=").stdout
    assert re.search(r"^nodes\s+no\s+v1\s+false\s+Node$", resources, re.M), resources
    explain = kubectl(cluster.kubeconfig, "explain", "node.status.nodeInfo.kubeletVersion").stdout
    assert "kubeletVersion" in explain


@pytest.mark.unit
def test_node_heartbeat_keeps_transition_time(tmp_path: Any) -> None:
    from bootstrap.cluster.kubelet.node import node_status

    first = node_status("n", state_dir=tmp_path, runtime_version="docker://1", now="2025-01-01T00:00:00Z")
    second = node_status("n", state_dir=tmp_path, runtime_version="docker://1", previous=first, now="2025-01-01T00:00:40Z")
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == "2025-01-01T00:00:40Z"
    assert ready["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    store = Store(None)
    store.create(NODES, {"metadata": {"name": "n"}, "status": second})
    assert store.get(NODES, None, "n")["status"]["nodeInfo"]["architecture"] == ARCH
