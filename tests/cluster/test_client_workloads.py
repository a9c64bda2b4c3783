"""The workload scenarios through the official `kubernetes` Python client: typed APIs and `watch.Watch().stream`.

This is how the pipeline itself talks to a cluster (AKS or this one), so the
test drives a Deployment only with the typed AppsV1Api/CoreV1Api models and
follows it with watches, never by polling our internals: create, watch to
availability, patch the image, watch the rollout, read logs, delete with
foreground propagation and watch the pods (and their containers) go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from kubernetes import client, config, watch

from tests.cluster.workloads import docker_engine, registry_image, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess

__all__ = ["docker_engine", "registry_image"]  # session fixtures used by name


@pytest.fixture(scope="module")
def api(workload_cluster: ClusterProcess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(workload_cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (which cascades to anything left in it)."""
    core = client.CoreV1Api(api)
    name = unique("py-wl")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def web_deployment(name: str, image: str) -> client.V1Deployment:
    """A 2-replica Deployment serving HTTP on its pod IP; Ready once `/` answers."""
    container = client.V1Container(
        name="web",
        image=image,
        command=["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
        env=[
            client.V1EnvVar(
                name="POD_IP", value_from=client.V1EnvVarSource(field_ref=client.V1ObjectFieldSelector(field_path="status.podIP"))
            )
        ],
        ports=[client.V1ContainerPort(name="http", container_port=8080)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1, timeout_seconds=1
        ),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            strategy=client.V1DeploymentStrategy(
                type="RollingUpdate", rolling_update=client.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0)
            ),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=1),
            ),
        ),
    )


def rolled_out(d: client.V1Deployment) -> bool:
    """`kubectl rollout status`'s success test, on the typed model."""
    s = d.status
    want = d.spec.replicas
    return bool(
        s is not None
        and (s.observed_generation or 0) >= d.metadata.generation
        and (s.updated_replicas or 0) == want
        and (s.replicas or 0) == want
        and (s.available_replicas or 0) == want
    )


def watch_until(
    list_func: Callable[..., Any], predicate: Callable[[str, Any], bool], *, timeout: int = 60, **kwargs: Any
) -> tuple[str, Any]:
    """Stream watch events of `list_func` (an initial list, then changes) until `predicate(type, object)` holds."""
    w = watch.Watch()
    try:
        for event in w.stream(list_func, timeout_seconds=timeout, **kwargs):
            if predicate(event["type"], event["object"]):
                return event["type"], event["object"]
    finally:
        w.stop()
    raise AssertionError(f"watch of {list_func.__name__} {kwargs} ended after {timeout}s without the expected event")


def test_deployment_lifecycle_with_typed_client_and_watch(
    api: client.ApiClient,
    namespace: str,
    registry_image: tuple[str, str],
    workload_cluster: ClusterProcess,
    docker_engine: docker.DockerClient,
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    tagged, pinned = registry_image
    name = unique("web")
    created = apps.create_namespaced_deployment(namespace, web_deployment(name, tagged))
    assert isinstance(created, client.V1Deployment) and created.metadata.generation == 1
    by_name = f"metadata.name={name}"

    _, d = watch_until(apps.list_namespaced_deployment, lambda _t, o: rolled_out(o), namespace=namespace, field_selector=by_name)
    assert d.status.ready_replicas == 2
    assert {c.type: c.status for c in d.status.conditions} == {"Available": "True", "Progressing": "True"}
    [rs1] = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
    assert rs1.metadata.owner_references[0].uid == d.metadata.uid

    # Patch the image (strategic merge: the container list merges by name) and watch the rollout.
    patched = apps.patch_namespaced_deployment(
        name, namespace, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": pinned}]}}}}
    )
    assert patched.metadata.generation == 2
    assert patched.spec.template.spec.containers[0].command[:3] == ["python3", "-m", "http.server"]  # merged, not replaced
    seen_ready: list[int] = []

    def rolled_to_pinned(_type: str, o: client.V1Deployment) -> bool:
        seen_ready.append(o.status.ready_replicas or 0)
        return o.metadata.generation == 2 and rolled_out(o)

    _, d = watch_until(apps.list_namespaced_deployment, rolled_to_pinned, namespace=namespace, field_selector=by_name)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert min(seen_ready) >= 2, seen_ready  # maxUnavailable 0: never fewer Ready than wanted
    rss = {rs.metadata.name: rs for rs in apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items}
    assert len(rss) == 2 and rss[rs1.metadata.name].spec.replicas == 0

    # The old pods go; the new ones run the pinned image.
    def only_new_pods(_type: str, _pod: client.V1Pod) -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
        return len(pods) == 2 and all(p.spec.containers[0].image == pinned and p.status.phase == "Running" for p in pods)

    watch_until(core.list_namespaced_pod, only_new_pods, namespace=namespace, label_selector=f"app={name}")
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    statuses = pods[0].status.container_statuses
    assert statuses[0].ready and statuses[0].image_id.endswith(pinned.split("@")[1])

    def probe_logged() -> bool:
        text = core.read_namespaced_pod_log(pods[0].metadata.name, namespace, container="web", tail_lines=5)
        return '"GET / HTTP/1.1" 200' in text

    poll_until(probe_logged, timeout=10, what="the readiness probe's requests in the pod log")

    # Foreground deletion: the Deployment waits for its dependents; watch every pod be DELETED.
    apps.delete_namespaced_deployment(name, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    remaining = {p.metadata.name for p in pods}

    def all_pods_deleted(event_type: str, pod: client.V1Pod) -> bool:
        if event_type == "DELETED":
            remaining.discard(pod.metadata.name)
        return not remaining

    watch_until(core.list_namespaced_pod, all_pods_deleted, timeout=30, namespace=namespace, label_selector=f"app={name}")
    poll_until(
        lambda: not apps.list_namespaced_deployment(namespace, field_selector=by_name).items, timeout=10, what="deployment gone"
    )
    assert apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items == []
    left = docker_engine.containers.list(
        all=True,
        filters={
            "label": [f"bootstrap.cluster/cluster-id={workload_cluster.cluster_id}", f"io.kubernetes.pod.namespace={namespace}"]
        },
    )
    assert left == [], [c.name for c in left]
