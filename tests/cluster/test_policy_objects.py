"""policy/v1 PodDisruptionBudgets and autoscaling/v2 HorizontalPodAutoscalers, stored, defaulted and validated
as Kubernetes 1.32 does (no eviction API and no autoscaling here: the objects are kept, as on a cluster
without a metrics server). Through the real kubernetes client and kubectl."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.cluster import ClusterProcess, kubectl


@pytest.fixture
def policy(api: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api)


@pytest.fixture
def autoscaling(api: client.ApiClient) -> client.AutoscalingV2Api:
    return client.AutoscalingV2Api(api)


def _invalid(call: Any, *args: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call(*args)
    assert caught.value.status == 422, caught.value.body
    status: dict[str, Any] = json.loads(caught.value.body)
    assert status["reason"] == "Invalid"
    return status


def _pdb(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def _hpa(name: str, **spec: Any) -> dict[str, Any]:
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    return {"metadata": {"name": name}, "spec": {"scaleTargetRef": target, "maxReplicas": 5, **spec}}


def test_pdb_create_and_status(policy: client.PolicyV1Api, namespace: str, cluster: ClusterProcess) -> None:
    created = policy.create_namespaced_pod_disruption_budget(namespace, _pdb("web", minAvailable=1))
    assert created.spec.min_available == 1 and created.spec.max_unavailable is None
    assert created.status.to_dict()["disruptions_allowed"] == 0
    policy.create_namespaced_pod_disruption_budget(namespace, _pdb("pct", maxUnavailable="25%"))
    names = [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(namespace).items]
    assert sorted(names) == ["pct", "web"]
    lines = kubectl(cluster.kubeconfig, "get", "pdb", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert lines[1].split()[:4] == ["pct", "N/A", "25%", "0"]
    assert lines[2].split()[:4] == ["web", "1", "N/A", "0"]


def test_pdb_validation(policy: client.PolicyV1Api, namespace: str) -> None:
    status = _invalid(policy.create_namespaced_pod_disruption_budget, namespace, _pdb("both", minAvailable=1, maxUnavailable=1))
    assert status["message"] == (
        'PodDisruptionBudget.policy "both" is invalid: spec.minAvailable: Invalid value: '
        'intstr.IntOrString{Type:0, IntVal:1, StrVal:""}: minAvailable and maxUnavailable cannot be both set'
    )
    status = _invalid(policy.create_namespaced_pod_disruption_budget, namespace, _pdb("neg", minAvailable=-1))
    assert status["details"]["causes"][0]["message"] == "Invalid value: -1: must be greater than or equal to 0"
    status = _invalid(policy.create_namespaced_pod_disruption_budget, namespace, _pdb("pct", maxUnavailable="150%"))
    assert status["details"]["causes"][0]["field"] == "spec.maxUnavailable"
    assert "must not be greater than 100%" in status["message"]


def test_pdb_apply_with_kubectl(cluster: ClusterProcess, namespace: str) -> None:
    manifest = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", **_pdb("web", minAvailable="50%")}
    kubectl(cluster.kubeconfig, "apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    got = json.loads(kubectl(cluster.kubeconfig, "get", "pdb", "web", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["minAvailable"] == "50%"
    both = dict(manifest, spec=dict(manifest["spec"], maxUnavailable=1))
    result = kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", "-", input=json.dumps(both), check=False)
    assert result.returncode != 0 and "minAvailable and maxUnavailable cannot be both set" in result.stderr


def test_hpa_create_defaults_and_columns(autoscaling: client.AutoscalingV2Api, namespace: str, cluster: ClusterProcess) -> None:
    created = autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, _hpa("web"))
    assert created.spec.min_replicas == 1
    [metric] = created.spec.metrics
    assert (metric.type, metric.resource.name, metric.resource.target.average_utilization) == ("Resource", "cpu", 80)
    assert created.status.desired_replicas == 0
    lines = kubectl(cluster.kubeconfig, "get", "hpa", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert lines[1].split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/80%", "1", "5", "0"]
    resources = kubectl(cluster.kubeconfig, "api-resources", "--api-group", "autoscaling", "-o", "wide").stdout
    assert "horizontalpodautoscalers" in resources and "autoscaling/v2" in resources


def test_hpa_validation(autoscaling: client.AutoscalingV2Api, namespace: str) -> None:
    create = autoscaling.create_namespaced_horizontal_pod_autoscaler
    status = _invalid(create, namespace, _hpa("zero", minReplicas=0))
    assert status["message"] == (
        'HorizontalPodAutoscaler.autoscaling "zero" is invalid: '
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"
    )
    status = _invalid(create, namespace, _hpa("inverted", minReplicas=6))
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 5: must be greater than or equal to `minReplicas`",
            "field": "spec.maxReplicas",
        }
    ]
    status = _invalid(create, namespace, _hpa("nomax", maxReplicas=0))
    assert "spec.maxReplicas: Invalid value: 0: must be greater than 0" in status["message"]


def test_hpa_without_scale_target_ref(cluster: ClusterProcess, namespace: str) -> None:
    """The Python client refuses this body itself; kubectl sends it and gets the API's 422."""
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **_hpa("notarget")}
    del body["spec"]["scaleTargetRef"]
    result = kubectl(cluster.kubeconfig, "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert (
        'The HorizontalPodAutoscaler "notarget" is invalid: \n'
        "* spec.scaleTargetRef.kind: Required value\n"
        "* spec.scaleTargetRef.name: Required value"
    ) in result.stderr
