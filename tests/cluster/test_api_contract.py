"""The API contract, checked with the machine's real kubectl (no fakes on either side)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers import unique_name
from tests.helpers.cluster import ClusterProcess, kubectl


def manifest(ns: str, *, replicas: int = 2) -> str:
    """A multi-document manifest with every kind the pipeline deploys."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": ns, "labels": {"app": "web"}},
            "data": {"GREETING": "hello"},
        },
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec", "namespace": ns}, "stringData": {"TOKEN": "t"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "serviceAccountName": "web",
                        "containers": [
                            {
                                "name": "web",
                                "image": "pipeline-base:bookworm",
                                "command": ["python3", "-m", "http.server", "8080"],
                                "ports": [{"containerPort": 8080}],
                                "env": [{"name": "A", "value": "1"}],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}],
        },
    ]
    return yaml.safe_dump_all(docs)


def get_json(kc: Path, *args: str) -> dict:
    return json.loads(kubectl(kc, "get", *args, "-o", "json").stdout)


def test_server_side_apply_twice_is_unchanged(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("ssa")
    first = kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns))
    assert "deployment.apps/web serverside-applied" in first.stdout
    kinds = "configmap,secret,serviceaccount,role,rolebinding"
    before = get_json(kc, "-n", ns, kinds)
    deploy_before = get_json(kc, "-n", ns, "deployment", "web", "--show-managed-fields")
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns))
    after = get_json(kc, "-n", ns, kinds)
    versions = lambda doc: {i["kind"] + "/" + i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in doc["items"]}  # noqa: E731
    assert versions(before) == versions(after) and len(versions(after)) == 6  # + the namespace's default ServiceAccount
    # The Deployment's status moves with its controller; its spec and ownership must not.
    deploy = get_json(kc, "-n", ns, "deployment", "web", "--show-managed-fields")
    assert deploy["metadata"]["generation"] == deploy_before["metadata"]["generation"] == 1
    assert deploy["metadata"]["managedFields"] == deploy_before["metadata"]["managedFields"]

    entry = deploy["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == ("kubectl", "Apply", "FieldsV1")
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"web"}' in containers
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    secret = get_json(kc, "-n", ns, "secret", "sec")
    assert secret["data"] == {"TOKEN": "dA=="}


def test_get_with_selectors_and_describe(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("get")
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns))
    labelled = get_json(kc, "-n", ns, "configmap,deployment", "-l", "app=web")
    assert sorted(i["metadata"]["name"] for i in labelled["items"]) == ["cfg", "web"]
    assert get_json(kc, "-n", ns, "configmap", "-l", "app!=web")["items"] == []
    by_field = get_json(kc, "-A", "deployments", "--field-selector", f"metadata.namespace={ns}")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["web"]
    table = kubectl(kc, "get", "-n", ns, "deployments").stdout
    assert table.splitlines()[0].split()[0] == "NAME" and "web" in table
    described = kubectl(kc, "describe", "-n", ns, "deployment", "web").stdout
    assert "Selector:" in described and "app=web" in described and "pipeline-base:bookworm" in described
    explained = kubectl(kc, "explain", "deployment.spec").stdout
    assert "DeploymentSpec" in explained and "replicas" in explained


def test_delete_object_and_namespace(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("del")
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns))
    out = kubectl(kc, "delete", "-n", ns, "configmap", "cfg").stdout
    assert 'configmap "cfg" deleted' in out
    assert kubectl(kc, "get", "-n", ns, "configmap", "cfg", check=False).returncode != 0
    kubectl(kc, "delete", "namespace", ns, "--timeout=20s")
    gone = kubectl(kc, "get", "namespace", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_non_resource_endpoints_and_unknown_paths(cluster: ClusterProcess) -> None:
    kc = cluster.kubeconfig
    assert json.loads(kubectl(kc, "get", "--raw", "/version").stdout)["major"] == "1"
    assert kubectl(kc, "get", "--raw", "/readyz").stdout == "ok"
    groups = json.loads(kubectl(kc, "get", "--raw", "/apis").stdout)
    assert {g["name"] for g in groups["groups"]} == {
        "apps",
        "batch",
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "policy",
        "autoscaling",
        "authorization.k8s.io",
        "authentication.k8s.io",
        "metrics.k8s.io",  # metrics-server's aggregated API (bootstrap/cluster/metrics.py)
    }
    resources = json.loads(kubectl(kc, "get", "--raw", "/apis/apps/v1").stdout)["resources"]
    assert {"deployments", "deployments/status", "deployments/scale"} <= {r["name"] for r in resources}
    unknown = kubectl(kc, "get", "--raw", "/api/v1/widgets", check=False)
    assert unknown.returncode != 0 and "NotFound" in unknown.stderr


def test_wrong_token_is_unauthorized(cluster: ClusterProcess, tmp_path: Path) -> None:
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = "not-the-token"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    result = kubectl(bad, "get", "pods", check=False)
    assert result.returncode != 0
    assert "You must be logged in to the server" in result.stderr


def test_bad_manifests_store_nothing(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("bad")
    kubectl(kc, "create", "namespace", ns)  # a typed generator: its body is protobuf
    kubectl(
        kc,
        "apply",
        "--server-side",
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )

    unknown = kubectl(
        kc,
        "apply",
        "--server-side",
        "-f",
        "-",
        check=False,
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w", "namespace": ns}}),
    )
    assert unknown.returncode != 0 and 'no matches for kind "Widget"' in unknown.stderr

    no_selector = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nosel", "namespace": ns},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}},
    }
    missing = kubectl(kc, "apply", "--server-side", "-f", "-", input=yaml.safe_dump(no_selector), check=False)
    assert missing.returncode != 0 and "spec.selector: Required value" in missing.stderr

    bad_name = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": ns}}
    invalid = kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(bad_name), check=False)
    assert invalid.returncode != 0 and "is invalid" in invalid.stderr and "metadata.name" in invalid.stderr

    unknown_field = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns}, "bogus": 1}
    strict = kubectl(kc, "create", "-f", "-", input=yaml.safe_dump(unknown_field), check=False)
    assert strict.returncode != 0 and 'unknown field "bogus"' in strict.stderr

    everything = get_json(kc, "-n", ns, "deployments,configmaps")
    assert everything["items"] == []


def test_conflicting_apply_needs_force(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("conflict")
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns, replicas=2))
    other = yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "pipeline-base:bookworm"}]},
                },
            },
        }
    )
    conflict = kubectl(kc, "apply", "--server-side", "--field-manager=other", "-f", "-", input=other, check=False)
    assert conflict.returncode != 0
    assert 'conflict with "kubectl"' in conflict.stderr and ".spec.replicas" in conflict.stderr
    assert get_json(kc, "-n", ns, "deployment", "web")["spec"]["replicas"] == 2

    kubectl(kc, "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-", input=other)
    deploy = get_json(kc, "-n", ns, "deployment", "web", "--show-managed-fields")
    assert deploy["spec"]["replicas"] == 5
    owners = {e["manager"]: e["fieldsV1"] for e in deploy["metadata"]["managedFields"]}
    assert "f:replicas" in owners["other"]["f:spec"] and "f:replicas" not in owners["kubectl"]["f:spec"]


def test_scale_label_and_dry_run(cluster: ClusterProcess) -> None:
    kc, ns = cluster.kubeconfig, unique_name("scale")
    kubectl(kc, "apply", "--server-side", "-f", "-", input=manifest(ns))
    kubectl(kc, "scale", "-n", ns, "deployment/web", "--replicas=4")
    kubectl(kc, "label", "-n", ns, "deployment/web", "tier=backend")
    deploy = get_json(kc, "-n", ns, "deployment", "web")
    assert deploy["spec"]["replicas"] == 4 and deploy["metadata"]["labels"]["tier"] == "backend"
    rv = deploy["metadata"]["resourceVersion"]
    kubectl(kc, "scale", "-n", ns, "deployment/web", "--replicas=1", "--dry-run=server")
    kubectl(kc, "delete", "-n", ns, "deployment/web", "--dry-run=server")
    after = get_json(kc, "-n", ns, "deployment", "web")
    assert after["spec"]["replicas"] == 4 and after["metadata"]["resourceVersion"] == rv
