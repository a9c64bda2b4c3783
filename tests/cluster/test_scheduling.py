"""The scheduler's node filter: a pod whose nodeSelector or required node affinity the node does not meet stays
Pending with PodScheduled False (Unschedulable) and one FailedScheduling event, as kube-scheduler leaves it; one that
fits runs; labelling the node (`kubectl label node`) lets a waiting pod through, as kube-scheduler retries on node
updates. What `[apps.X].architecture` relies on (its `kubernetes.io/arch` nodeSelector)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bootstrap.cluster.kubelet.node import arch
from bootstrap.cluster.kubelet.scheduling import NO_MATCH, unschedulable_reason
from tests.cluster.workloads import docker_engine, registry_image, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine", "registry_image"]  # session fixtures used by name

OTHER_ARCH = "arm64" if arch() != "arm64" else "amd64"


def pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": ["sleep", "300"]}],
            **spec,
        },
    }


def get(cluster: ClusterProcess, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(cluster.kubeconfig, "get", "pod", name, "-n", ns, "-o", "json").stdout))


@pytest.mark.unit
def test_node_filter_unit() -> None:
    labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": "n"}
    assert unschedulable_reason({"spec": {}}, labels, "n") is None
    assert unschedulable_reason({"spec": {"nodeSelector": {"kubernetes.io/arch": "amd64"}}}, labels, "n") is None
    assert unschedulable_reason({"spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"}}}, labels, "n") == NO_MATCH

    def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
        required = {"nodeSelectorTerms": list(terms)}
        return {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}}

    arm = {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}
    not_arm = {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "NotIn", "values": ["arm64"]}]}
    gpu = {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    named = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}
    assert unschedulable_reason(affinity(arm), labels, "n") == NO_MATCH
    assert unschedulable_reason(affinity(arm, not_arm), labels, "n") is None  # terms are ORed
    assert unschedulable_reason(affinity(gpu), labels, "n") == NO_MATCH
    assert unschedulable_reason(affinity(named), labels, "n") is None
    assert unschedulable_reason(affinity({}), labels, "n") == NO_MATCH  # an empty term matches nothing


def test_a_pod_for_another_architecture_stays_pending_until_the_node_fits(
    workload_cluster: ClusterProcess, registry_image: tuple[str, str]
) -> None:
    ns = unique("sched")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    kubectl(workload_cluster.kubeconfig, "apply", "-f", "-", input=json.dumps(namespace))
    image = registry_image[0]
    try:
        manifests = [
            pod("fits", image, nodeSelector={"kubernetes.io/arch": arch()}),
            pod("other-arch", image, nodeSelector={"kubernetes.io/arch": OTHER_ARCH}),
            pod("needs-label", image, nodeSelector={"pipeline.test/pool": ns}),
        ]
        for manifest in manifests:
            kubectl(workload_cluster.kubeconfig, "apply", "-n", ns, "-f", "-", input=json.dumps(manifest))

        poll_until(lambda: get(workload_cluster, ns, "fits")["status"].get("phase") == "Running", timeout=60, what="fits")

        def unschedulable(name: str) -> dict[str, Any] | None:
            conditions = get(workload_cluster, ns, name)["status"].get("conditions") or []
            return next((c for c in conditions if c["type"] == "PodScheduled" and c["status"] == "False"), None)

        condition = poll_until(lambda: unschedulable("other-arch"), timeout=30, what="other-arch marked unschedulable")
        assert condition["reason"] == "Unschedulable" and condition["message"] == NO_MATCH
        other = get(workload_cluster, ns, "other-arch")
        assert other["status"]["phase"] == "Pending" and not other["spec"].get("nodeName")
        events = kubectl(
            workload_cluster.kubeconfig,
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=other-arch,reason=FailedScheduling",
            "-o",
            "json",
        ).stdout
        [event] = json.loads(events)["items"]
        assert event["type"] == "Warning" and event["message"] == NO_MATCH
        described = kubectl(workload_cluster.kubeconfig, "describe", "pod", "other-arch", "-n", ns).stdout
        assert "FailedScheduling" in described and "didn't match Pod's node affinity/selector" in described

        poll_until(lambda: unschedulable("needs-label"), timeout=30, what="needs-label marked unschedulable")
        node = get(workload_cluster, ns, "fits")["spec"]["nodeName"]
        kubectl(workload_cluster.kubeconfig, "label", "node", node, f"pipeline.test/pool={ns}")
        try:
            poll_until(
                lambda: get(workload_cluster, ns, "needs-label")["status"].get("phase") == "Running",
                timeout=60,
                what="needs-label scheduled once the node has its label",
            )
        finally:
            kubectl(workload_cluster.kubeconfig, "label", "node", node, "pipeline.test/pool-", check=False)
        assert not get(workload_cluster, ns, "other-arch")["spec"].get("nodeName")
    finally:
        kubectl(workload_cluster.kubeconfig, "delete", "namespace", ns, "--wait=false", check=False)
