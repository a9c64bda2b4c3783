"""pipeline.kube.connect's in-cluster rule (see pipeline/kube/client.py), against a real local cluster.

The service-account directory is made here the way the kubelet writes it
(token, ca.crt, namespace) from the cluster's own kubeconfig, and the
KUBERNETES_SERVICE_* variables are set as the kubelet sets them; the pod-side
proof (the pipeline worker in the cluster) is tests/e2e/test_self_deploy.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline import kube
from tests.helpers.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("incluster") / "state")
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def service_account(cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mounted token as the kubelet projects it, and the env it sets."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(doc["users"][0]["user"]["token"])
    (directory / "ca.crt").write_bytes(base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    (directory / "namespace").write_text("default")
    server = urlsplit(doc["clusters"][0]["cluster"]["server"])
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    return directory


def _works(kc: kube.KubeClient) -> None:
    assert kc.request(method="GET", path="/api/v1/namespaces/default", what="Namespace default")["metadata"]["name"] == "default"


def test_empty_kubeconfig_means_in_cluster(service_account: Path, cluster: LocalCluster) -> None:
    with kube.connect(kubeconfig="", service_account_dir=str(service_account)) as kc:
        assert kc.source == f"in-cluster:{service_account}"
        assert kc.host == f"https://127.0.0.1:{cluster.port}"
        _works(kc)


def test_a_kubeconfig_absent_here_falls_back_to_the_mounted_token(service_account: Path, tmp_path: Path) -> None:
    """What the self-deployed worker sees: the CLI's path to its kubeconfig, which the pod does not have."""
    with kube.connect(
        kubeconfig=str(tmp_path / "host" / "kubeconfig"), context="ignored", service_account_dir=str(service_account)
    ) as kc:
        assert kc.source.startswith("in-cluster:") and kc.context == ""
        _works(kc)


def test_a_readable_kubeconfig_wins_even_in_a_pod(service_account: Path, cluster: LocalCluster) -> None:
    with kube.connect(kubeconfig=str(cluster.kubeconfig), service_account_dir=str(service_account)) as kc:
        assert kc.source == str(cluster.kubeconfig)
        _works(kc)


def test_the_in_cluster_token_is_what_authenticates(service_account: Path) -> None:
    (service_account / "token").write_text("not-the-token")
    with kube.connect(kubeconfig="", service_account_dir=str(service_account)) as kc:
        with pytest.raises(kube.KubeUnauthorized):
            _works(kc)


def test_not_in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kube.KubeConfigError, match=r"in-cluster config .* unusable: Service host/port is not set"):
        kube.connect(kubeconfig="", service_account_dir=str(tmp_path))
    with pytest.raises(kube.KubeConfigError, match="no such file, and no service-account token is mounted") as caught:
        kube.connect(kubeconfig=str(tmp_path / "absent"), service_account_dir=str(tmp_path))
    assert len(caught.value.lines()) == 1


def test_env_without_token_file_is_not_in_cluster(service_account: Path, tmp_path: Path) -> None:
    (service_account / "token").unlink()
    assert not kube.in_cluster(service_account_dir=str(service_account))
    with pytest.raises(kube.KubeConfigError, match="no such file"):
        kube.connect(kubeconfig=str(tmp_path / "absent"), service_account_dir=str(service_account))
