"""A Namespace the pipeline creates carries `kube.CREATED_BY_ANNOTATION`; one that existed before never gets it.

On a cluster of this module's own, API only (no kubelet, no Docker): `server_side_apply` of a new Namespace
creates it marked, later applies (which do not name the annotation) keep the mark, and an existing
namespace only gets the pipeline's label. `list_namespace` lists what is in one, kinds and names set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline import kube
from tests.helpers import unique_name
from tests.helpers.cluster import ClusterChild


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.KubeClient]:
    cluster = ClusterChild(tmp_path_factory.mktemp("ns-mark") / "state", workloads=False)
    cluster.start()
    try:
        with kube.connect(kubeconfig=str(cluster.kubeconfig)) as client:
            yield client
    finally:
        cluster.stop()


def namespace(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": kube.FIELD_MANAGER}},
    }


def annotations(kc: kube.KubeClient, name: str) -> dict[str, str]:
    found = kube.get_object(kc, api_version="v1", kind="Namespace", name=name) or {}
    return dict(found["metadata"].get("annotations") or {})


def test_a_namespace_the_pipeline_creates_is_marked_and_stays_marked(kc: kube.KubeClient) -> None:
    name = unique_name("made")
    kube.server_side_apply(kc, [namespace(name)], field_manager=kube.FIELD_MANAGER)
    assert annotations(kc, name) == {kube.CREATED_BY_ANNOTATION: kube.FIELD_MANAGER}
    kube.server_side_apply(kc, [namespace(name)], field_manager=kube.FIELD_MANAGER)
    assert annotations(kc, name) == {kube.CREATED_BY_ANNOTATION: kube.FIELD_MANAGER}


def test_an_existing_namespace_gets_the_label_but_not_the_mark(kc: kube.KubeClient) -> None:
    name = unique_name("before")
    made_by_someone = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    kc.request(method="POST", path="/api/v1/namespaces", what=f"Namespace {name}", body=made_by_someone)  # as kubectl create
    kube.server_side_apply(kc, [namespace(name)], field_manager=kube.FIELD_MANAGER)
    found = kube.get_object(kc, api_version="v1", kind="Namespace", name=name) or {}
    assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == kube.FIELD_MANAGER
    assert kube.CREATED_BY_ANNOTATION not in (found["metadata"].get("annotations") or {})


def test_list_namespace_sets_kind_and_api_version(kc: kube.KubeClient) -> None:
    name = unique_name("list")
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": name}, "data": {}}
    kube.server_side_apply(kc, [namespace(name), config_map], field_manager=kube.FIELD_MANAGER)
    listed = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in kube.list_namespace(kc, namespace=name)}
    assert ("v1", "ConfigMap", "c") in listed and ("v1", "ServiceAccount", "default") in listed
    assert kube.list_namespace(kc, namespace=unique_name("absent")) == []
