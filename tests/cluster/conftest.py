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

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bootstrap.cluster.child import ClusterChild

KUBECTL = "/usr/bin/kubectl"


class ClusterProcess(ClusterChild):
    """The session's cluster process (bootstrap/cluster/child.py), and the bearer token its kubeconfig holds."""

    @property
    def token(self) -> str:
        doc = yaml.safe_load(self.kubeconfig.read_text())
        return str(doc["users"][0]["user"]["token"])


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


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the machine's real kubectl against the cluster; on `check`, fail with its stderr."""
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, KUBECACHEDIR=str(kubeconfig.parent / "kubecache")),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
