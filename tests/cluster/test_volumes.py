"""The kubelet's volumes: hostPath bind mounts and the service-account token projection.

Against the session's workload cluster process (real API server, real kubelet,
real Docker containers), through the `kubernetes` client, as the pipeline
worker pod will use them: a hostPath mount (read-only or not), and an
in-cluster client that finds its token, CA and API address where
`kubernetes.config.load_incluster_config()` looks.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from kubernetes import client, config

from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess

__all__ = ["docker_engine"]  # session fixture used by name

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# What load_incluster_config() does (env + token + CA), then one authenticated, CA-verified call.
IN_CLUSTER_PROBE = textwrap.dedent(
    """
    import json, os, ssl, urllib.error, urllib.request
    d = "/var/run/secrets/kubernetes.io/serviceaccount"
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    token = open(d + "/token").read()
    ns = open(d + "/namespace").read()
    ctx = ssl.create_default_context(cafile=d + "/ca.crt")
    auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    req = urllib.request.Request(f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                 data=review, headers=auth)
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        user = json.load(resp)["status"]["userInfo"]["username"]
    print("ns", ns, "status", resp.status, "user", user)
    try:
        urllib.request.urlopen(urllib.request.Request(f"https://{host}:{port}/api/v1/namespaces/{ns}/pods",
                                                      headers=auth), context=ctx, timeout=5)
    except urllib.error.HTTPError as err:
        print("list pods:", err.code, json.load(err)["message"])
    try:
        open(d + "/token", "w")
    except OSError as err:
        print("token read-only:", err.errno)
    """
)


@pytest.fixture(scope="module")
def core(workload_cluster: ClusterProcess, docker_engine: Any) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(workload_cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = unique("vol")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def run_pod(core: client.CoreV1Api, namespace: str, script: str, **spec: Any) -> dict[str, Any]:
    """A one-shot python3 pod; returns the pod once it finished (Succeeded or Failed)."""
    name = unique("vol")
    container = {"name": "main", "image": BASE_IMAGE, "command": ["python3", "-c", script]}
    container.update(spec.pop("container", {}))
    body = {
        "metadata": {"name": name},
        "spec": {"containers": [container], "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, **spec},
    }
    core.create_namespaced_pod(namespace, body)

    def finished() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return poll_until(finished, timeout=60, what=f"pod {name} finished").to_dict()  # type: ignore[no-any-return]


def log_of(core: client.CoreV1Api, namespace: str, pod: dict[str, Any]) -> str:
    return str(core.read_namespaced_pod_log(pod["metadata"]["name"], namespace))


def test_host_path_read_only_and_read_write(core: client.CoreV1Api, namespace: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "hello").write_text("from the host")
    out = tmp_path / "out"
    out.mkdir()
    script = textwrap.dedent(
        """
        print(open("/in/hello").read())
        try:
            open("/in/new", "w")
        except OSError as err:
            print("read-only errno", err.errno)
        open("/out/written", "w").write("from the pod")
        print(open("/sub/hello").read())
        """
    )
    pod = run_pod(
        core,
        namespace,
        script,
        volumes=[
            {"name": "in", "hostPath": {"path": str(source), "type": "Directory"}},
            {"name": "out", "hostPath": {"path": str(out)}},
        ],
        container={
            "volumeMounts": [
                {"name": "in", "mountPath": "/in", "readOnly": True},
                {"name": "out", "mountPath": "/out"},
                {"name": "in", "mountPath": "/sub/hello", "subPath": "hello", "readOnly": True},
            ]
        },
        automountServiceAccountToken=False,
    )
    log = log_of(core, namespace, pod)
    assert pod["status"]["phase"] == "Succeeded", log
    assert log.splitlines() == ["from the host", "read-only errno 30", "from the host"]  # EROFS
    assert (out / "written").read_text() == "from the pod"
    assert not (source / "new").exists()


def test_host_path_type_check_fails_mount(core: client.CoreV1Api, namespace: str, tmp_path: Path) -> None:
    name = unique("vol")
    missing = tmp_path / "no.sock"
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
                        "volumeMounts": [{"name": "sock", "mountPath": "/var/run/docker.sock"}],
                    }
                ],
                "volumes": [{"name": "sock", "hostPath": {"path": str(missing), "type": "Socket"}}],
                "terminationGracePeriodSeconds": 1,
            },
        },
    )

    def failed_mount() -> Any:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.reason == "FailedMount"]

    [event] = poll_until(failed_mount, timeout=30, what="FailedMount event")
    assert event.type == "Warning"
    assert f'volume "sock": hostPath type check failed: {missing} does not exist' in event.message
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"


def test_unsupported_volume_type_fails_mount(core: client.CoreV1Api, namespace: str) -> None:
    name = unique("vol")
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
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    }
                ],
                "volumes": [{"name": "scratch", "persistentVolumeClaim": {"claimName": "x"}}],
                "terminationGracePeriodSeconds": 1,
            },
        },
    )

    def failed_mount() -> Any:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [e.message for e in events if e.reason == "FailedMount"]

    [message] = poll_until(failed_mount, timeout=30, what="FailedMount event")
    assert 'volume "scratch": unsupported volume type (persistentVolumeClaim)' in message


def test_empty_dir_is_writable_by_a_non_root_user_on_a_read_only_root(
    core: client.CoreV1Api, namespace: str, workload_cluster: ClusterProcess
) -> None:
    script = "open('/tmp/x', 'w').write('ok'); print(open('/tmp/x').read())"
    pod = run_pod(
        core,
        namespace,
        script,
        volumes=[{"name": "tmp", "emptyDir": {}}],
        securityContext={"runAsUser": 10001, "runAsGroup": 10001},
        container={
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "securityContext": {"readOnlyRootFilesystem": True},
        },
    )
    assert log_of(core, namespace, pod).strip() == "ok"
    core.delete_namespaced_pod(pod["metadata"]["name"], namespace, _preload_content=False)
    pod_dir = workload_cluster.state_dir / "kubelet" / "pods" / pod["metadata"]["uid"]
    poll_until(lambda: not pod_dir.exists(), timeout=30, what="the emptyDir removed with the pod")


def test_service_account_token_is_projected(core: client.CoreV1Api, namespace: str, workload_cluster: ClusterProcess) -> None:
    """No automount setting: the pod's own ("default") ServiceAccount's token is mounted, bound to the pod as
    kubelet's kube-api-access volume asks for it (3607 s, the API's audience; signed for a year, warnafter
    3607 s), and the API server authenticates and authorizes the pod as that account, not as the admin."""
    pod = run_pod(core, namespace, IN_CLUSTER_PROBE, container={"env": [{"name": "OWN", "value": "1"}]})
    log = log_of(core, namespace, pod)
    assert pod["status"]["phase"] == "Succeeded", log
    account = f"system:serviceaccount:{namespace}:default"
    assert f"ns {namespace} status 201 user {account}" in log
    assert (
        f'list pods: 403 pods is forbidden: User "{account}" cannot list resource "pods" in API group "" '
        f'in the namespace "{namespace}"'
    ) in log
    assert "token read-only: 30" in log
    uid = pod["metadata"]["uid"]
    files = workload_cluster.state_dir / "kubelet" / "pods" / uid / "serviceaccount"
    assert sorted(p.name for p in files.iterdir()) == ["ca.crt", "namespace", "token"]
    token = (files / "token").read_text()
    assert token != workload_cluster.token
    claims = jwt.decode(token, options={"verify_signature": False})
    private = claims["kubernetes.io"]
    assert claims["sub"] == account and claims["aud"] == [workload_cluster.base_url]
    assert private["pod"] == {"name": pod["metadata"]["name"], "uid": uid}
    assert private["warnafter"] - claims["iat"] == 3607 and claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert (files / "ca.crt").read_bytes() == (workload_cluster.state_dir / "pki" / "ca.crt").read_bytes()

    core.delete_namespaced_pod(pod["metadata"]["name"], namespace, _preload_content=False)
    poll_until(lambda: not files.exists(), timeout=30, what="the pod's token files removed with the pod")


def test_service_account_env_matches_load_incluster_config(
    core: client.CoreV1Api, namespace: str, workload_cluster: ClusterProcess
) -> None:
    script = "import os; print(os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'])"
    pod = run_pod(core, namespace, script)
    assert log_of(core, namespace, pod).split() == ["127.0.0.1", str(workload_cluster.port)]


@pytest.mark.parametrize(
    ("account", "pod_setting", "mounted"),
    [
        (False, None, False),  # the ServiceAccount opts out
        (False, True, True),  # the pod's setting wins
        (True, False, False),
        (None, False, False),  # no setting on the account; the pod opts out
    ],
)
def test_automount_rules(
    core: client.CoreV1Api, namespace: str, account: bool | None, pod_setting: bool | None, mounted: bool
) -> None:
    sa: dict[str, Any] = {"metadata": {"name": "worker"}}
    if account is not None:
        sa["automountServiceAccountToken"] = account
    core.create_namespaced_service_account(namespace, sa)
    script = f"import os; print(os.path.exists('{SA_DIR}/token'), 'KUBERNETES_SERVICE_HOST' in os.environ)"
    spec: dict[str, Any] = {"serviceAccountName": "worker"}
    if pod_setting is not None:
        spec["automountServiceAccountToken"] = pod_setting
    pod = run_pod(core, namespace, script, **spec)
    assert log_of(core, namespace, pod).split() == [str(mounted), str(mounted)]
