"""One real cluster process per test session, reached only through a kubeconfig.

The process is `python -m bootstrap.cluster serve` on a free port with a
temporary state directory, exactly as `bootstrap up` starts it; tests talk to it
with the real `kubectl` and the real `kubernetes` client. API tests isolate
themselves by namespace (`unique_name`), never by restarting the cluster.
`CLUSTER_NO_WORKLOADS=1` keeps the kubelet (and Docker) out of these tests.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

KUBECTL = "/usr/bin/kubectl"


@dataclass
class ClusterProcess:
    """A running cluster process and how to reach it."""

    state_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

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
        env = dict(os.environ, CLUSTER_NO_WORKLOADS="1", PYTHONUNBUFFERED="1")
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
