"""ServiceAccounts as Kubernetes 1.32 keeps them: a `default` account in every namespace (the serviceaccounts
controller), pods defaulted to it and refused when they name an account that does not exist (the
ServiceAccount admission plugin), and tokens of deleted accounts no longer authenticating.

Against the API-only session cluster, through the real kubernetes client and kubectl.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.helpers import poll_until, unique_name
from tests.helpers.cluster import ClusterProcess, kubectl

POD = {"containers": [{"name": "app", "image": "pipeline-base:bookworm"}]}


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def sa_client(cluster: ClusterProcess, token: str) -> client.ApiClient:
    """A kubernetes client authenticated by `token` (the kubeconfig's CA, no other credential)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    configuration.refresh_api_key_hook = None  # the loader's hook would put the kubeconfig's token back
    return client.ApiClient(configuration)


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_every_namespace_has_a_default_service_account_at_once(core: client.CoreV1Api, cluster: ClusterProcess) -> None:
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert core.read_namespaced_service_account("default", ns).metadata.name == "default"
    name = unique_name("sa")
    core.create_namespace({"metadata": {"name": name}})
    # no wait: the account exists as soon as the namespace does, so a pod right after is admitted
    assert core.read_namespaced_service_account("default", name).metadata.namespace == name
    pod = core.create_namespaced_pod(name, {"metadata": {"name": "p"}, "spec": POD})
    assert pod.spec.service_account_name == "default"
    out = kubectl(cluster.kubeconfig, "get", "serviceaccounts", "-n", name, "-o", "name").stdout.split()
    assert out == ["serviceaccount/default"]
    table = kubectl(cluster.kubeconfig, "get", "sa", "-n", name).stdout.split()
    assert table[:5] == ["NAME", "SECRETS", "AGE", "default", "0"]


def test_kubectl_namespace_then_pod_at_once(cluster: ClusterProcess) -> None:
    name = unique_name("sa")
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": name}, "spec": POD},
            ],
        }
    )
    kubectl(cluster.kubeconfig, "apply", "-f", "-", input=manifest)
    spec = json.loads(kubectl(cluster.kubeconfig, "get", "pod", "p", "-n", name, "-o", "json").stdout)["spec"]
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("default", "default")


def test_pod_service_account_defaulting(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    named = core.create_namespaced_pod(
        namespace, {"metadata": {"name": "named"}, "spec": {**POD, "serviceAccountName": "worker"}}
    )
    assert (named.spec.service_account_name, named.spec.service_account) == ("worker", "worker")
    legacy = core.create_namespaced_pod(namespace, {"metadata": {"name": "legacy"}, "spec": {**POD, "serviceAccount": "worker"}})
    assert (legacy.spec.service_account_name, legacy.spec.service_account) == ("worker", "worker")
    plain = core.create_namespaced_pod(namespace, {"metadata": {"name": "plain"}, "spec": POD})
    assert (plain.spec.service_account_name, plain.spec.service_account) == ("default", "default")
    # an update that leaves the admission-set fields out keeps them
    body = core.read_namespaced_pod("plain", namespace).to_dict()
    patched = core.patch_namespaced_pod("plain", namespace, {"metadata": {"labels": {"a": "b"}}})
    assert patched.spec.service_account_name == "default" and body["spec"]["service_account_name"] == "default"


def test_pod_naming_a_missing_service_account_is_forbidden(
    core: client.CoreV1Api, namespace: str, cluster: ClusterProcess
) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "x"}, "spec": {**POD, "serviceAccountName": "ghost"}})
    assert caught.value.status == 403
    status = _status(caught.value)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'pods "x" is forbidden: error looking up service account {namespace}/ghost: serviceaccount "ghost" not found'
    )
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(
            namespace, {"metadata": {"generateName": "gen-"}, "spec": {**POD, "serviceAccountName": "ghost"}}
        )
    assert _status(caught.value)["message"].startswith('pods "gen-" is forbidden: error looking up service account')
    # dry run is admitted the same way
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": "y"}, "spec": {**POD, "serviceAccountName": "ghost"}}, dry_run="All"
        )
    assert caught.value.status == 403
    manifest = json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "z"}, "spec": {**POD, "serviceAccountName": "ghost"}}
    )
    result = kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert (
        f'pods "z" is forbidden: error looking up service account {namespace}/ghost: serviceaccount "ghost" not found'
        in result.stderr
    )
    assert core.list_namespaced_pod(namespace).items == []


def test_deleted_default_service_account_comes_back(core: client.CoreV1Api, namespace: str) -> None:
    old = core.read_namespaced_service_account("default", namespace)
    core.delete_namespaced_service_account("default", namespace)
    new = poll_until(
        lambda: core.list_namespaced_service_account(namespace, field_selector="metadata.name=default").items,
        timeout=5,
        what="the default service account to be recreated",
    )
    assert new[0].metadata.uid != old.metadata.uid


def test_namespace_deletion_removes_its_accounts(core: client.CoreV1Api) -> None:
    name = unique_name("sa")
    core.create_namespace({"metadata": {"name": name}})
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    poll_until(gone, timeout=10, what="the namespace to go")
    assert core.list_namespaced_service_account(name).items == []


def test_token_of_a_deleted_service_account_is_401(core: client.CoreV1Api, namespace: str, cluster: ClusterProcess) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "gone"}})
    token = core.create_namespaced_service_account_token("gone", namespace, {"spec": {}}).status.token
    with sa_client(cluster, token) as api_client:
        review = client.AuthenticationV1Api(api_client).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:gone"
        core.delete_namespaced_service_account("gone", namespace)
        with pytest.raises(ApiException) as caught:
            client.AuthenticationV1Api(api_client).create_self_subject_review({})
        assert caught.value.status == 401
        # a new account of the same name has another uid: the old token stays refused
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "gone"}})
        with pytest.raises(ApiException) as caught:
            client.AuthenticationV1Api(api_client).create_self_subject_review({})
        assert caught.value.status == 401


def test_token_bound_to_a_deleted_pod_is_401(core: client.CoreV1Api, namespace: str, cluster: ClusterProcess) -> None:
    pod = core.create_namespaced_pod(namespace, {"metadata": {"name": "holder"}, "spec": POD})
    body = {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "holder", "uid": pod.metadata.uid}}}
    token = core.create_namespaced_service_account_token("default", namespace, body).status.token
    with sa_client(cluster, token) as api_client:
        info = client.AuthenticationV1Api(api_client).create_self_subject_review({}).status.user_info
        assert info.extra["authentication.kubernetes.io/pod-name"] == ["holder"]
        assert info.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
        core.delete_namespaced_pod("holder", namespace, grace_period_seconds=0)
        with pytest.raises(ApiException) as caught:
            client.AuthenticationV1Api(api_client).create_self_subject_review({})
        assert caught.value.status == 401


def test_foreign_or_wrong_audience_tokens_are_401(core: client.CoreV1Api, namespace: str, cluster: ClusterProcess) -> None:
    other = core.create_namespaced_service_account_token(
        "default", namespace, {"spec": {"audiences": ["api://AzureADTokenExchange"]}}
    ).status.token
    for token in (other, "not-a-token", other[:-4] + "AAAA"):
        with sa_client(cluster, token) as api_client:
            with pytest.raises(ApiException) as caught:
                client.CoreV1Api(api_client).list_namespaced_pod(namespace)
            assert caught.value.status == 401
