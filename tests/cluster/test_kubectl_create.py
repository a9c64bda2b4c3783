"""`kubectl create <generator>` and `--dry-run=server`: kubectl's typed clients post protobuf bodies.

Each generator is run twice with the real kubectl, in two namespaces: once as is (a protobuf body,
`application/vnd.kubernetes.protobuf`), once as `--dry-run=client -o json` piped to `kubectl create -f -`
(a JSON body). Both objects must read back identically, managedFields included, apart from what the
server assigns (uid, resourceVersion, timestamps, a Service's cluster IP): the protobuf decoder
(bootstrap/cluster/protobuf.py) must yield exactly the JSON kubectl would have sent. Every test also
checks what `kubectl get -o json` shows against what Kubernetes stores for that generator.
Against the API-only session cluster (no kubelet, no Docker).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bootstrap.cluster import protobuf
from tests.helpers import unique_name
from tests.helpers.cluster import ClusterProcess, kubectl


@pytest.fixture
def two_namespaces(cluster: ClusterProcess) -> tuple[str, str]:
    names = unique_name("pb"), unique_name("js")
    for name in names:
        kubectl(cluster.kubeconfig, "create", "namespace", name)
    return names


def get_json(kubeconfig: Path, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl(kubeconfig, "get", *args, "-o", "json", "--show-managed-fields").stdout)
    return obj


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the server assigns per object, its namespace and uid replaced by placeholders."""
    meta = obj["metadata"]
    text = json.dumps(obj).replace(meta["uid"], "<uid>")
    if meta.get("namespace"):
        text = text.replace(f'"{meta["namespace"]}"', '"<ns>"')
    out: dict[str, Any] = json.loads(text)
    meta = out["metadata"]
    for key in ("resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    for entry in meta.get("managedFields", []):
        entry.pop("time", None)
    out.pop("status", None)
    for key in ("clusterIP", "clusterIPs"):
        out.get("spec", {}).pop(key, None)
    return out


def create_both(kubeconfig: Path, namespaces: tuple[str, str], resource: str, name: str, *generator: str) -> dict[str, Any]:
    """Run the generator as protobuf in the first namespace and as JSON in the second; the protobuf-made object."""
    pb_ns, json_ns = namespaces
    kubectl(kubeconfig, "-n", pb_ns, "create", *generator)
    manifest = kubectl(kubeconfig, "-n", json_ns, "create", "--dry-run=client", "-o", "json", *generator).stdout
    kubectl(kubeconfig, "create", "-f", "-", "-n", json_ns, input=manifest)
    from_protobuf = get_json(kubeconfig, resource, name, "-n", pb_ns)
    from_json = get_json(kubeconfig, resource, name, "-n", json_ns)
    assert normalized(from_protobuf) == normalized(from_json)
    assert {e["manager"] for e in from_protobuf["metadata"].get("managedFields", [])} <= {"kubectl-create"}
    return from_protobuf


def test_namespace(cluster: ClusterProcess) -> None:
    name = unique_name("gen")
    out = kubectl(cluster.kubeconfig, "create", "namespace", name).stdout
    assert out.strip() == f"namespace/{name} created"
    ns = get_json(cluster.kubeconfig, "namespace", name)
    assert ns["metadata"]["name"] == name
    assert [e["manager"] for e in ns["metadata"]["managedFields"]] == ["kubectl-create"]
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}


def test_configmap(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    cm = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "configmap",
        "cm",
        "configmap",
        "cm",
        "--from-literal=a=1",
        "--from-literal=b=two words",
    )
    assert cm["data"] == {"a": "1", "b": "two words"}
    assert "binaryData" not in cm


def test_secret_generic(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    secret = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "secret",
        "s",
        "secret",
        "generic",
        "s",
        "--from-literal=user=admin",
        "--from-literal=empty=",
    )
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": base64.b64encode(b"admin").decode(), "empty": ""}


def test_secret_docker_registry(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    secret = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "secret",
        "reg",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
        "--docker-email=u@example.com",
    )
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    auth = config["auths"]["registry.example"]
    assert auth["username"] == "u" and auth["password"] == "p" and auth["email"] == "u@example.com"
    assert base64.b64decode(auth["auth"]) == b"u:p"


def test_serviceaccount_and_token(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    sa = create_both(cluster.kubeconfig, two_namespaces, "serviceaccount", "robot", "serviceaccount", "robot")
    assert sa["metadata"]["name"] == "robot" and "secrets" not in sa
    token = kubectl(cluster.kubeconfig, "create", "token", "robot", "-n", two_namespaces[0], "--duration=20m").stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{two_namespaces[0]}:robot"
    assert claims["exp"] - claims["iat"] == 1200
    kubectl(cluster.kubeconfig, "-n", two_namespaces[0], "create", "secret", "generic", "bound", "--from-literal=k=v")
    bound = kubectl(
        cluster.kubeconfig,
        "-n",
        two_namespaces[0],
        "create",
        "token",
        "robot",
        "--bound-object-kind=Secret",
        "--bound-object-name=bound",
        "--audience=a",
        "--audience=b",
    ).stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(bound.split(".")[1] + "=="))
    assert claims["aud"] == ["a", "b"]
    assert claims["kubernetes.io"]["secret"]["name"] == "bound"


def test_role_and_rolebinding(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    role = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "role",
        "reader",
        "role",
        "reader",
        "--verb=get,list,watch",
        "--resource=pods,deployments.apps",
        "--resource-name=a",
    )
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["a"], "verbs": ["get", "list", "watch"]},
    ]
    binding = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "rolebinding",
        "readers",
        "rolebinding",
        "readers",
        "--role=reader",
        "--serviceaccount=tools:robot",
        "--user=alice",
    )
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "tools"},
    ]


def test_clusterrole_and_binding(cluster: ClusterProcess) -> None:
    name = unique_name("cr")
    kubectl(cluster.kubeconfig, "create", "clusterrole", name, "--verb=get", "--resource=nodes", "--non-resource-url=/healthz")
    role = get_json(cluster.kubeconfig, "clusterrole", name)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]
    kubectl(cluster.kubeconfig, "create", "clusterrolebinding", name, f"--clusterrole={name}", "--group=devs")
    binding = get_json(cluster.kubeconfig, "clusterrolebinding", name)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]


def test_deployment(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    deploy = create_both(
        cluster.kubeconfig,
        two_namespaces,
        "deployment",
        "web",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=80",
    )
    spec = deploy["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == "nginx" and container["image"] == "nginx:1.27"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    zero = create_both(
        cluster.kubeconfig, two_namespaces, "deployment", "idle", "deployment", "idle", "--image=nginx", "--replicas=0"
    )
    assert zero["spec"]["replicas"] == 0  # a pointer's zero value is sent and kept


def test_job(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    job = create_both(cluster.kubeconfig, two_namespaces, "job", "once", "job", "once", "--image=busybox", "--", "echo", "hi")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["echo", "hi"] and container["image"] == "busybox"
    assert job["spec"]["template"]["metadata"]["creationTimestamp"] is None  # a plain Time: null, as Kubernetes stores it
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_service_clusterip(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    svc = create_both(cluster.kubeconfig, two_namespaces, "service", "api", "service", "clusterip", "api", "--tcp=80:8080,443")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {"app": "api"}
    assert svc["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "443", "port": 443, "protocol": "TCP", "targetPort": 443},
    ]


def test_expose_named_target_port(cluster: ClusterProcess, namespace: str) -> None:
    """`kubectl expose` posts a Service whose targetPort is an IntOrString holding a string."""
    kubectl(cluster.kubeconfig, "-n", namespace, "create", "deployment", "web", "--image=nginx", "--port=8080")
    kubectl(cluster.kubeconfig, "-n", namespace, "expose", "deployment", "web", "--port=80", "--target-port=http")
    svc = get_json(cluster.kubeconfig, "service", "web", "-n", namespace)
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": "http"}]
    assert svc["spec"]["selector"] == {"app": "web"}


def test_run_pod(cluster: ClusterProcess, two_namespaces: tuple[str, str]) -> None:
    """`kubectl run` posts a Pod as protobuf too (env, labels, ports, resources as Quantity)."""
    pb_ns, json_ns = two_namespaces
    args = ["run", "p", "--image=busybox", "--env=A=1", "--labels=tier=x", "--port=8080", "--restart=Never", "--", "sleep", "1"]
    kubectl(cluster.kubeconfig, "-n", pb_ns, *args)
    manifest = kubectl(cluster.kubeconfig, "-n", json_ns, "run", "--dry-run=client", "-o", "json", *args[1:]).stdout
    kubectl(cluster.kubeconfig, "create", "-f", "-", "-n", json_ns, input=manifest)
    from_protobuf = get_json(cluster.kubeconfig, "pod", "p", "-n", pb_ns)
    from_json = get_json(cluster.kubeconfig, "pod", "p", "-n", json_ns)
    from_protobuf["metadata"]["managedFields"][0]["manager"] = from_json["metadata"]["managedFields"][0]["manager"]
    assert normalized(from_protobuf) == normalized(from_json)
    (container,) = from_protobuf["spec"]["containers"]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["args"] == ["sleep", "1"]


@pytest.mark.parametrize(
    ("generator", "resource"),
    [
        (["configmap", "dry", "--from-literal=k=v"], "configmap"),
        (["secret", "generic", "dry", "--from-literal=k=v"], "secret"),
        (["deployment", "dry", "--image=nginx"], "deployment"),
        (["serviceaccount", "dry"], "serviceaccount"),
    ],
)
def test_dry_run_server(cluster: ClusterProcess, namespace: str, generator: list[str], resource: str) -> None:
    out = kubectl(cluster.kubeconfig, "create", *generator, "-n", namespace, "--dry-run=server", "-o", "json").stdout
    obj = json.loads(out)
    assert obj["metadata"]["name"] == "dry" and obj["metadata"]["namespace"] == namespace
    assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]
    if resource == "secret":
        assert obj["data"] == {"k": "dg=="}
    missing = kubectl(cluster.kubeconfig, "get", resource, "dry", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


@pytest.mark.unit
def test_unknown_kind_is_refused() -> None:
    with pytest.raises(protobuf.DecodeError, match="no protobuf schema"):
        protobuf.decode(protobuf.MAGIC + b"\x0a\x0e\x0a\x08stable/v\x12\x02Xy")


@pytest.mark.unit
def test_decoder_special_types() -> None:
    """IntOrString, Quantity, Time, negative int32 and packed repeated fields, against hand-encoded wire bytes."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    def varint(number: int, value: int) -> bytes:
        out = bytearray([number << 3])
        value &= (1 << 64) - 1
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    # ServicePort{name="web" port=80 targetPort=IntOrString{type=1 strVal="http"}}
    port = field(1, b"web") + varint(3, 80) + field(4, varint(1, 1) + field(3, b"http"))
    assert protobuf.message("k8s.io.api.core.v1.ServicePort", port) == {"name": "web", "port": 80, "targetPort": "http"}
    # ResourceRequirements{limits={"cpu": Quantity{"500m"}}}
    limits = field(1, field(1, b"cpu") + field(2, field(1, b"500m")))
    assert protobuf.message("k8s.io.api.core.v1.ResourceRequirements", limits) == {"limits": {"cpu": "500m"}}
    # ObjectMeta{creationTimestamp=Time{seconds=0}, deletionTimestamp=Time{1700000000}, generation=0}
    meta = field(1, b"n") + field(8, b"") + varint(7, 0) + field(9, varint(1, 1_700_000_000))
    assert protobuf.message("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta", meta) == {
        "name": "n",
        "creationTimestamp": None,  # a plain Time: encoding/json writes null, omitempty or not
        "deletionTimestamp": "2023-11-14T22:13:20Z",
    }
    # SecurityContext{runAsUser=-1 (a pointer: kept)}; PodSecurityContext{supplementalGroups packed [1, 300]}
    assert protobuf.message("k8s.io.api.core.v1.SecurityContext", varint(4, -1)) == {"runAsUser": -1}
    packed = field(4, bytes([1, 0xAC, 0x02]))
    assert protobuf.message("k8s.io.api.core.v1.PodSecurityContext", packed) == {"supplementalGroups": [1, 300]}
