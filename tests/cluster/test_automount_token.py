"""The kubelet's automounted ServiceAccount token (kubelet/volumes.py), in-process: whose it is, how long it
lives, and when it is rotated. The pod-side proof (a container authenticated as its ServiceAccount and held to
its RBAC) is tests/cluster/test_volumes.py and tests/e2e/test_pipeline_rbac.py.
"""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from bootstrap.cluster import pki, rbac
from bootstrap.cluster.kubelet import volumes
from bootstrap.cluster.kubelet.volumes import ApiAccess, write_service_account
from bootstrap.cluster.resources import NAMESPACES, PODS, SERVICEACCOUNTS
from bootstrap.cluster.store import Obj, Store
from bootstrap.cluster.tokens import TokenIssuer

pytestmark = pytest.mark.unit
ISSUER = "https://127.0.0.1:6443"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Store, Obj, ApiAccess]:
    store = Store(None)
    store.create(NAMESPACES, {"metadata": {"name": "ns"}})
    store.create(SERVICEACCOUNTS, {"metadata": {"name": "worker", "namespace": "ns"}})
    pod = store.create(
        PODS,
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"serviceAccountName": "worker", "containers": [{"name": "c", "image": "x:1"}]},
        },
    )
    issuer = TokenIssuer.from_file(ISSUER, pki.ensure_service_account_key(tmp_path))
    return store, pod, ApiAccess(port=6443, ca_pem=b"CA PEM\n", issuer=issuer)


def test_the_token_is_the_pods_own_accounts_bound_and_extended(setup: tuple[Store, Obj, ApiAccess], tmp_path: Path) -> None:
    store, pod, api = setup
    directory, due = write_service_account(store, pod, state_dir=tmp_path, api=api)
    token = (directory / "token").read_text()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:ns:worker" and claims["aud"] == [ISSUER]
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}
    lifetime = claims["kubernetes.io"]["warnafter"] - claims["iat"]
    assert lifetime == 3607 and claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert due == pytest.approx(claims["iat"] + 0.8 * 3607, abs=1)  # rotated at 80 % of the 3607 s asked for
    assert (directory / "ca.crt").read_bytes() == b"CA PEM\n" and (directory / "namespace").read_text() == "ns"
    user = rbac.authenticate(token, admin_token="admin", store=store, issuer=api.issuer)
    assert user is not None and user.name == "system:serviceaccount:ns:worker"
    assert rbac.MASTERS not in user.groups


def test_the_token_is_kept_until_due_then_rotated(
    setup: tuple[Store, Obj, ApiAccess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, pod, api = setup
    directory, _ = write_service_account(store, pod, state_dir=tmp_path, api=api)
    first = (directory / "token").read_text()
    write_service_account(store, pod, state_dir=tmp_path, api=api)
    assert (directory / "token").read_text() == first  # not due: the same token
    monkeypatch.setattr(volumes, "TOKEN_REFRESH_FRACTION", 0.0)  # everything is due at once
    volumes.refresh_volumes(store, pod, state_dir=tmp_path, api=api)
    rotated = (directory / "token").read_text()
    assert rotated != first
    assert jwt.decode(rotated, options={"verify_signature": False})["sub"] == "system:serviceaccount:ns:worker"
