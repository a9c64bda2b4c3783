"""autoscaling/v1 HorizontalPodAutoscalers served over the v2 storage, converted as Kubernetes converts them
(pkg/apis/autoscaling/v1/conversion.go), through the `kubernetes` client and the real kubectl (API-only
session cluster). The conversion functions are also checked on their own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bootstrap.cluster.hpa_v1 import METRICS, from_v1, to_v1
from tests.helpers.cluster import ClusterProcess, kubectl

Obj = dict[str, Any]
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
PODS_METRIC = {
    "type": "Pods",
    "pods": {"metric": {"name": "queue_depth"}, "target": {"type": "AverageValue", "averageValue": "5"}},
}


def cpu(percent: int) -> Obj:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}


@pytest.mark.unit
def test_v2_to_v1_and_back_keeps_every_metric() -> None:
    stored = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "ns", "annotations": {"team": "a"}},
        "spec": {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 6, "metrics": [PODS_METRIC, cpu(60)]},
        "status": {"currentReplicas": 2, "desiredReplicas": 3},
    }
    v1 = to_v1(stored)
    assert v1["spec"] == {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60}
    assert json.loads(v1["metadata"]["annotations"][METRICS]) == [
        {"type": "Pods", "pods": {"metricName": "queue_depth", "targetAverageValue": "5"}}
    ]
    assert v1["status"] == {"currentReplicas": 2, "desiredReplicas": 3}
    back = from_v1(v1)
    assert back["spec"]["metrics"] == [PODS_METRIC, cpu(60)]  # the annotation's metrics, then the cpu target
    assert back["metadata"]["annotations"] == {"team": "a"}  # round-trip annotations are not stored


@pytest.mark.unit
def test_v1_without_a_target_is_the_implicit_80_percent() -> None:
    v2 = from_v1({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": REF, "maxReplicas": 3}})
    assert v2["spec"]["metrics"] == [cpu(80)]
    assert to_v1(v2)["status"] == {"currentReplicas": 0, "desiredReplicas": 0}


def hpa_v1(name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": REF, "maxReplicas": 5, **spec},
    }


def test_v1_and_v2_are_one_object(api: client.ApiClient, namespace: str) -> None:
    v1, v2 = client.AutoscalingV1Api(api), client.AutoscalingV2Api(api)
    created = v1.create_namespaced_horizontal_pod_autoscaler(namespace, hpa_v1("web", targetCPUUtilizationPercentage=50))
    assert created.api_version == "autoscaling/v1" and created.spec.target_cpu_utilization_percentage == 50
    assert created.spec.min_replicas == 1  # defaulted
    seen = v2.read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert [m.to_dict()["resource"]["target"]["average_utilization"] for m in seen.spec.metrics] == [50]

    # a v2 change shows in v1, the extra metric in the round-trip annotation
    seen.spec.metrics = [client.V2MetricSpec(**_snake(PODS_METRIC)), seen.spec.metrics[0]]
    v2.replace_namespaced_horizontal_pod_autoscaler("web", namespace, seen)
    again = v1.read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert again.spec.target_cpu_utilization_percentage == 50
    assert json.loads(again.metadata.annotations[METRICS])[0]["pods"]["metricName"] == "queue_depth"

    # a v1 read-modify-write keeps the metric v1 cannot express
    again.spec.target_cpu_utilization_percentage = 70
    v1.replace_namespaced_horizontal_pod_autoscaler("web", namespace, again)
    metrics = [m.to_dict() for m in v2.read_namespaced_horizontal_pod_autoscaler("web", namespace).spec.metrics]
    assert [m["type"] for m in metrics] == ["Pods", "Resource"]
    assert metrics[1]["resource"]["target"]["average_utilization"] == 70

    v1.patch_namespaced_horizontal_pod_autoscaler("web", namespace, {"spec": {"maxReplicas": 9}})
    assert v2.read_namespaced_horizontal_pod_autoscaler("web", namespace).spec.max_replicas == 9
    listed = v1.list_namespaced_horizontal_pod_autoscaler(namespace)
    assert [h.metadata.name for h in listed.items] == ["web"]
    v1.delete_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert v2.list_namespaced_horizontal_pod_autoscaler(namespace).items == []


def _snake(metric: Obj) -> Obj:
    pods = metric["pods"]
    return {
        "type": "Pods",
        "pods": client.V2PodsMetricSource(
            metric=client.V2MetricIdentifier(name=pods["metric"]["name"]),
            target=client.V2MetricTarget(type="AverageValue", average_value=pods["target"]["averageValue"]),
        ),
    }


def test_v1_validation_and_discovery(api: client.ApiClient, namespace: str, cluster: ClusterProcess) -> None:
    with pytest.raises(ApiException) as caught:
        client.AutoscalingV1Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, hpa_v1("bad", maxReplicas=0))
    body = json.loads(caught.value.body)
    assert caught.value.status == 422 and "spec.maxReplicas: Invalid value: 0: must be greater than 0" in body["message"]
    group = json.loads(kubectl(cluster.kubeconfig, "get", "--raw", "/apis/autoscaling").stdout)
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"] and group["preferredVersion"]["version"] == "v2"
    listed = json.loads(kubectl(cluster.kubeconfig, "get", "--raw", "/apis/autoscaling/v1").stdout)
    assert listed["groupVersion"] == "autoscaling/v1"
    assert {r["name"] for r in listed["resources"]} == {"horizontalpodautoscalers", "horizontalpodautoscalers/status"}


def test_kubectl_autoscale_and_get(cluster: ClusterProcess, namespace: str) -> None:
    kc = cluster.kubeconfig
    kubectl(kc, "-n", namespace, "create", "deployment", "web", "--image=busybox:1.36")
    kubectl(kc, "-n", namespace, "autoscale", "deployment", "web", "--max=4", "--cpu-percent=65")
    as_v1 = json.loads(kubectl(kc, "-n", namespace, "get", "horizontalpodautoscalers.v1.autoscaling", "web", "-o", "json").stdout)
    assert as_v1["apiVersion"] == "autoscaling/v1" and as_v1["spec"]["targetCPUUtilizationPercentage"] == 65
    table = kubectl(kc, "-n", namespace, "get", "hpa").stdout.splitlines()
    assert table[1].split()[:2] == ["web", "Deployment/web"] and "65%" in table[1]
