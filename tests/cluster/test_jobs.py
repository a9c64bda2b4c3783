"""batch/v1 Jobs through the real kubectl, against the session's `workload_cluster` (pods are Docker containers).

Each test creates its Job in a fresh namespace; the pods run the base image
with a short `python3 -c` command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.workloads import BASE_IMAGE, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

Obj = dict[str, Any]


def job(name: str, namespace: str, code: str, *, restart: str = "Never", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": restart,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "work", "image": BASE_IMAGE, "command": ["python3", "-c", code]}],
                }
            },
        },
    }


def get_json(kc: Path, *args: str) -> Obj:
    return dict(json.loads(kubectl(kc, "get", *args, "-o", "json").stdout))


def conditions(j: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (j.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


@pytest.fixture
def namespace(workload_cluster: ClusterProcess) -> Iterator[str]:
    name = unique("job")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kubectl(workload_cluster.kubeconfig, "create", "-f", "-", input=yaml.safe_dump(ns))
    yield name
    kubectl(workload_cluster.kubeconfig, "delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def test_job_succeeds_with_defaults_and_table(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc, name = workload_cluster.kubeconfig, unique("ok")
    out = kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(job(name, namespace, "print('done')")))
    assert f"job.batch/{name} created" in out.stdout
    j = get_json(kc, "-n", namespace, "job", name)
    uid, spec = j["metadata"]["uid"], j["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert (spec["completionMode"], spec["suspend"], spec["manualSelector"]) == ("NonIndexed", False, False)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == uid
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == name

    waited = kubectl(kc, "-n", namespace, "wait", "--for=condition=complete", "--timeout=60s", f"job/{name}")
    assert f"job.batch/{name} condition met" in waited.stdout
    j = get_json(kc, "-n", namespace, "job", name)
    assert j["status"]["succeeded"] == 1 and j["status"]["completionTime"] and j["status"]["startTime"]
    assert set(conditions(j)) == {"SuccessCriteriaMet", "Complete"}
    [pod] = get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == ("Job", uid, True, True)
    assert pod["status"]["phase"] == "Succeeded"
    assert "done" in kubectl(kc, "-n", namespace, "logs", pod["metadata"]["name"]).stdout

    table = kubectl(kc, "-n", namespace, "get", "jobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == [name, "Complete", "1/1"]

    # Deleting with propagation takes the pods along (garbage collection by owner reference).
    kubectl(kc, "-n", namespace, "delete", "job", name, "--cascade=foreground", "--timeout=60s")
    poll_until(lambda: not get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"], timeout=30, what="pods gone")


def test_completions_and_parallelism(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc, name = workload_cluster.kubeconfig, unique("par")
    manifest = job(name, namespace, "import time; time.sleep(1)", completions=3, parallelism=2)
    kubectl(kc, "apply", "-f", "-", input=yaml.safe_dump(manifest))
    first = poll_until(lambda: get_json(kc, "-n", namespace, "job", name)["status"].get("active"), what="active pods")
    assert first <= 2
    kubectl(kc, "-n", namespace, "wait", "--for=condition=complete", "--timeout=60s", f"job/{name}")
    j = get_json(kc, "-n", namespace, "job", name)
    assert j["status"]["succeeded"] == 3 and "active" not in j["status"]
    assert len(get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"]) == 3
    assert kubectl(kc, "-n", namespace, "get", "job", name).stdout.splitlines()[1].split()[1:3] == ["Complete", "3/3"]


def test_backoff_limit_fails_the_job(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc, name = workload_cluster.kubeconfig, unique("fail")
    kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(job(name, namespace, "raise SystemExit(3)", backoffLimit=1)))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=failed", "--timeout=60s", f"job/{name}")
    j = get_json(kc, "-n", namespace, "job", name)
    conds = conditions(j)
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded" and "FailureTarget" in conds
    assert j["status"]["failed"] == 2 and "completionTime" not in j["status"]
    pods = get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert kubectl(kc, "-n", namespace, "get", "job", name).stdout.splitlines()[1].split()[1:3] == ["Failed", "0/1"]


def test_active_deadline_fails_the_job_and_deletes_its_pods(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc, name = workload_cluster.kubeconfig, unique("dl")
    manifest = job(name, namespace, "import time; time.sleep(120)", activeDeadlineSeconds=3)
    kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(manifest))
    kubectl(kc, "-n", namespace, "wait", "--for=condition=failed", "--timeout=60s", f"job/{name}")
    assert conditions(get_json(kc, "-n", namespace, "job", name))["Failed"]["reason"] == "DeadlineExceeded"
    poll_until(lambda: not get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"], timeout=30, what="pods gone")


def test_ttl_after_finished_deletes_the_job(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc, name = workload_cluster.kubeconfig, unique("ttl")
    kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(job(name, namespace, "pass", ttlSecondsAfterFinished=1)))

    def gone() -> bool:
        result = kubectl(kc, "-n", namespace, "get", "job", name, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    poll_until(gone, timeout=60, interval=0.5, what="job deleted after its TTL")
    poll_until(lambda: not get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"], timeout=30, what="pods gone")


def test_restart_policy_always_is_invalid(workload_cluster: ClusterProcess, namespace: str) -> None:
    kc = workload_cluster.kubeconfig
    manifest = job("always", namespace, "pass", restart="Always")
    result = kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in result.stderr, result.stderr
    assert "is invalid" in result.stderr


def test_discovery_explain_apply_and_python_client(workload_cluster: ClusterProcess, namespace: str) -> None:
    from kubernetes import client, config

    kc, name = workload_cluster.kubeconfig, unique("ssa")
    resources = kubectl(kc, "api-resources", "--api-group=batch").stdout.splitlines()
    assert [line.split() for line in resources[1:]] == [
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        ["jobs", "batch/v1", "true", "Job"],
    ]
    assert "backoffLimit" in kubectl(kc, "explain", "job.spec.backoffLimit").stdout
    manifest = yaml.safe_dump(job(name, namespace, "pass", suspend=True))
    applied = kubectl(kc, "apply", "--server-side", "--field-manager=jobs", "-f", "-", input=manifest)
    assert f"job.batch/{name} serverside-applied" in applied.stdout
    before = get_json(kc, "-n", namespace, "job", name)
    kubectl(kc, "apply", "--server-side", "--field-manager=jobs", "-f", "-", input=manifest)
    assert get_json(kc, "-n", namespace, "job", name)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not get_json(kc, "-n", namespace, "pods", "-l", f"job-name={name}")["items"]  # suspended: no pods

    api_client = config.new_client_from_config(config_file=str(kc))
    try:
        batch = client.BatchV1Api(api_client)
        read = batch.read_namespaced_job(name, namespace)
        assert read.spec.backoff_limit == 6 and read.spec.suspend is True
        assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == [name]
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    finally:
        api_client.close()
