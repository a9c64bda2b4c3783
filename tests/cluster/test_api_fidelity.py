"""Answers that must match kube-apiserver 1.32 byte for byte in shape: create status, ClusterIPs, DELETE bodies, trailing slashes."""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers import unique_name
from tests.helpers.cluster import ClusterProcess, kubectl


def raw(cluster: ClusterProcess, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(cluster.base_url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {cluster.token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def pod_manifest(name: str, resources: dict | None = None) -> dict:
    container: dict = {"name": "c", "image": "busybox:1.36"}
    if resources is not None:
        container["resources"] = resources
    return {"metadata": {"name": name}, "spec": {"containers": [container]}}


def service_manifest(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec},
    }


# ----- 1. create responses carry the status the registry resets -----


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        (None, "BestEffort"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        ({"limits": {"cpu": "100m", "memory": "64Mi"}}, "Guaranteed"),
    ],
)
def test_created_pod_is_pending_with_its_qos_class(
    api: client.ApiClient, namespace: str, resources: dict | None, qos: str
) -> None:
    core = client.CoreV1Api(api)
    body = pod_manifest("p", resources)
    body["status"] = {"phase": "Running", "podIP": "1.2.3.4"}  # the client's status is dropped
    created = core.create_namespaced_pod(namespace, body)
    assert created.status.phase == "Pending"
    assert created.status.qos_class == qos
    assert created.status.pod_ip is None
    fetched = core.read_namespaced_pod("p", namespace)
    assert api.sanitize_for_serialization(fetched) == api.sanitize_for_serialization(created)


def test_created_service_status_and_defaults(cluster: ClusterProcess, namespace: str) -> None:
    code, created = raw(cluster, "POST", f"/api/v1/namespaces/{namespace}/services", service_manifest("web"))
    assert code == 201
    assert created["status"] == {"loadBalancer": {}}
    spec = created["spec"]
    ip = spec["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    assert ip != "10.96.0.1"
    assert spec["clusterIPs"] == [ip]
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert raw(cluster, "GET", f"/api/v1/namespaces/{namespace}/services/web") == (200, created)


# ----- 2. ClusterIP allocation -----


def test_cluster_ips_are_unique_and_skip_headless_and_external_name(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    ips = {core.create_namespaced_service(namespace, service_manifest(f"s{i}")).spec.cluster_ip for i in range(8)}
    assert len(ips) == 8
    headless = core.create_namespaced_service(namespace, service_manifest("headless", clusterIP="None"))
    assert headless.spec.cluster_ip == "None"
    assert headless.spec.cluster_ips == ["None"]
    external = core.create_namespaced_service(
        namespace, {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    )
    assert external.spec.cluster_ip is None
    assert external.spec.cluster_ips is None


def test_requested_cluster_ip_in_use_or_out_of_range_is_invalid(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    first = core.create_namespaced_service(namespace, service_manifest("a"))
    with pytest.raises(ApiException) as taken:
        core.create_namespaced_service(namespace, service_manifest("b", clusterIP=first.spec.cluster_ip))
    assert taken.value.status == 422
    assert "provided IP is already allocated" in json.loads(taken.value.body)["message"]
    with pytest.raises(ApiException) as outside:
        core.create_namespaced_service(namespace, service_manifest("c", clusterIP="192.168.0.10"))
    assert outside.value.status == 422


def test_cluster_ip_is_immutable_and_kept_on_replace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(namespace, service_manifest("web"))
    ip = svc.spec.cluster_ip
    # a replace that leaves clusterIP out keeps the allocated one
    body = service_manifest("web")
    body["metadata"]["resourceVersion"] = svc.metadata.resource_version
    replaced = core.replace_namespaced_service("web", namespace, body)
    assert replaced.spec.cluster_ip == ip
    assert replaced.spec.cluster_ips == [ip]
    other = "10.96.200.200" if ip != "10.96.200.200" else "10.96.200.201"
    with pytest.raises(ApiException) as changed:
        core.patch_namespaced_service("web", namespace, {"spec": {"clusterIP": other, "clusterIPs": [other]}})
    assert changed.value.status == 422
    message = json.loads(changed.value.body)["message"]
    assert (
        message == f'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{{"{other}"}}: may not change once set'
    )
    assert core.read_namespaced_service("web", namespace).spec.cluster_ip == ip


def test_kubectl_sees_the_cluster_ip(cluster: ClusterProcess, namespace: str) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "create", "-f", "-", input=json.dumps(service_manifest("web")))
    shown = kubectl(cluster.kubeconfig, "-n", namespace, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ipaddress.ip_address(shown) in ipaddress.ip_network("10.96.0.0/12")
    # client-side apply of the same manifest (no clusterIP) is accepted and keeps it
    kubectl(cluster.kubeconfig, "-n", namespace, "apply", "-f", "-", input=json.dumps(service_manifest("web")))
    again = kubectl(cluster.kubeconfig, "-n", namespace, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert again == shown
    for _ in range(2):  # server-side apply, creating and then updating, keeps it too
        kubectl(
            cluster.kubeconfig, "-n", namespace, "apply", "--server-side", "-f", "-", input=json.dumps(service_manifest("ssa"))
        )
    ssa = kubectl(cluster.kubeconfig, "-n", namespace, "get", "service", "ssa", "-o", "jsonpath={.spec.clusterIPs}").stdout
    assert json.loads(ssa)[0] != shown


# ----- 3. DELETE answers -----


def test_delete_service_and_service_account_return_the_object(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(namespace, service_manifest("web"))
    deleted = core.delete_namespaced_service("web", namespace)
    assert isinstance(deleted, client.V1Service)
    assert deleted.kind == "Service"
    assert deleted.metadata.name == "web"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    gone = core.delete_namespaced_service_account("robot", namespace)
    assert isinstance(gone, client.V1ServiceAccount)
    assert gone.metadata.name == "robot"
    core.create_namespaced_pod(namespace, pod_manifest("p"))
    pod = core.delete_namespaced_pod("p", namespace)
    assert isinstance(pod, client.V1Pod)
    assert pod.metadata.name == "p"


@pytest.mark.parametrize(
    ("path", "plural", "group", "body"),
    [
        ("/api/v1/namespaces/{ns}/configmaps", "configmaps", None, {"metadata": {"name": "x"}}),
        ("/api/v1/namespaces/{ns}/secrets", "secrets", None, {"metadata": {"name": "x"}}),
        (
            "/api/v1/namespaces/{ns}/events",
            "events",
            None,
            {"metadata": {"name": "x"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R", "message": "m"},
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            "roles",
            "rbac.authorization.k8s.io",
            {"metadata": {"name": "x"}, "rules": []},
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            "rolebindings",
            "rbac.authorization.k8s.io",
            {"metadata": {"name": "x"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}},
        ),
    ],
)
def test_delete_answers_a_status_for_the_other_kinds(
    cluster: ClusterProcess, namespace: str, path: str, plural: str, group: str | None, body: dict
) -> None:
    base = path.format(ns=namespace)
    code, created = raw(cluster, "POST", base, body)
    assert code == 201, created
    code, dry = raw(cluster, "DELETE", base + "/x?dryRun=All")
    assert (code, dry["kind"]) == (200, "Status")
    assert raw(cluster, "GET", base + "/x")[0] == 200
    code, answer = raw(cluster, "DELETE", base + "/x")
    assert code == 200
    assert answer["kind"] == "Status"
    assert answer["status"] == "Success"
    details = {"name": "x", "kind": plural, "uid": created["metadata"]["uid"]}
    if group:
        details["group"] = group
    assert answer["details"] == details


def test_delete_with_pending_finalizer_returns_the_object(cluster: ClusterProcess, api: client.ApiClient, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    raw(cluster, "POST", base, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    code, answer = raw(cluster, "DELETE", base + "/held")
    assert code == 200
    assert answer["kind"] == "ConfigMap"
    assert answer["metadata"]["deletionTimestamp"]
    code, again = raw(cluster, "DELETE", base + "/held", {"kind": "DeleteOptions", "apiVersion": "v1", "orphanDependents": False})
    assert code == 202
    assert again["kind"] == "ConfigMap"
    client.CoreV1Api(api).patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    code, _ = raw(cluster, "GET", base + "/held")
    assert code == 404


def test_delete_namespace_returns_the_terminating_namespace(cluster: ClusterProcess) -> None:
    name = unique_name("fidns")
    raw(cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    code, answer = raw(cluster, "DELETE", f"/api/v1/namespaces/{name}")
    assert code == 200
    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"


# ----- 4. trailing slashes -----


@pytest.mark.parametrize("path", ["/version", "/api", "/apis"])
def test_root_paths_answer_with_a_trailing_slash(cluster: ClusterProcess, path: str) -> None:
    plain = raw(cluster, "GET", path)
    slashed = raw(cluster, "GET", path + "/")
    assert plain[0] == slashed[0] == 200
    assert plain[1] == slashed[1]
