"""ServiceAccount tokens as kube-apiserver and kubelet issue them: TokenRequest, OIDC discovery, projected volumes.

What Azure workload identity needs from a cluster: a pod's projected token (audience
`api://AzureADTokenExchange`) that a verifier checks against the issuer's published keys,
found through `<issuer>/.well-known/openid-configuration` without any credential.
Against a cluster process of this module's own (real API server, real kubelet, real Docker
containers), whose kubelet rotates tokens after 1% of their lifetime
(CLUSTER_TOKEN_REFRESH_FRACTION), so that rotation shows within seconds.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import jwt
import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bootstrap.cluster.kubelet.runtime import LABEL_POD_UID
from tests.cluster.test_volumes import log_of, run_pod
from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine"]  # session fixture used by name

WORKLOAD_IDENTITY_AUDIENCE = "api://AzureADTokenExchange"
REFRESH_FRACTION = 0.01  # 600 s tokens are rotated after 6 s


def _ca_file(kubeconfig: Path) -> Path:
    doc = yaml.safe_load(kubeconfig.read_text())
    path = kubeconfig.parent / "ca-for-tests.crt"
    path.write_bytes(base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    return path


@pytest.fixture(scope="module")
def sa_cluster(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[ClusterProcess]:
    state = tmp_path_factory.mktemp("sa-cluster") / "state"
    process = ClusterProcess(state)
    previous = os.environ.get("CLUSTER_TOKEN_REFRESH_FRACTION")
    os.environ["CLUSTER_TOKEN_REFRESH_FRACTION"] = str(REFRESH_FRACTION)
    try:
        process.start()
    finally:
        if previous is None:
            os.environ.pop("CLUSTER_TOKEN_REFRESH_FRACTION", None)
        else:
            os.environ["CLUSTER_TOKEN_REFRESH_FRACTION"] = previous
    try:
        yield process
    finally:
        process.stop()
        process.remove_containers()


@pytest.fixture(scope="module")
def core(sa_cluster: ClusterProcess) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(sa_cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = unique("sat")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _discovery(cluster: ClusterProcess) -> tuple[dict[str, Any], dict[str, Any], requests.Response]:
    """The OIDC discovery document and the JWKS, fetched as a verifier would: no token, the cluster CA."""
    ca = str(_ca_file(cluster.kubeconfig))
    doc = requests.get(f"{cluster.base_url}/.well-known/openid-configuration", verify=ca, timeout=5)
    assert doc.status_code == 200, doc.text
    jwks = requests.get(doc.json()["jwks_uri"], verify=ca, timeout=5)
    assert jwks.status_code == 200, jwks.text
    return doc.json(), jwks.json(), jwks


def verify(cluster: ClusterProcess, token: str, audience: str) -> dict[str, Any]:
    """Verify `token` against the keys the issuer publishes (signature, iss, aud, exp), as Entra ID does."""
    doc, jwks, _ = _discovery(cluster)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": header["kid"]}
    [key] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public = jwt.PyJWK.from_dict(key).key
    claims: dict[str, Any] = jwt.decode(
        token, public, algorithms=["RS256"], audience=audience, issuer=doc["issuer"], options={"require": ["exp", "iat", "nbf"]}
    )
    return claims


def test_discovery_and_jwks_are_public(sa_cluster: ClusterProcess) -> None:
    doc, jwks, response = _discovery(sa_cluster)
    assert doc == {
        "issuer": sa_cluster.base_url,
        "jwks_uri": f"{sa_cluster.base_url}/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    assert response.headers["Content-Type"] == "application/jwk-set+json"
    [key] = jwks["keys"]
    assert set(key) == {"use", "kty", "kid", "alg", "n", "e"}
    assert (key["use"], key["kty"], key["alg"], key["e"]) == ("sig", "RSA", "RS256", "AQAB")
    # Kubernetes' key id: base64url(SHA-256(DER SubjectPublicKeyInfo)), no padding
    from cryptography.hazmat.primitives import hashes, serialization

    public = jwt.PyJWK.from_dict(key).key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    assert key["kid"] == base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()
    assert public.key_size == 2048
    # everything else still needs the token
    ca = str(_ca_file(sa_cluster.kubeconfig))
    assert requests.get(f"{sa_cluster.base_url}/api/v1/namespaces", verify=ca, timeout=5).status_code == 401
    key_file = sa_cluster.state_dir / "pki" / "sa.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_discovery_lists_the_token_subresource(core: client.CoreV1Api) -> None:
    resources = {r.name: r for r in core.get_api_resources().resources}
    token = resources["serviceaccounts/token"]
    assert (token.group, token.version, token.kind, token.verbs) == ("authentication.k8s.io", "v1", "TokenRequest", ["create"])


def test_token_request_defaults(core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess) -> None:
    account = core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    started = int(time.time())
    result = core.create_namespaced_service_account_token("worker", namespace, {"spec": {}})
    assert result.spec.audiences == [sa_cluster.base_url]
    assert result.spec.expiration_seconds == 3600
    assert (result.metadata.name, result.metadata.namespace) == ("worker", namespace)
    claims = verify(sa_cluster, result.status.token, sa_cluster.base_url)
    assert claims["iss"] == sa_cluster.base_url
    assert claims["sub"] == f"system:serviceaccount:{namespace}:worker"
    assert claims["aud"] == [sa_cluster.base_url]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]
    assert started - 1 <= claims["iat"] <= time.time() + 1
    assert len(claims["jti"]) == 36
    assert claims["kubernetes.io"] == {
        "namespace": namespace,
        "serviceaccount": {"name": "worker", "uid": account.metadata.uid},
    }
    assert int(result.status.expiration_timestamp.timestamp()) == claims["exp"]


def test_token_request_explicit_audiences(core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    body = {"spec": {"audiences": [WORKLOAD_IDENTITY_AUDIENCE, "other"], "expirationSeconds": 600}}
    result = core.create_namespaced_service_account_token("worker", namespace, body)
    claims = verify(sa_cluster, result.status.token, WORKLOAD_IDENTITY_AUDIENCE)
    assert claims["aud"] == [WORKLOAD_IDENTITY_AUDIENCE, "other"]
    assert claims["exp"] - claims["iat"] == 600
    with pytest.raises(jwt.InvalidAudienceError):
        verify(sa_cluster, result.status.token, "someone-else")


def test_token_request_bound_to_a_secret(core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    secret = core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    body = {"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": secret.metadata.uid}}}
    result = core.create_namespaced_service_account_token("worker", namespace, body)
    claims = verify(sa_cluster, result.status.token, sa_cluster.base_url)
    assert claims["kubernetes.io"]["secret"] == {"name": "s", "uid": secret.metadata.uid}


def test_token_request_for_an_unknown_service_account_is_404(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service_account_token("nobody", namespace, {"spec": {}})
    assert caught.value.status == 404
    status = json.loads(caught.value.body)
    assert (status["reason"], status["message"]) == ("NotFound", 'serviceaccounts "nobody" not found')
    assert status["details"] == {"name": "nobody", "kind": "serviceaccounts"}


def test_token_request_shorter_than_ten_minutes_is_invalid(core: client.CoreV1Api, namespace: str) -> None:
    """kube's ValidateTokenRequest: a 422 Invalid Status (NewInvalid), as kube-apiserver answers it."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service_account_token("worker", namespace, {"spec": {"expirationSeconds": 599}})
    assert caught.value.status == 422
    status = json.loads(caught.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'TokenRequest.authentication.k8s.io "" is invalid: '
        "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    )
    assert status["details"]["causes"][0]["field"] == "spec.expirationSeconds"


def test_kubectl_create_token(core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess) -> None:
    """kubectl posts the TokenRequest as protobuf."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    out = kubectl(
        sa_cluster.kubeconfig,
        "create",
        "token",
        "worker",
        "-n",
        namespace,
        "--audience",
        WORKLOAD_IDENTITY_AUDIENCE,
        "--duration",
        "15m",
    )
    claims = verify(sa_cluster, out.stdout.strip(), WORKLOAD_IDENTITY_AUDIENCE)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:worker"
    assert claims["exp"] - claims["iat"] == 900
    # "default" exists in every namespace
    out = kubectl(sa_cluster.kubeconfig, "create", "token", "default", "-n", namespace)
    assert verify(sa_cluster, out.stdout.strip(), sa_cluster.base_url)["sub"] == f"system:serviceaccount:{namespace}:default"


def test_signing_key_survives_a_restart(tmp_path: Path) -> None:
    cluster = ClusterProcess(tmp_path / "state", workloads=False)
    cluster.start()
    try:
        _, before, _ = _discovery(cluster)
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core = client.CoreV1Api(api_client)
        core.create_namespaced_service_account("default", {"metadata": {"name": "keep"}})
        token = core.create_namespaced_service_account_token("keep", "default", {"spec": {}}).status.token
        api_client.close()
    finally:
        cluster.stop()
    cluster.start()
    try:
        _, after, _ = _discovery(cluster)
        assert after == before
        assert verify(cluster, token, cluster.base_url)["sub"] == "system:serviceaccount:default:keep"
    finally:
        cluster.stop()


PRINT_FILES = textwrap.dedent(
    """
    import json, os
    out = {}
    for root, dirs, files in os.walk("/projected"):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if not f.startswith("."):
                p = os.path.join(root, f)
                out[os.path.relpath(p, "/projected")] = [open(p).read(), oct(os.stat(p).st_mode & 0o777)]
    try:
        open("/projected/x", "w")
    except OSError as err:
        out["write-errno"] = err.errno
    print(json.dumps(out))
    """
)


def test_projected_volume(core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess) -> None:
    account = core.create_namespaced_service_account(namespace, {"metadata": {"name": "wi"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "alpha", "b": "beta"}})
    pod = run_pod(
        core,
        namespace,
        PRINT_FILES,
        serviceAccountName="wi",
        securityContext={"runAsUser": 10001, "runAsGroup": 10001},
        volumes=[
            {
                "name": "projected",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": WORKLOAD_IDENTITY_AUDIENCE,
                                "expirationSeconds": 3600,
                                "path": "azure-identity-token",
                            }
                        },
                        {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "cfg/a.txt", "mode": 0o604}]}},
                        {"configMap": {"name": "absent", "optional": True}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                                    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                ]
                            }
                        },
                    ]
                },
            }
        ],
        container={"volumeMounts": [{"name": "projected", "mountPath": "/projected"}]},
    )
    log = log_of(core, namespace, pod)
    assert pod["status"]["phase"] == "Succeeded", log
    files = json.loads(log)
    meta = pod["metadata"]
    assert files["name"] == [meta["name"], "0o644"]
    assert files["namespace"] == [namespace, "0o644"]
    assert files["uid"] == [meta["uid"], "0o644"]
    assert files["labels"] == ["", "0o644"]
    assert files["cfg/a.txt"] == ["alpha", "0o604"]
    assert "b" not in files and "cfg/b" not in files  # only the listed items
    assert files["write-errno"] == 30  # read-only
    token, mode = files["azure-identity-token"]
    assert mode == "0o644"
    claims = verify(sa_cluster, token, WORKLOAD_IDENTITY_AUDIENCE)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:wi"
    assert claims["aud"] == [WORKLOAD_IDENTITY_AUDIENCE]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["pod"] == {"name": meta["name"], "uid": meta["uid"]}
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "wi", "uid": account.metadata.uid}
    on_disk = sa_cluster.state_dir / "kubelet" / "pods" / meta["uid"] / "volumes" / "projected"
    assert stat.S_IMODE((on_disk / "cfg" / "a.txt").stat().st_mode) == 0o604


def test_config_map_and_secret_volumes(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "alpha", "b": "beta"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "sec"}, "stringData": {"password": "hunter2"}})
    script = (
        "import os; print(sorted(f for f in os.listdir('/cfg') if not f.startswith('.')), open('/cfg/b').read(), "
        "open('/sec/pw').read(), oct(os.stat('/sec/pw').st_mode & 0o777), oct(os.stat('/cfg/a').st_mode & 0o777))"
    )
    pod = run_pod(
        core,
        namespace,
        script,
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o604}},
            {"name": "sec", "secret": {"secretName": "sec", "items": [{"key": "password", "path": "pw", "mode": 0o444}]}},
        ],
        container={"volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}]},
    )
    log = log_of(core, namespace, pod)
    assert pod["status"]["phase"] == "Succeeded", log
    assert log.strip() == "['a', 'b'] beta hunter2 0o444 0o604"


def test_missing_config_map_fails_mount(core: client.CoreV1Api, namespace: str) -> None:
    name = unique("sat")
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": BASE_IMAGE,
                        "command": ["sleep", "60"],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
                    }
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "nope"}}],
                "terminationGracePeriodSeconds": 1,
            },
        },
    )

    def failed_mount() -> Any:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.reason == "FailedMount"]

    [event] = poll_until(failed_mount, timeout=20, what="FailedMount event")
    assert event.type == "Warning"
    assert event.message == 'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found'
    assert core.read_namespaced_pod(name, namespace).status.phase == "Pending"


def test_projected_token_is_rotated(
    core: client.CoreV1Api, namespace: str, sa_cluster: ClusterProcess, docker_engine: docker.DockerClient
) -> None:
    """kubelet rewrites the token once the refresh fraction of its lifetime has passed (here 1% of 600 s);
    the running container sees the new file through its read-only mount."""
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"k": "v1"}})
    name = unique("sat")
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": BASE_IMAGE,
                        "command": ["sleep", "120"],
                        "volumeMounts": [{"name": "tok", "mountPath": "/var/run/secrets/azure/tokens"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "tok",
                        "projected": {
                            "sources": [
                                {
                                    "serviceAccountToken": {
                                        "audience": WORKLOAD_IDENTITY_AUDIENCE,
                                        "expirationSeconds": 600,
                                        "path": "azure-identity-token",
                                    }
                                },
                                {"configMap": {"name": "cfg"}},
                            ]
                        },
                    }
                ],
                "terminationGracePeriodSeconds": 1,
            },
        },
    )
    poll_until(lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running", timeout=30, what="the pod running")
    uid = core.read_namespaced_pod(name, namespace).metadata.uid
    token_file = sa_cluster.state_dir / "kubelet" / "pods" / uid / "volumes" / "tok" / "azure-identity-token"
    first = token_file.read_text()
    first_claims = verify(sa_cluster, first, WORKLOAD_IDENTITY_AUDIENCE)
    core.patch_namespaced_config_map("cfg", namespace, {"data": {"k": "v2"}})
    second = poll_until(lambda: token_file.read_text() != first and token_file.read_text(), timeout=20, what="a new token")
    second_claims = verify(sa_cluster, second, WORKLOAD_IDENTITY_AUDIENCE)
    assert second_claims["iat"] > first_claims["iat"] or second_claims["jti"] != first_claims["jti"]
    assert second_claims["kubernetes.io"]["pod"] == first_claims["kubernetes.io"]["pod"]
    assert second_claims["exp"] - second_claims["iat"] == 600
    assert (token_file.parent / "k").read_text() == "v2"  # the ConfigMap change followed with the rotation
    # the running container sees the new token through its (directory) bind mount
    [container] = docker_engine.containers.list(filters={"label": f"{LABEL_POD_UID}={uid}"})
    seen = container.exec_run(["cat", "/var/run/secrets/azure/tokens/azure-identity-token"]).output.decode()
    assert seen == second
