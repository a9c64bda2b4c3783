"""The API contract through the official `kubernetes` Python client: typed, dynamic and watch."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.helpers.cluster import ClusterProcess


def raw_patch(api: client.ApiClient, path: str, body: object, content_type: str, response_type: str, **query: str) -> object:
    """PATCH with an explicit content type through the client's own transport and deserializer."""
    method, url, headers, serialized, _ = api.param_serialize(
        "PATCH",
        path,
        query_params=list(query.items()),
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, serialized)
    response.read()
    return api.response_deserialize(response, {"200": response_type, "201": response_type}).data


def deployment(name: str, *, env: list[dict] | None = None, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "pipeline-base:bookworm", "env": env or [{"name": "A", "value": "1"}]}
                    ]
                },
            },
        },
    }


def test_typed_crud_and_stale_replace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert created.metadata.uid and created.metadata.resource_version
    fetched = core.read_namespaced_config_map("cm", namespace)
    assert fetched.data == {"a": "1"}
    listed = core.list_namespaced_config_map(namespace)
    assert [c.metadata.name for c in listed.items] == ["cm"] and listed.metadata.resource_version

    fetched.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("cm", namespace, fetched)
    assert replaced.data == {"a": "2"}
    fetched.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cm", namespace, fetched)
    assert stale.value.status == 409

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    assert exists.value.status == 409

    core.delete_namespaced_config_map("cm", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cm", namespace)
    assert missing.value.status == 404

    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="tier=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["c"]


def test_apps_and_rbac_typed(api: client.ApiClient, namespace: str) -> None:
    apps, rbac = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    created = apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    assert created.metadata.generation == 1 and created.spec.replicas == 2
    everywhere = apps.list_deployment_for_all_namespaces(label_selector="app=web")
    assert namespace in {d.metadata.namespace for d in everywhere.items}
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2

    rbac.create_namespaced_role(
        namespace, {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    assert [r.metadata.name for r in rbac.list_namespaced_role_binding(namespace).items] == ["rb"]

    with pytest.raises(ApiException) as invalid:
        bad = deployment("bad", replicas=-1)
        bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
        apps.create_namespaced_deployment(namespace, bad)
    assert invalid.value.status == 422
    assert "spec.template.metadata.labels" in invalid.value.body and "spec.replicas" in invalid.value.body
    assert apps.list_namespaced_deployment(namespace, field_selector="metadata.name=bad").items == []


def test_patches(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace, deployment("web", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    )

    # strategic merge (the client's default for dict bodies): env merged by name, containers by name
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "main", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
                            {"name": "sidecar", "image": "pipeline-base:bookworm"},
                        ]
                    }
                }
            }
        },
    )
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["main", "sidecar"]
    assert [(e.name, e.value) for e in containers[0].env] == [("A", "1"), ("B", "20"), ("C", "3")]
    assert patched.metadata.generation == 2

    deleted = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in deleted.spec.template.spec.containers] == ["main"]

    # JSON patch (a list body)
    jp = apps.patch_namespaced_deployment("web", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert jp.spec.replicas == 3

    # JSON merge patch, chosen explicitly
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}}})
    merged = raw_patch(
        api,
        f"/api/v1/namespaces/{namespace}/configmaps/cm",
        {"metadata": {"labels": {"a": None, "c": "3"}}},
        "application/merge-patch+json",
        "V1ConfigMap",
    )
    assert merged.metadata.labels == {"b": "2", "c": "3"}


def test_server_side_apply_dynamic(api: client.ApiClient, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = deployment("ssa")
    body["metadata"]["namespace"] = namespace
    first = deployments.server_side_apply(body=body, namespace=namespace, field_manager="pipeline")
    again = deployments.server_side_apply(body=body, namespace=namespace, field_manager="pipeline")
    assert first.metadata.generation == again.metadata.generation == 1
    assert first.metadata.managedFields == again.metadata.managedFields
    managers = [(e.manager, e.operation) for e in again.metadata.managedFields]
    assert managers == [("pipeline", "Apply")]

    # a field the manager stops applying is removed
    body["metadata"]["labels"] = {"app": "ssa", "extra": "x"}
    deployments.server_side_apply(body=body, namespace=namespace, field_manager="pipeline")
    body["metadata"]["labels"] = {"app": "ssa"}
    dropped = deployments.server_side_apply(body=body, namespace=namespace, field_manager="pipeline")
    assert dict(dropped.metadata.labels) == {"app": "ssa"}

    # a second manager changing an owned field conflicts unless forced
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ssa", "namespace": namespace},
        "spec": {"replicas": 4},
    }
    with pytest.raises(ApiException) as conflict:
        deployments.server_side_apply(body=other, namespace=namespace, field_manager="scaler")
    assert conflict.value.status == 409 and ".spec.replicas" in conflict.value.body
    forced = deployments.server_side_apply(body=other, namespace=namespace, field_manager="scaler", force_conflicts=True)
    assert forced.spec.replicas == 4

    # dry run stores nothing
    body["spec"]["replicas"] = 9
    preview = deployments.server_side_apply(
        body={**body, "metadata": {**body["metadata"], "name": "ghost"}},
        namespace=namespace,
        field_manager="pipeline",
        dry_run="All",
    )
    assert preview.metadata.name == "ghost"
    with pytest.raises(ApiException) as ghost:
        client.AppsV1Api(api).read_namespaced_deployment("ghost", namespace)
    assert ghost.value.status == 404


def test_server_side_apply_call_api_yaml(api: client.ApiClient, namespace: str) -> None:
    body = yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "yml", "namespace": namespace}, "data": {"k": "v"}}
    )
    path = f"/api/v1/namespaces/{namespace}/configmaps/yml"
    created = raw_patch(api, path, body, "application/apply-patch+yaml", "V1ConfigMap", fieldManager="yaml-applier")
    assert created.data == {"k": "v"}
    assert created.metadata.managed_fields[0].manager == "yaml-applier"
    again = raw_patch(api, path, body, "application/apply-patch+yaml", "V1ConfigMap", fieldManager="yaml-applier")
    assert again.metadata.resource_version == created.metadata.resource_version  # a no-op apply writes nothing


def test_watch_events_and_gone(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    events: list[tuple[str, str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=10):
            obj = event["object"]
            events.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    thread.join(15)
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e[2]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_restart_keeps_objects(tmp_path: Path) -> None:
    """A second cluster process on the same state directory serves the same objects and versions."""
    process = ClusterProcess(tmp_path / "state", workloads=False)
    process.start()
    try:
        api_client = config.new_client_from_config(config_file=str(process.kubeconfig))
        core = client.CoreV1Api(api_client)
        created = core.create_namespaced_config_map("default", {"metadata": {"name": "keep"}, "data": {"x": "y"}})
        api_client.close()
        assert process.stop() == 0
        process.start()
        api_client = config.new_client_from_config(config_file=str(process.kubeconfig))
        again = client.CoreV1Api(api_client).read_namespaced_config_map("keep", "default")
        assert again.metadata.uid == created.metadata.uid
        assert again.metadata.resource_version == created.metadata.resource_version
        assert again.data == {"x": "y"}
        later = client.CoreV1Api(api_client).create_namespaced_config_map("default", {"metadata": {"name": "later"}})
        assert int(later.metadata.resource_version) > int(created.metadata.resource_version)
        # the event history did not survive the restart: watching from before it is 410 Gone
        with pytest.raises(ApiException) as gone:
            for _ in watch.Watch().stream(
                client.CoreV1Api(api_client).list_namespaced_config_map, "default", resource_version="1", timeout_seconds=5
            ):
                pass
        assert gone.value.status == 410
        api_client.close()
    finally:
        process.stop()
