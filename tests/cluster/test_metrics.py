"""metrics.k8s.io/v1beta1 and `kubectl top`, against the session's workload cluster (pods are Docker containers).

A pod that spins on one CPU and holds ~64 MiB shows up in `kubectl top pod` near one core and above 64 MiB;
the node in `kubectl top node`; the group in discovery; a pod that is not running is 404, as with
metrics-server. The quantity formats are checked on their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from bootstrap.cluster.metrics import cpu_quantity, go_duration, memory_quantity
from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine"]  # session fixture used by name

BUSY = "x = bytearray(64 * 1024 * 1024)\nfor i in range(64 * 1024):\n    x[i * 1024] = 1\nwhile True:\n    pass\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("nanocores", "text"),
    [(0, "0"), (2 * 10**9, "2"), (250_000_000, "250m"), (1_500_000, "1500u"), (123_456_789, "123456789n")],
)
def test_cpu_quantity(nanocores: int, text: str) -> None:
    assert cpu_quantity(nanocores) == text


@pytest.mark.unit
@pytest.mark.parametrize(("size", "text"), [(0, "0"), (1 << 30, "1Gi"), (3 << 20, "3Mi"), (5120, "5Ki"), (1000, "1000")])
def test_memory_quantity(size: int, text: str) -> None:
    assert memory_quantity(size) == text


@pytest.mark.unit
def test_window_is_a_go_duration() -> None:
    assert (go_duration(1.0), go_duration(1.0034), go_duration(15.25)) == ("1s", "1.003s", "15.25s")


@pytest.fixture(scope="module")
def busy_pod(workload_cluster: ClusterProcess, docker_engine: Any) -> Iterator[tuple[str, str]]:
    api_client = config.new_client_from_config(config_file=str(workload_cluster.kubeconfig))
    core = client.CoreV1Api(api_client)
    namespace, name = unique("top"), "spin"
    core.create_namespace({"metadata": {"name": namespace}})
    body = {
        "metadata": {"name": name, "labels": {"app": "spin"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "burn", "image": BASE_IMAGE, "command": ["python3", "-c", BUSY]}],
        },
    }
    core.create_namespaced_pod(namespace, body)
    poll_until(lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running", timeout=60, what="the busy pod")
    try:
        yield namespace, name
    finally:
        core.delete_namespace(namespace)
        api_client.close()


def test_kubectl_top_pod(workload_cluster: ClusterProcess, busy_pod: tuple[str, str]) -> None:
    namespace, name = busy_pod
    out = kubectl(workload_cluster.kubeconfig, "-n", namespace, "top", "pod").stdout.splitlines()
    assert out[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    row = out[1].split()
    assert row[0] == name
    cpu, memory = int(row[1].removesuffix("m")), int(row[2].removesuffix("Mi"))
    assert 500 <= cpu <= 1100, out  # one spinning thread (on a busy 2-core machine: at least half a core)
    assert 64 <= memory < 200, out
    containers = kubectl(workload_cluster.kubeconfig, "-n", namespace, "top", "pod", name, "--containers").stdout
    assert containers.splitlines()[1].split()[:2] == [name, "burn"]
    selected = kubectl(workload_cluster.kubeconfig, "-n", namespace, "top", "pod", "-l", "app=other", check=False)
    assert "No resources found" in selected.stdout + selected.stderr


def test_pod_metrics_object(workload_cluster: ClusterProcess, busy_pod: tuple[str, str]) -> None:
    namespace, name = busy_pod
    raw = kubectl(workload_cluster.kubeconfig, "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}")
    metrics = json.loads(raw.stdout)
    assert (metrics["kind"], metrics["apiVersion"]) == ("PodMetrics", "metrics.k8s.io/v1beta1")
    assert metrics["metadata"]["labels"] == {"app": "spin"} and metrics["window"].endswith("s")
    [container] = metrics["containers"]
    assert container["name"] == "burn" and set(container["usage"]) == {"cpu", "memory"}
    missing = kubectl(
        workload_cluster.kubeconfig,
        "get",
        "--raw",
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/nothing",
        check=False,
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_kubectl_top_node_and_discovery(workload_cluster: ClusterProcess, busy_pod: tuple[str, str]) -> None:
    out = kubectl(workload_cluster.kubeconfig, "top", "node").stdout.splitlines()
    assert out[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    row = out[1].split()
    assert row[0] == "local-node" and row[1].endswith("m") and row[2].endswith("%") and row[3].endswith("Mi")
    assert int(row[1].removesuffix("m")) >= 500  # the busy pod runs on it
    resources = kubectl(workload_cluster.kubeconfig, "api-resources", "--api-group=metrics.k8s.io").stdout
    assert "NodeMetrics" in resources and "PodMetrics" in resources
