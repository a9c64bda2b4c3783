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
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from tests.conftest import REPO_ROOT

KUBECTL = "/usr/bin/kubectl"
T = TypeVar("T")


@dataclass
class ClusterProcess:
    """A running cluster process and how to reach it."""

    state_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    # False: CLUSTER_NO_WORKLOADS=1 (API only, no Docker); True: the kubelet runs pods as containers.
    workloads: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        doc = yaml.safe_load(self.kubeconfig.read_text())
        return str(doc["users"][0]["user"]["token"])

    def start(self, *, timeout: float = 20.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.workloads:
            env.pop("CLUSTER_NO_WORKLOADS", None)
        else:
            env["CLUSTER_NO_WORKLOADS"] = "1"
        log = open(self.state_dir.parent / f"cluster-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bootstrap.cluster", "serve", "--state-dir", str(self.state_dir), "--port", str(self.port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the cluster process exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", context=context, timeout=1) as resp:
                    if resp.status == 200 and self.kubeconfig.exists():
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the cluster did not become ready within {timeout}s; see {log.name}")

    @property
    def cluster_id(self) -> str:
        """The id the kubelet labels its containers with (`bootstrap.cluster/cluster-id`); "" before it ran."""
        path = self.state_dir / "kubelet" / "cluster-id"
        return path.read_text().strip() if path.exists() else ""

    def remove_containers(self) -> int:
        """Force-remove every Docker container this cluster's kubelet created (a stopped cluster leaves them running)."""
        cluster_id = self.cluster_id
        if not cluster_id:
            return 0
        import docker

        engine = docker.from_env()
        try:
            found = engine.containers.list(all=True, filters={"label": f"bootstrap.cluster/cluster-id={cluster_id}"})
            for container in found:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
            return len(found)
        finally:
            engine.close()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.proc = None
        return code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """The session's cluster process (API only: no kubelet)."""
    state = tmp_path_factory.mktemp("cluster") / "state"
    process = ClusterProcess(state, free_port())
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None:
            process.stop()


@pytest.fixture(scope="session")
def workload_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """A second session cluster process WITH the kubelet: pods are real Docker containers.

    Separate from `cluster` so that the API tests stay Docker-free and fast;
    started lazily, only by the workload tests that ask for it.
    """
    state = tmp_path_factory.mktemp("workload-cluster") / "state"
    process = ClusterProcess(state, free_port(), workloads=True)
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None:
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


def poll_until(check: Callable[[], T], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Call `check` until it returns something truthy without raising AssertionError; bounded, never a bare sleep."""
    deadline = time.monotonic() + timeout
    last: AssertionError | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s (last: {last})")
        time.sleep(0.1)
