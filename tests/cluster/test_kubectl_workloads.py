"""The workload contract through the machine's real kubectl: apply, rollout, undo, logs, describe, delete.

These run against the session's `workload_cluster` (a cluster process WITH
the kubelet), so every pod is a real Docker container on the host network.
What is checked is what a person at a terminal relies on: the exit status and
the words kubectl prints, not our internal objects. Each test applies its own
namespace in its manifest and deletes it afterwards; the session fixture
removes any container left over by the cluster id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.cluster.workloads import docker_engine, registry_image, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine", "registry_image"]  # session fixtures used by name

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"


def web_deployment(name: str, namespace: str, image: str, *, replicas: int = 2, env: dict[str, str] | None = None) -> Obj:
    """A Deployment serving HTTP on its pod IP, Ready once it answers `/` (the readiness probe)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 60,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                *({"name": k, "value": v} for k, v in (env or {}).items()),
                            ],
                            "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 1},
                        }
                    ],
                },
            },
        },
    }


def manifest(namespace: str, *objects: Obj) -> str:
    """A multi-document YAML manifest: the Namespace first, then `objects`, as `kubectl apply -f` reads it."""
    docs: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, *objects]
    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def config_map(name: str, namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "namespace": namespace},
        "data": {"GREETING": "hello"},
    }


def get_json(kubeconfig: Path, *args: str) -> Obj:
    return dict(json.loads(kubectl(kubeconfig, "get", *args, "-o", "json").stdout))


def containers_of(engine: docker.DockerClient, cluster: ClusterProcess, namespace: str) -> list[Any]:
    """The Docker containers the session cluster's kubelet runs for pods of `namespace` (by its labels)."""
    return list(
        engine.containers.list(
            all=True,
            filters={"label": [f"bootstrap.cluster/cluster-id={cluster.cluster_id}", f"io.kubernetes.pod.namespace={namespace}"]},
        )
    )


@pytest.fixture
def namespace(workload_cluster: ClusterProcess) -> Iterator[str]:
    """A fresh namespace name; the test's manifest creates it, teardown deletes it (cascading to its containers)."""
    name = unique("kc")
    yield name
    kubectl(workload_cluster.kubeconfig, "delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def test_apply_rollout_history_undo_logs_describe(
    workload_cluster: ClusterProcess, registry_image: tuple[str, str], namespace: str
) -> None:
    kc, image = workload_cluster.kubeconfig, registry_image[0]
    name = unique("web")
    applied = kubectl(
        kc, "apply", "--server-side", "--field-manager=contract", "-f", "-",
        input=manifest(namespace, config_map(name, namespace), web_deployment(name, namespace, image)),
    )  # fmt: skip
    assert applied.stdout.split("\n")[:3] == [
        f"namespace/{namespace} serverside-applied",
        f"configmap/{name}-config serverside-applied",
        f"deployment.apps/{name} serverside-applied",
    ]
    status = kubectl(kc, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=60s")
    assert f'deployment "{name}" successfully rolled out' in status.stdout
    d = get_json(kc, "-n", namespace, "deployment", name, "--show-managed-fields")
    assert d["status"]["availableReplicas"] == d["status"]["readyReplicas"] == 2
    assert any(m["manager"] == "contract" and m["operation"] == "Apply" for m in d["metadata"]["managedFields"])
    [rs1] = get_json(kc, "-n", namespace, "replicasets", "-l", f"app={name}")["items"]

    # Revision 2: the same manifest with a changed template, applied again.
    v2 = web_deployment(name, namespace, image, env={"VERSION": "2"})
    v2["metadata"]["annotations"] = {"kubernetes.io/change-cause": "version 2"}
    kubectl(kc, "apply", "--server-side", "--field-manager=contract", "-f", "-", input=manifest(namespace, v2))
    kubectl(kc, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=60s")
    history = kubectl(kc, "-n", namespace, "rollout", "history", f"deployment/{name}").stdout
    rows = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert rows == [["1", "<none>"], ["2", "version 2"]], history
    detail = kubectl(kc, "-n", namespace, "rollout", "history", f"deployment/{name}", "--revision=2").stdout
    assert re.search(r"VERSION:\s+2\n", detail) and "kubernetes.io/change-cause: version 2" in detail, detail

    # Undo: back to revision 1's template, by scaling its ReplicaSet up again (no third ReplicaSet).
    undo = kubectl(kc, "-n", namespace, "rollout", "undo", f"deployment/{name}")
    assert f"deployment.apps/{name} rolled back" in undo.stdout
    kubectl(kc, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=60s")
    d = get_json(kc, "-n", namespace, "deployment", name)
    env_names = [e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert env_names == ["POD_IP"]
    assert d["metadata"]["annotations"][REVISION] == "3"
    rss = {rs["metadata"]["name"]: rs for rs in get_json(kc, "-n", namespace, "replicasets", "-l", f"app={name}")["items"]}
    assert len(rss) == 2
    reused = rss[rs1["metadata"]["name"]]
    assert reused["metadata"]["uid"] == rs1["metadata"]["uid"]
    assert (reused["spec"]["replicas"], reused["metadata"]["annotations"][REVISION]) == (2, "3")
    history = kubectl(kc, "-n", namespace, "rollout", "history", f"deployment/{name}").stdout
    assert [line.split(None, 1)[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]

    # logs: the readiness probe's requests, as http.server logs them, from a pod of the deployment.
    def probe_logged() -> str:
        out = kubectl(kc, "-n", namespace, "logs", f"deployment/{name}").stdout
        assert '"GET / HTTP/1.1" 200' in out, out
        return out

    poll_until(probe_logged, timeout=10, what="probe requests in kubectl logs")

    described = kubectl(kc, "-n", namespace, "describe", "deployment", name).stdout
    assert re.search(r"Progressing\s+True\s+NewReplicaSetAvailable", described), described
    assert f"NewReplicaSet:   {rs1['metadata']['name']} (2/2 replicas created)" in described, described
    assert "ScalingReplicaSet" in described and f"Scaled up replica set {rs1['metadata']['name']} from 0 to 2" in described
    pod = get_json(
        kc, "-n", namespace, "pods", "-l", f"app={name},pod-template-hash={reused['metadata']['labels']['pod-template-hash']}"
    )["items"][0]["metadata"]["name"]
    described = kubectl(kc, "-n", namespace, "describe", "pod", pod).stdout
    for pattern in (
        r"\nStatus:\s+Running\n",
        r"\n\s+Ready\s+True",
        r"Normal\s+Scheduled\s.*default-scheduler",
        r"Normal\s+Started\s.*kubelet",
    ):
        assert re.search(pattern, described), (pattern, described)


def test_crashing_image_exceeds_progress_deadline(
    workload_cluster: ClusterProcess, registry_image: tuple[str, str], namespace: str
) -> None:
    kc, image = workload_cluster.kubeconfig, registry_image[0]
    name = unique("crash")
    crasher = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "command": ["python3", "-c", "import sys; print('boom: no config'); sys.exit(3)"],
                        }
                    ],
                },
            },
        },
    }
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(namespace, crasher))
    started = time.monotonic()
    status = kubectl(kc, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=30s", check=False)
    assert status.returncode == 1, status
    assert f'deployment "{name}" exceeded its progress deadline' in status.stderr
    assert time.monotonic() - started < 20

    def crashed_once() -> str:
        [pod] = get_json(kc, "-n", namespace, "pods", "-l", f"app={name}")["items"]
        assert pod["status"]["containerStatuses"][0]["restartCount"] >= 1, pod["status"]
        return str(pod["metadata"]["name"])

    pod = poll_until(crashed_once, timeout=15, what="a restarted container")
    previous = kubectl(kc, "-n", namespace, "logs", pod, "--previous")
    assert previous.stdout.strip().splitlines()[-1] == "boom: no config"
    table = kubectl(kc, "-n", namespace, "get", "pod", pod).stdout
    assert "CrashLoopBackOff" in table or "Error" in table, table

    described = kubectl(kc, "-n", namespace, "describe", "deployment", name).stdout
    assert re.search(r"Progressing\s+False\s+ProgressDeadlineExceeded", described), described
    described = kubectl(kc, "-n", namespace, "describe", "pod", pod).stdout
    assert re.search(r"Exit Code:\s+3\n", described) and "Back-off restarting failed container app" in described, described


def test_delete_cascades_to_replicasets_pods_and_containers(
    workload_cluster: ClusterProcess, registry_image: tuple[str, str], namespace: str, docker_engine: docker.DockerClient
) -> None:
    kc, image = workload_cluster.kubeconfig, registry_image[0]
    name = unique("del")
    kubectl(
        kc, "apply", "--server-side", "-f", "-",
        input=manifest(namespace, config_map(name, namespace), web_deployment(name, namespace, image)),
    )  # fmt: skip
    kubectl(kc, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=60s")
    running = containers_of(docker_engine, workload_cluster, namespace)
    assert len(running) == 2 and all(c.status == "running" for c in running)
    assert {c.labels["io.kubernetes.container.name"] for c in running} == {"web"}

    deleted = kubectl(kc, "-n", namespace, "delete", "deployment", name)
    assert f'deployment.apps "{name}" deleted' in deleted.stdout

    def all_gone() -> bool:
        rs = kubectl(kc, "-n", namespace, "get", "replicasets,pods", "-l", f"app={name}", "-o", "name").stdout.split()
        assert rs == [], rs
        left = containers_of(docker_engine, workload_cluster, namespace)
        assert left == [], [c.name for c in left]
        return True

    poll_until(all_gone, timeout=20, what="replica sets, pods and containers deleted")
    gone = kubectl(kc, "-n", namespace, "get", "deployment", name, check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr
