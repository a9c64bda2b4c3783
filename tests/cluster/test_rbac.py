"""ServiceAccount tokens authorized by RBAC, as kube-apiserver's `--authorization-mode=RBAC` does it.

A token from a TokenRequest authenticates as `system:serviceaccount:<ns>:<name>`; what it may do is what
Roles/RoleBindings and ClusterRoles/ClusterRoleBindings grant (discovery and self-reviews: everyone
authenticated); a denial is kube's 403 Status. The admin token of the kubeconfig keeps every right.
Through the real kubernetes client and kubectl (`--token`, `auth can-i`, `auth whoami`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.test_service_accounts import sa_client
from tests.helpers import unique_name
from tests.helpers.cluster import ClusterProcess, kubectl

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def rbac_api(api: client.ApiClient) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(api)


def _token(core: client.CoreV1Api, namespace: str, name: str = "bot") -> str:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    token: str = core.create_namespaced_service_account_token(name, namespace, {"spec": {}}).status.token
    return token


def _forbidden(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 403, caught.value.body
    status: dict[str, Any] = json.loads(caught.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Forbidden", 403)
    return status


def _role(rbac_api: client.RbacAuthorizationV1Api, namespace: str, name: str, rules: list[dict[str, Any]], sa: str) -> None:
    rbac_api.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        },
    )


def test_service_account_without_grants_is_forbidden(core: client.CoreV1Api, namespace: str, cluster: ClusterProcess) -> None:
    token = _token(core, namespace)
    with sa_client(cluster, token) as api_client:
        status = _forbidden(client.CoreV1Api(api_client).list_namespaced_pod, namespace)
        assert status["message"] == (
            f'pods is forbidden: User "system:serviceaccount:{namespace}:bot" cannot list resource "pods" '
            f'in API group "" in the namespace "{namespace}"'
        )
        assert status["details"] == {"kind": "pods"}
        status = _forbidden(client.AppsV1Api(api_client).read_namespaced_deployment, "web", namespace)
        assert status["message"] == (
            f'deployments.apps "web" is forbidden: User "system:serviceaccount:{namespace}:bot" cannot get resource '
            f'"deployments" in API group "apps" in the namespace "{namespace}"'
        )
        assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
        status = _forbidden(client.CoreV1Api(api_client).list_namespace)
        assert status["message"] == (
            f'namespaces is forbidden: User "system:serviceaccount:{namespace}:bot" cannot list resource "namespaces" '
            'in API group "" at the cluster scope'
        )
        # discovery and /version are open to every authenticated user (system:discovery)
        assert client.VersionApi(api_client).get_code().minor == "32"
        assert "v1" in client.CoreApi(api_client).get_api_versions().versions


def test_role_and_role_binding_grant(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    token = _token(core, namespace)
    _role(rbac_api, namespace, "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}], "bot")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
    other = unique_name("rbac")
    core.create_namespace({"metadata": {"name": other}})
    with sa_client(cluster, token) as api_client:
        sa_core = client.CoreV1Api(api_client)
        assert [p.metadata.name for p in sa_core.list_namespaced_pod(namespace).items] == ["p"]
        assert sa_core.read_namespaced_pod("p", namespace).metadata.name == "p"
        # not the verbs it was not given, not the status subresource, not another namespace
        status = _forbidden(sa_core.delete_namespaced_pod, "p", namespace)
        assert f'cannot delete resource "pods" in API group "" in the namespace "{namespace}"' in status["message"]
        status = _forbidden(sa_core.patch_namespaced_pod_status, "p", namespace, {"status": {}})
        assert status["message"].startswith('pods "p" is forbidden:')
        assert 'cannot patch resource "pods/status"' in status["message"]
        _forbidden(sa_core.list_namespaced_pod, other)
        _forbidden(sa_core.list_pod_for_all_namespaces)


def test_subresources_and_wildcards(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    token = _token(core, namespace)
    rules = [
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]},
        {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]},
    ]
    _role(rbac_api, namespace, "sub", rules, "bot")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
    with sa_client(cluster, token) as api_client:
        sa_core, sa_apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        assert sa_core.read_namespaced_pod_status("p", namespace).metadata.name == "p"
        _forbidden(sa_core.read_namespaced_pod, "p", namespace)
        assert sa_apps.list_namespaced_deployment(namespace).items == []
        assert sa_apps.list_namespaced_replica_set(namespace).items == []
        status = _forbidden(sa_apps.list_namespaced_deployment, namespace, watch=True, _preload_content=False)
        assert 'cannot watch resource "deployments" in API group "apps"' in status["message"]
        with pytest.raises(ApiException) as caught:  # allowed, then not found
            sa_apps.read_namespaced_deployment_scale("none", namespace)
        assert caught.value.status == 404


def test_resource_names(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    token = _token(core, namespace)
    _role(
        rbac_api,
        namespace,
        "one",
        [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]}],
        "bot",
    )
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"k": name}})
    with sa_client(cluster, token) as api_client:
        sa_core = client.CoreV1Api(api_client)
        assert sa_core.read_namespaced_config_map("a", namespace).data == {"k": "a"}
        status = _forbidden(sa_core.read_namespaced_config_map, "b", namespace)
        assert status["message"] == (
            f'configmaps "b" is forbidden: User "system:serviceaccount:{namespace}:bot" cannot get resource '
            f'"configmaps" in API group "" in the namespace "{namespace}"'
        )
        _forbidden(sa_core.list_namespaced_config_map, namespace)


def test_cluster_role_binding(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    token = _token(core, namespace)
    name = unique_name("crb")
    rbac_api.create_cluster_role(
        {"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods"], "verbs": ["list"]}]}
    )
    with sa_client(cluster, token) as api_client:
        sa_core = client.CoreV1Api(api_client)
        _forbidden(sa_core.list_namespace)
        rbac_api.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{namespace}", "apiGroup": RBAC}],
            }
        )
        try:
            assert namespace in {n.metadata.name for n in sa_core.list_namespace().items}
            sa_core.list_pod_for_all_namespaces()
            _forbidden(sa_core.read_namespace, namespace)
        finally:
            rbac_api.delete_cluster_role_binding(name)
            rbac_api.delete_cluster_role(name)
        _forbidden(sa_core.list_namespace)


def test_role_binding_to_a_cluster_role_and_to_a_missing_role(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    token = _token(core, namespace)
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}],  # the binding's namespace
        },
    )
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "nothere"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}],
        },
    )
    with sa_client(cluster, token) as api_client:
        sa_core = client.CoreV1Api(api_client)
        assert sa_core.list_namespaced_service_account(namespace).items
        status = _forbidden(sa_core.create_namespaced_config_map, namespace, {"metadata": {"name": "c"}})
        assert status["message"] == (
            f'configmaps is forbidden: User "system:serviceaccount:{namespace}:bot" cannot create resource '
            f'"configmaps" in API group "" in the namespace "{namespace}": '
            f'RBAC: role.rbac.authorization.k8s.io "nothere" not found'
        )


def test_self_subject_access_review_and_self_subject_review(
    core: client.CoreV1Api,
    rbac_api: client.RbacAuthorizationV1Api,
    namespace: str,
    cluster: ClusterProcess,
    api: client.ApiClient,
) -> None:
    token = _token(core, namespace)
    _role(rbac_api, namespace, "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], "bot")

    def review(api_client: client.ApiClient, verb: str, resource: str, ns: str = namespace) -> Any:
        body = {"spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": ns}}}
        return client.AuthorizationV1Api(api_client).create_self_subject_access_review(body)

    with sa_client(cluster, token) as api_client:
        allowed = review(api_client, "list", "pods")
        assert allowed.kind == "SelfSubjectAccessReview" and allowed.status.allowed is True
        assert allowed.status.reason == (
            f'RBAC: allowed by RoleBinding "reader/{namespace}" of Role "reader" to ServiceAccount "bot/{namespace}"'
        )
        assert review(api_client, "delete", "pods").status.allowed is False
        non_resource = {"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}}
        assert client.AuthorizationV1Api(api_client).create_self_subject_access_review(non_resource).status.allowed
        who = client.AuthenticationV1Api(api_client).create_self_subject_review({})
        assert who.status.user_info.username == f"system:serviceaccount:{namespace}:bot"
        assert who.status.user_info.groups == [
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ]
        assert who.status.user_info.uid == core.read_namespaced_service_account("bot", namespace).metadata.uid
    assert review(api, "delete", "nodes", "").status.allowed is True  # the admin: system:masters
    admin = client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info
    assert (admin.username, admin.groups) == ("system:admin", ["system:masters", "system:authenticated"])
    with pytest.raises(ApiException) as caught:
        client.AuthorizationV1Api(api).create_self_subject_access_review({"spec": {}})
    assert caught.value.status == 422


def test_kubectl_with_a_service_account_token(
    core: client.CoreV1Api, rbac_api: client.RbacAuthorizationV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    kubectl(cluster.kubeconfig, "create", "serviceaccount", "cli", "-n", namespace)
    token = kubectl(cluster.kubeconfig, "create", "token", "cli", "-n", namespace).stdout.strip()

    def as_sa(*args: str, check: bool = False) -> Any:
        return kubectl(cluster.kubeconfig, "--token", token, *args, check=check)

    denied = as_sa("get", "pods", "-n", namespace)
    assert denied.returncode != 0
    assert (
        f'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:{namespace}:cli" cannot list '
        f'resource "pods" in API group "" in the namespace "{namespace}"'
    ) in denied.stderr
    no = as_sa("auth", "can-i", "list", "pods", "-n", namespace)
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    _role(rbac_api, namespace, "cli", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], "cli")
    yes = as_sa("auth", "can-i", "list", "pods", "-n", namespace)
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    assert as_sa("auth", "can-i", "create", "deployments.apps", "-n", namespace).stdout.strip() == "no"
    assert as_sa("get", "pods", "-n", namespace, check=True).stderr.strip() == f"No resources found in {namespace} namespace."
    whoami = as_sa("auth", "whoami", "-o", "json", check=True)
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{namespace}:cli"
    assert "system:authenticated" in info["groups"]
    listed = as_sa("auth", "can-i", "--list", "-n", namespace, check=True).stdout.splitlines()
    assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["pods", "[]", "[]", "[list]"] in [line.split() for line in listed]
    assert ["[/version]", "[]", "[get]"] in [line.split() for line in listed]
    assert ["configmaps", "[]", "[]", "[list]"] not in [line.split() for line in listed]
    admin = kubectl(cluster.kubeconfig, "auth", "can-i", "delete", "nodes")
    assert admin.stdout.strip() == "yes"
    assert "system:admin" in kubectl(cluster.kubeconfig, "auth", "whoami").stdout


def test_bootstrap_cluster_roles_and_discovery(cluster: ClusterProcess, rbac_api: client.RbacAuthorizationV1Api) -> None:
    names = {r.metadata.name for r in rbac_api.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user"} <= names
    binding = rbac_api.read_cluster_role_binding("cluster-admin")
    assert binding.subjects[0].name == "system:masters"
    resources = kubectl(cluster.kubeconfig, "api-resources", "-o", "name").stdout.split()
    for name in (
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
    ):
        assert name in resources
    roles = kubectl(cluster.kubeconfig, "get", "clusterrole", "view").stdout.split()
    assert roles[:4] == ["NAME", "CREATED", "AT", "view"] and roles[4].endswith("Z")
    out = kubectl(cluster.kubeconfig, "get", "clusterrolebinding", "cluster-admin").stdout.split()
    assert out[:4] == ["NAME", "ROLE", "AGE", "cluster-admin"] and out[4] == "ClusterRole/cluster-admin"


def test_role_rules_are_validated(rbac_api: client.RbacAuthorizationV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        rbac_api.create_namespaced_role(
            namespace, {"metadata": {"name": "bad"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}
        )
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["message"] == (
        'Role.rbac.authorization.k8s.io "bad" is invalid: rules[0].nonResourceURLs: Invalid value: '
        '[]string{"/healthz"}: namespaced rules cannot apply to non-resource URLs'
    )
    with pytest.raises(ApiException) as caught:
        rbac_api.create_cluster_role({"metadata": {"name": unique_name("bad")}, "rules": [{"resources": ["pods"], "verbs": []}]})
    causes = json.loads(caught.value.body)["details"]["causes"]
    assert [(c["field"], c["message"]) for c in causes] == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups", "Required value: resource rules must supply at least one api group"),
    ]
