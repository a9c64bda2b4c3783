"""A cluster of one's own: `python -m bootstrap.cluster serve` as a child process, for tests and benchmarks.

    cluster = ClusterChild(tmp / "state")       # port 0: a free one, chosen at start
    cluster.start()                             # returns once /readyz answers and the kubeconfig exists
    ... kubeconfig=cluster.kubeconfig ...
    cluster.stop(); cluster.remove_containers()

The same command `bootstrap up` runs (bootstrap/services.py), but held as a
Popen by its caller and stopped with it. `workloads=False` runs the API alone
(CLUSTER_NO_WORKLOADS=1: no kubelet, no Docker). A stopped cluster leaves its
pods' containers running (the next kubelet re-adopts them), so a caller that
is done with the cluster removes them by the cluster id the kubelet labels them with.

`ClusterProcess` adds the bearer token its kubeconfig holds (tests/cluster);
`LocalCluster` registers that token for the session's history scan and keeps
the namespaces a test made (tests/test_kube.py, the self-deploy tests);
`kubectl` runs the machine's real kubectl against a cluster.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import yaml

from bootstrap.cluster.kubelet.runtime import LABEL_CLUSTER
from bootstrap.process import stop_child
from bootstrap.settings import REPO_ROOT
from tests.helpers.processes import free_port
from tests.helpers.secrets import kubeconfig_tokens, never_leak

KUBECTL = "/usr/bin/kubectl"


@dataclass
class ClusterChild:
    state_dir: Path
    port: int = 0  # 0: a free port, chosen at start
    workloads: bool = True  # False: the API only (CLUSTER_NO_WORKLOADS=1), no kubelet and no Docker
    log_file: Path | None = None  # default: cluster-<port>.log next to the state directory
    proc: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cluster_id(self) -> str:
        """The id the kubelet labels its containers with (`bootstrap.cluster/cluster-id`); "" before it ran."""
        path = self.state_dir / "kubelet" / "cluster-id"
        return path.read_text().strip() if path.exists() else ""

    def start(self, *, timeout: float = 20.0) -> None:
        """Start the process and wait until /readyz answers and the kubeconfig exists; raise if it exits or times out."""
        if not self.port:
            self.port = free_port()
        if self.log_file is None:
            self.log_file = self.state_dir.parent / f"cluster-{self.port}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("CLUSTER_NO_WORKLOADS", None)
        if not self.workloads:
            env["CLUSTER_NO_WORKLOADS"] = "1"
        argv = [sys.executable, "-m", "bootstrap.cluster", "serve", "--state-dir", str(self.state_dir), "--port", str(self.port)]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        # Readiness only: whoever talks to the API verifies it with the kubeconfig's CA.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the cluster process exited with {self.proc.returncode}; see {self.log_file}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", context=context, timeout=1) as resp:
                    if resp.status == 200 and self.kubeconfig.exists():
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the cluster did not become ready within {timeout}s; see {self.log_file}")

    def stop(self, *, grace: float = 15.0) -> int | None:
        """SIGTERM (SIGKILL after `grace` s); the exit code, None if it was not started."""
        if self.proc is None:
            return None
        code = stop_child(self.proc, grace=grace)
        self.proc = None
        return code

    def remove_containers(self) -> int:
        """Force-remove every Docker container this cluster's kubelet created; how many there were."""
        cluster_id = self.cluster_id
        if not cluster_id:
            return 0
        engine = docker.from_env()
        try:
            found = engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster_id}"})
            for container in found:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
            return len(found)
        finally:
            engine.close()


class ClusterProcess(ClusterChild):
    """A cluster process, and the bearer token its kubeconfig holds."""

    @property
    def token(self) -> str:
        doc = yaml.safe_load(self.kubeconfig.read_text())
        return str(doc["users"][0]["user"]["token"])


@dataclass
class LocalCluster(ClusterChild):
    """A cluster of the test's own whose bearer token joins the history scan."""

    namespaces: list[str] = field(default_factory=list)  # what the test made, to delete at the end

    def start(self, *, timeout: float = 30.0) -> None:
        super().start(timeout=timeout)
        for token in kubeconfig_tokens(self.kubeconfig):
            never_leak(f"the bearer token of the test cluster {self.kubeconfig}", token)

    def stop(self, *, grace: float = 20.0) -> int | None:
        return super().stop(grace=grace)


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
