"""`pipeline teardown` after a local `pipeline bootstrap`: the cluster is as it was before (issue 23 item 5).

Isolated like tests/e2e/test_self_deploy.py: a cluster of this module's own (`python -m bootstrap.cluster
serve`, so the stack's cluster and its pipeline are never touched), its own Kubernetes namespace, pipeline
task queue and app names; the stack's Temporal dev server, registry and Docker engine are shared.

Every object of the cluster (every namespace, and in each every kind the pipeline's Kubernetes layer
knows, pods and ReplicaSets included) is listed by uid before `pipeline bootstrap`, which deploys the
pipeline worker into a namespace it creates; `pipeline teardown --yes` must leave exactly that list. Objects
that existed before stay, even one in another namespace that carries the pipeline's label. A second
teardown finds nothing; without --yes and a terminal, teardown refuses in one line and deletes nothing.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import kube
from tests.e2e.support import REGISTRY, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, UI_URL, self_deploy_apps_toml
from tests.helpers.cli import clean_env
from tests.helpers.cluster import LocalCluster
from tests.helpers.teardown import pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

Snapshot = set[tuple[str, str, str, str]]  # (kind, namespace, name, uid)


@dataclass(frozen=True)
class Local:
    cluster: LocalCluster
    config: Path
    uid: str

    @property
    def namespace(self) -> str:
        return f"td-{self.uid}"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return pipeline(self.config, *args, env=clean_env(), timeout=timeout)

    def snapshot(self) -> Snapshot:
        """Every object of the cluster, by uid: the namespaces, and everything in each that pipeline/kube can list."""
        found: Snapshot = set()
        with kube.connect(kubeconfig=str(self.cluster.kubeconfig)) as kc:
            for ns in kube.list_objects(kc, api_version="v1", kind="Namespace", namespace="", selector={}):
                name = ns["metadata"]["name"]
                found.add(("Namespace", "", name, ns["metadata"]["uid"]))
                for obj in kube.list_namespace(kc, namespace=name):
                    meta = obj["metadata"]
                    found.add((obj["kind"], name, meta["name"], meta["uid"]))
        return found


@pytest.fixture(scope="module")
def local(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    cluster = LocalCluster(tmp_path_factory.mktemp("teardown") / "state")
    cluster.start()
    uid = uuid.uuid4().hex[:6]
    config = tmp_path_factory.mktemp("teardown-config") / "config.toml"
    config.write_text(
        f"""
target = "local"
[pipeline]
task_queue = "td-{uid}-deployments"   # not the stack's pipeline queue: only this test's pipeline worker polls it
default_app = "tdsw-{uid}"
[kubernetes]
namespace = "td-{uid}"
kubeconfig = "{cluster.kubeconfig}"
[temporal]
address = "{TEMPORAL_ADDRESS}"
namespace = "{TEMPORAL_NAMESPACE}"
ui_url = "{UI_URL}"
[registry]
address = "{REGISTRY}"
"""
        + self_deploy_apps_toml(
            sample_app=f"tdsw-{uid}", sample_queue=f"tdsw-{uid}", pipeline_app=f"tdpw-{uid}", pipeline_grace_seconds=10
        )
    )
    try:
        yield Local(cluster, config, uid)
    finally:  # the cluster is this module's alone: its state goes with the temporary directory
        cluster.stop()
        cluster.remove_containers()


def test_teardown_after_a_local_bootstrap_leaves_the_cluster_as_it_was(local: Local) -> None:
    # Something that existed before, outside the pipeline's namespace, even with the pipeline's label: it stays.
    with kube.connect(kubeconfig=str(local.cluster.kubeconfig)) as kc:
        keep = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"keep-{local.uid}"}}
        labelled = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "mine",
                "namespace": f"keep-{local.uid}",
                "labels": {"app.kubernetes.io/managed-by": "temporal-deploy-pipeline"},
            },
            "data": {"a": "b"},
        }
        kc.request(method="POST", path="/api/v1/namespaces", what="Namespace keep", body=keep)  # as kubectl create
        kube.apply_one(kc, labelled, field_manager="someone-else")
    before = local.snapshot()

    boot = local.cli("bootstrap")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    during = local.snapshot()
    made = {(kind, ns, name) for kind, ns, name, _ in during - before}
    assert ("Namespace", "", local.namespace) in made
    assert ("Deployment", local.namespace, f"tdpw-{local.uid}") in made
    assert any(kind == "Pod" for kind, _, _ in made), made
    with kube.connect(kubeconfig=str(local.cluster.kubeconfig)) as kc:
        ns = kube.get_object(kc, api_version="v1", kind="Namespace", name=local.namespace) or {}
        assert kube.CREATED_BY_ANNOTATION in ns["metadata"].get("annotations", {}), ns
        keep_ns = kube.get_object(kc, api_version="v1", kind="Namespace", name=f"keep-{local.uid}") or {}
        assert kube.CREATED_BY_ANNOTATION not in (keep_ns["metadata"].get("annotations") or {})

    # Without --yes and a terminal: the plan, one line on stderr, exit 2, and nothing deleted.
    refused = local.cli("teardown")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.strip()]) == 1, refused.stderr
    assert refused.stderr.strip().endswith("run `pipeline teardown --yes`")
    assert local.snapshot() == during

    done = local.cli("teardown", "--yes", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deleted Deployment {local.namespace}/tdpw-{local.uid}" in done.stdout
    assert f"deleted Namespace {local.namespace}" in done.stdout
    assert local.snapshot() == before

    again = local.cli("teardown")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to delete: nothing `pipeline bootstrap` made is left" in again.stdout
