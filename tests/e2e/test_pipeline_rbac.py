"""The cluster itself holds the in-cluster pipeline worker to its Role (issue 17's "403 from the cluster").

A cluster process of this module's own (`python -m bootstrap.cluster serve` from this checkout, on a free
port, as tests/e2e/test_self_deploy.py starts one), the Dockerfile's `pipeline-worker` image built from this
checkout, and the pipeline worker's own ServiceAccount, Role and RoleBinding exactly as the product renders
them (`pipeline.render.render_manifests` of the shipped config's pipeline-worker app, in a namespace of this
module). A one-off Job of that image runs as that ServiceAccount, with the token the kubelet mounts for it,
and makes calls through the product's in-cluster client (`pipeline.kube.connect`): the verbs its Role grants
succeed, and a verb outside it is refused by the API server with Kubernetes' 403 and message.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import docker
import pytest

from pipeline import kube
from pipeline.inputs import app_spec
from pipeline.render import render_manifests
from tests.helpers.cluster import LocalCluster
from tests.helpers.config import shipped_config
from tests.helpers.images import built_image, docker_client
from tests.helpers.render import sample_render_input

__all__ = ["docker_client"]  # module fixture used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# What runs in the pod: the product's in-cluster client, one line of JSON per attempted call.
ATTEMPTS = textwrap.dedent(
    """
    import json
    from pipeline import kube

    namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "rbac-probe", "namespace": namespace}, "data": {"written": "in-cluster"}}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "escalate-" + namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "pipeline-worker", "namespace": namespace}]}
    calls = {
        "list pods": lambda kc: len(kube.list_pods(kc, namespace=namespace, selector={})),
        "apply configmap": lambda kc: kube.apply_one(kc, config_map, field_manager=kube.FIELD_MANAGER)["data"],
        "list secrets in default": lambda kc: kc.request(
            method="GET", path="/api/v1/namespaces/default/secrets", what="Secrets in default"),
        "list secrets in own namespace": lambda kc: kc.request(
            method="GET", path=f"/api/v1/namespaces/{namespace}/secrets", what="Secrets in " + namespace),
        "create clusterrolebinding": lambda kc: kc.request(
            method="POST", path="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body=binding,
            what="ClusterRoleBinding"),
    }
    with kube.connect(kubeconfig="") as kc:
        print(json.dumps({"client": kc.source}))
        for name, call in calls.items():
            try:
                print(json.dumps({"call": name, "ok": call(kc)}))
            except kube.KubeError as err:
                print(json.dumps({"call": name, "status": err.status, "reason": err.reason, "error": str(err)}))
    """
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("pipeline-rbac") / "state")
    local.start()
    try:
        yield local
    finally:
        local.stop()
        local.remove_containers()


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> Iterator[str]:
    with built_image(docker_client, "pipeline-worker") as built:
        yield str(built.tags[0])


def rendered_identity(namespace: str) -> list[dict[str, Any]]:
    """The pipeline worker's Namespace, ServiceAccount, Role and RoleBinding as the product renders them."""
    config = shipped_config()
    app = app_spec(config, config.app("pipeline-worker"))
    spec = replace(sample_render_input(), app=replace(app, namespace=namespace))
    objects = render_manifests(spec).objects
    wanted = [o for o in objects if o["kind"] in ("Namespace", "ServiceAccount", "Role", "RoleBinding")]
    assert [o["kind"] for o in wanted] == ["Namespace", "ServiceAccount", "Role", "RoleBinding"], objects
    return wanted


def run_job(kc: kube.KubeClient, *, namespace: str, account: str, image: str, timeout: float = 180) -> str:
    """Run ATTEMPTS as a Job of `image` under `account`; its pod's log once the Job has finished."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "rbac-probe", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "serviceAccountName": account,
                    "restartPolicy": "Never",
                    "containers": [{"name": "probe", "image": image, "command": ["python", "-c", ATTEMPTS]}],
                }
            },
        },
    }
    kc.request(method="POST", path=f"/apis/batch/v1/namespaces/{namespace}/jobs", body=job, what="the probe Job")
    deadline = time.monotonic() + timeout
    while True:
        found = kc.request(method="GET", path=f"/apis/batch/v1/namespaces/{namespace}/jobs/rbac-probe", what="Job")
        finished = [
            c["type"]
            for c in found.get("status", {}).get("conditions") or []
            if c["type"] in ("Complete", "Failed") and c["status"] == "True"
        ]
        if finished:
            break
        assert time.monotonic() < deadline, f"the probe Job did not finish in {timeout}s: {found.get('status')}"
        time.sleep(1)
    [pod] = kube.list_pods(kc, namespace=namespace, selector={"job-name": "rbac-probe"})
    log = kube.pod_logs(kc, namespace=namespace, name=pod.name)
    assert finished == ["Complete"], log
    return log


def test_the_cluster_refuses_the_pipeline_worker_a_verb_outside_its_role(cluster: LocalCluster, image: str) -> None:
    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    identity = rendered_identity(namespace)
    account = next(o for o in identity if o["kind"] == "ServiceAccount")["metadata"]["name"]
    user = f"system:serviceaccount:{namespace}:{account}"
    with kube.connect(kubeconfig=str(cluster.kubeconfig)) as admin:
        kube.server_side_apply(admin, identity, field_manager=kube.FIELD_MANAGER)
        log = run_job(admin, namespace=namespace, account=account, image=image)
        results = {r["call"]: r for r in map(json.loads, log.splitlines()[1:])}
        print(log)
        assert json.loads(log.splitlines()[0]) == {"client": "in-cluster:/var/run/secrets/kubernetes.io/serviceaccount"}

        # Granted by the rendered Role: read pods, apply a ConfigMap (it is stored, as the admin sees it).
        assert results["list pods"]["ok"] == 1, results  # the probe's own pod
        assert results["apply configmap"]["ok"] == {"written": "in-cluster"}, results
        assert kube.get_configmap(admin, namespace=namespace, name="rbac-probe") == {"written": "in-cluster"}

        # Outside it: 403 Forbidden from the API server, in Kubernetes' words.
        for call, message in (
            (
                "list secrets in default",
                f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" in the namespace "default"',
            ),
            (
                "list secrets in own namespace",
                f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" '
                f'in the namespace "{namespace}"',
            ),
            (
                "create clusterrolebinding",
                f'clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "{user}" cannot create resource '
                f'"clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope',
            ),
        ):
            result = results[call]
            assert (result.get("status"), result.get("reason")) == (403, "Forbidden"), result
            assert f"403 Forbidden: {message}" in result["error"], result
        with pytest.raises(kube.KubeNotFound):  # the refused ClusterRoleBinding was not made
            admin.request(
                method="GET",
                path=f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/escalate-{namespace}",
                what="ClusterRoleBinding",
            )
        kube.delete_object(admin, api_version="v1", kind="Namespace", name=namespace)
