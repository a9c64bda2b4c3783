"""One real cluster process per test session, reached only through a kubeconfig.

The process is `python -m bootstrap.cluster serve` on a free port with a
temporary state directory, exactly as `bootstrap up` starts it; tests talk to it
with the real `kubectl` and the real `kubernetes` client. API tests isolate
themselves by namespace (`unique_name`), never by restarting the cluster.
`CLUSTER_NO_WORKLOADS=1` keeps the kubelet (and Docker) out of these tests;
`workload_cluster` is a second session process WITH the kubelet, started only
when a workload test asks for it, whose containers are removed at the end by
the cluster id the kubelet labels them with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.helpers import unique_name
from tests.helpers.cluster import ClusterProcess


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """The session's cluster process (API only: no kubelet)."""
    state = tmp_path_factory.mktemp("cluster") / "state"
    process = ClusterProcess(state, workloads=False)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def workload_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """A second session cluster process WITH the kubelet: pods are real Docker containers.

    Separate from `cluster` so that the API tests stay Docker-free and fast;
    started lazily, only by the workload tests that ask for it.
    """
    state = tmp_path_factory.mktemp("workload-cluster") / "state"
    process = ClusterProcess(state)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.remove_containers()


@pytest.fixture(scope="session")
def kube(cluster: ClusterProcess) -> tuple[Path, str, str]:
    """(kubeconfig path, base url, token) of the session cluster."""
    return cluster.kubeconfig, cluster.base_url, cluster.token


@pytest.fixture(scope="module")
def api(cluster: ClusterProcess) -> Iterator[client.ApiClient]:
    """The real `kubernetes` client of the API-only session cluster."""
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    """A fresh namespace of the API-only session cluster, for one test."""
    name = unique_name("ns")
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name
