"""Pod identity and readiness as a kubelet gives them: hostname = pod name, readiness gates, pods/status.

Through the real `kubernetes` client and kubectl, as the pipeline and a person use
AKS: a container's `socket.gethostname()` is its pod's name (cut to 63
characters) and resolves to the pod IP; a pod with a readiness gate whose
condition is absent or not "True" runs with ContainersReady True but Ready
False (ReadinessGatesNotReady), so its Deployment has nothing available and a
maxUnavailable-0 rollout keeps the old pod; `patch_namespaced_pod_status`
setting the condition makes it Ready at once (the latency is printed), and the
condition outlives the kubelet's own status writes (a container restart).
The pods/status subresource itself (GET, PUT, the three patch types, what a
status write may not change) is checked on the API-only session cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import docker
import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from bootstrap.cluster.kubelet import Kubelet
from bootstrap.cluster.kubelet.podworker import PodWorker
from bootstrap.cluster.resources import PODS
from bootstrap.cluster.store import Obj, Store
from tests.cluster.workloads import BASE_IMAGE, docker_engine, unique
from tests.helpers import poll_until
from tests.helpers.cluster import ClusterProcess, kubectl

__all__ = ["docker_engine"]  # a session fixture used by name

GATE = "example.com/ready-for-traffic"
SLEEPER = ["python3", "-c", "import time; time.sleep(3600)"]


def _client(cluster: ClusterProcess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def wl_api(workload_cluster: ClusterProcess, docker_engine: docker.DockerClient) -> Iterator[client.ApiClient]:
    """A client of the session's cluster WITH the kubelet (skipped without Docker or the base image)."""
    yield from _client(workload_cluster)


@pytest.fixture(scope="module")
def api(cluster: ClusterProcess) -> Iterator[client.ApiClient]:
    """A client of the API-only session cluster."""
    yield from _client(cluster)


def _namespace(api_client: client.ApiClient, prefix: str) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = unique(prefix)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def wl_namespace(wl_api: client.ApiClient) -> Iterator[str]:
    yield from _namespace(wl_api, "gates")


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    yield from _namespace(api, "podstatus")


def gated_deployment(name: str, *, env: str = "v1") -> dict[str, Any]:
    """One sleeper pod per revision behind a readiness gate; maxUnavailable 0 keeps the old pod until the new is Ready."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "readinessGates": [{"conditionType": GATE}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "app", "image": BASE_IMAGE, "command": SLEEPER, "env": [{"name": "REVISION", "value": env}]}
                    ],
                },
            },
        },
    }


def conditions(pod: client.V1Pod) -> dict[str, client.V1PodCondition]:
    return {c.type: c for c in (pod.status.conditions or [])} if pod.status else {}


def gate_condition(status: str) -> dict[str, Any]:
    return {"type": GATE, "status": status, "reason": "Test", "message": f"set {status} by the test"}


def pods_of(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def readiness_gates_column(kubeconfig: Any, namespace: str, pod: str) -> str:
    """The READINESS GATES cell of `kubectl get pod -o wide`."""
    text = kubectl(kubeconfig, "get", "pod", pod, "-n", namespace, "-o", "wide").stdout
    print(text)
    out = text.splitlines()
    header, row = out[0], out[1]
    assert header.split()[-2:] == ["READINESS", "GATES"], header
    return row.split()[-1]


# ----- hostname -----


def test_container_hostname_is_the_pod_name(wl_api: client.ApiClient, wl_namespace: str) -> None:
    core = client.CoreV1Api(wl_api)
    short = unique("host")
    long = (unique("long-host") + "-" + "x" * 62)[:62] + "-y.z"  # cut at 63 leaves a trailing '-': trimmed
    script = (
        "import json, os, socket; h = socket.gethostname(); "
        "print(json.dumps({'hostname': h, 'env': os.environ.get('HOSTNAME'), 'ip': socket.gethostbyname(h), "
        "'etc': open('/etc/hostname').read().strip()}))"
    )
    cases = {short: {}, long: {}, unique("named"): {"hostname": "custom-host"}}
    for name, extra in cases.items():
        core.create_namespaced_pod(
            wl_namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": BASE_IMAGE, "command": ["python3", "-c", script]}],
                    **extra,
                },
            },
        )
    expected = {short: short, long: long[:63].rstrip("-."), **{n: "custom-host" for n, e in cases.items() if e}}
    assert len(expected[long]) == 62 and not expected[long].endswith("-")
    for name, hostname in expected.items():
        pod = poll_until(
            lambda name=name: (p := core.read_namespaced_pod(name, wl_namespace)).status.phase in ("Succeeded", "Failed") and p,
            timeout=30,
            what=f"pod {name} finished",
        )
        log = core.read_namespaced_pod_log(name, wl_namespace)
        assert pod.status.phase == "Succeeded", log
        seen = json.loads(log.strip().splitlines()[-1])
        print(f"{name}: {seen}")
        assert seen == {"hostname": hostname, "env": hostname, "ip": pod.status.pod_ip, "etc": hostname}


# ----- readiness gates -----


def test_readiness_gate_decides_ready_and_availability(
    wl_api: client.ApiClient, wl_namespace: str, workload_cluster: ClusterProcess, docker_engine: docker.DockerClient
) -> None:
    apps, core = client.AppsV1Api(wl_api), client.CoreV1Api(wl_api)
    name = unique("gated")
    apps.create_namespaced_deployment(wl_namespace, gated_deployment(name))

    # The container runs and is ready, but the gate's condition does not exist: the pod is not Ready.
    def containers_ready() -> client.V1Pod | None:
        pods = pods_of(core, wl_namespace, name)
        ok = len(pods) == 1 and pods[0].status.phase == "Running" and "ContainersReady" in conditions(pods[0])
        return pods[0] if ok and conditions(pods[0])["ContainersReady"].status == "True" else None

    pod = poll_until(containers_ready, timeout=30, what="ContainersReady")
    pod_name = pod.metadata.name
    ready = conditions(pod)["Ready"]
    assert (ready.status, ready.reason) == ("False", "ReadinessGatesNotReady")
    assert ready.message == f'corresponding condition of pod readiness gate "{GATE}" does not exist.'
    assert pod.status.container_statuses[0].ready
    time.sleep(0.5)  # let the controllers see it
    d = apps.read_namespaced_deployment(name, wl_namespace)
    assert not d.status.available_replicas and not d.status.ready_replicas, d.status
    assert readiness_gates_column(workload_cluster.kubeconfig, wl_namespace, pod_name) == "0/1"

    # A False condition: still not Ready, with Kubernetes' message.
    core.patch_namespaced_pod_status(pod_name, wl_namespace, {"status": {"conditions": [gate_condition("False")]}})
    pod = poll_until(
        lambda: (
            (p := core.read_namespaced_pod(pod_name, wl_namespace))
            and "but False" in (conditions(p)["Ready"].message or "")
            and p
        ),
        timeout=5,
        what="Ready message for a False gate",
    )
    assert conditions(pod)["Ready"].message == f'the status of pod readiness gate "{GATE}" is not "True", but False'

    # The real client's patch_namespaced_pod_status (strategic merge) sets it True: Ready follows at once.
    w = watch.Watch()
    started = time.monotonic()
    patched = core.patch_namespaced_pod_status(pod_name, wl_namespace, {"status": {"conditions": [gate_condition("True")]}})
    latency = None
    for event in w.stream(
        core.list_namespaced_pod,
        wl_namespace,
        field_selector=f"metadata.name={pod_name}",
        resource_version=patched.metadata.resource_version,
        timeout_seconds=10,
    ):
        if conditions(event["object"]).get("Ready") and conditions(event["object"])["Ready"].status == "True":
            latency = time.monotonic() - started
            w.stop()
            break
    assert latency is not None, "Ready never became True after the gate's condition was patched True"
    print(f"\npatch_namespaced_pod_status -> Ready True: {latency * 1000:.1f} ms (watch event received)")
    assert conditions(patched)[GATE].status == "True"
    poll_until(lambda: apps.read_namespaced_deployment(name, wl_namespace).status.available_replicas == 1, timeout=10)
    assert readiness_gates_column(workload_cluster.kubeconfig, wl_namespace, pod_name) == "1/1"

    # The kubelet's later status writes keep the condition: kill the container and watch it restart.
    container_id = pod.status.container_statuses[0].container_id.removeprefix("docker://")
    docker_engine.containers.get(container_id).kill()
    seen_without_gate: list[str] = []

    def restarted_and_ready() -> bool:
        p = core.read_namespaced_pod(pod_name, wl_namespace)
        conds = conditions(p)
        if GATE not in conds or conds[GATE].status != "True":
            seen_without_gate.append(p.metadata.resource_version)
        return p.status.container_statuses[0].restart_count == 1 and conds["Ready"].status == "True"

    poll_until(restarted_and_ready, timeout=20, interval=0.05, what="restarted and Ready again")
    assert seen_without_gate == []
    final = core.read_namespaced_pod(pod_name, wl_namespace)
    assert [c.type for c in final.status.conditions] == [GATE, "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert conditions(final)[GATE].message == "set True by the test"
    time.sleep(1.5)  # a few more kubelet syncs
    assert conditions(core.read_namespaced_pod(pod_name, wl_namespace))[GATE].status == "True"


def test_rollout_with_max_unavailable_zero_waits_for_the_gated_pod(wl_api: client.ApiClient, wl_namespace: str) -> None:
    apps, core = client.AppsV1Api(wl_api), client.CoreV1Api(wl_api)
    name = unique("gated-roll")
    apps.create_namespaced_deployment(wl_namespace, gated_deployment(name))

    def running_pods() -> list[client.V1Pod]:
        pods = [p for p in pods_of(core, wl_namespace, name) if not p.metadata.deletion_timestamp]
        return [p for p in pods if p.status.phase == "Running" and conditions(p).get("ContainersReady")]

    [old] = poll_until(running_pods, timeout=30, what="the first pod running")
    # JSON patch (a list body) through the same client call.
    core.patch_namespaced_pod_status(
        old.metadata.name, wl_namespace, [{"op": "add", "path": "/status/conditions/-", "value": gate_condition("True")}]
    )
    poll_until(lambda: apps.read_namespaced_deployment(name, wl_namespace).status.available_replicas == 1, timeout=10)

    apps.patch_namespaced_deployment(name, wl_namespace, gated_deployment(name, env="v2"))

    def new_pod_containers_ready() -> client.V1Pod | None:
        for p in pods_of(core, wl_namespace, name):
            if p.metadata.name != old.metadata.name and conditions(p).get("ContainersReady"):
                if conditions(p)["ContainersReady"].status == "True":
                    return p
        return None

    new = poll_until(new_pod_containers_ready, timeout=30, what="the new pod's containers ready")
    assert conditions(new)["Ready"].reason == "ReadinessGatesNotReady"
    time.sleep(1.5)  # the controllers had every chance to scale the old ReplicaSet down
    still = core.read_namespaced_pod(old.metadata.name, wl_namespace)
    assert still.metadata.deletion_timestamp is None and conditions(still)["Ready"].status == "True"
    d = apps.read_namespaced_deployment(name, wl_namespace)
    assert (d.status.available_replicas, d.status.updated_replicas, d.status.replicas) == (1, 1, 2), d.status

    # A merge patch this time: its list replaces all conditions, and the kubelet writes its own back at once,
    # keeping the gate's. The rollout then completes and the old pod goes.
    core.patch_namespaced_pod_status(
        new.metadata.name,
        wl_namespace,
        {"status": {"conditions": [gate_condition("True")]}},
        _content_type="application/merge-patch+json",
    )

    def rolled_out() -> bool:
        d = apps.read_namespaced_deployment(name, wl_namespace)
        names = {p.metadata.name for p in pods_of(core, wl_namespace, name)}
        return d.status.available_replicas == 1 and d.status.updated_replicas == 1 and names == {new.metadata.name}

    poll_until(rolled_out, timeout=20, what="the rollout to finish and the old pod to go")


@pytest.mark.unit
def test_kubelet_status_write_never_loses_a_racing_condition(tmp_path: Any) -> None:
    """Another client's status write landing between the kubelet's read and its write: 409, rebuilt, kept."""
    store = Store(None)
    kubelet = Kubelet(store, node_name="node", docker=cast(Any, None), state_dir=tmp_path)
    pod = store.create(
        PODS,
        {
            "metadata": {"name": "racy", "namespace": "default"},
            "spec": {
                "nodeName": "node",
                "readinessGates": [{"conditionType": GATE}],
                "containers": [{"name": "app", "image": "x"}],
            },
        },
    )
    kubelet._ips.reserve(pod["metadata"]["uid"], "127.1.255.1")
    worker = PodWorker(kubelet, pod)
    worker.containers["app"].running = worker.containers["app"].ready = True
    built: list[Obj] = []

    def racing_build(current: Obj) -> Obj:
        built.append(current)
        if len(built) == 1:  # a controller's PATCH pods/status commits right now
            other = store.get(PODS, "default", "racy")
            other["status"] = {**(other.get("status") or {}), "conditions": [gate_condition("True")]}
            store.update(PODS, other, subresource="status")
        return worker._status(current)

    kubelet.write_status(pod, racing_build)
    stored = store.get(PODS, "default", "racy")["status"]
    assert len(built) == 2  # the first write was refused (stale resourceVersion) and rebuilt from the latest
    assert [(c["type"], c["status"]) for c in stored["conditions"]] == [
        (GATE, "True"),
        ("Initialized", "True"),
        ("Ready", "True"),
        ("ContainersReady", "True"),
        ("PodScheduled", "True"),
    ]
    # The gate's condition going False (a later patch) makes the next kubelet write say why.
    current = store.get(PODS, "default", "racy")
    current["status"]["conditions"][0] = gate_condition("False")
    store.update(PODS, current, subresource="status")
    kubelet.write_status(pod, worker._status)
    ready = {c["type"]: c for c in store.get(PODS, "default", "racy")["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == f'the status of pod readiness gate "{GATE}" is not "True", but False'


# ----- the pods/status subresource (API only) -----


def test_pod_status_subresource(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    name = unique("st")
    created = core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"readinessGates": [{"conditionType": GATE}], "containers": [{"name": "app", "image": BASE_IMAGE}]},
        },
    )
    assert created.spec.readiness_gates[0].condition_type == GATE
    read = core.read_namespaced_pod_status(name, namespace)
    assert read.metadata.resource_version == created.metadata.resource_version

    # Strategic merge (the client's default for a dict): conditions merge by type.
    first = core.patch_namespaced_pod_status(
        name, namespace, {"status": {"conditions": [{"type": "a.io/one", "status": "True"}]}}
    )
    second = core.patch_namespaced_pod_status(
        name, namespace, {"status": {"conditions": [{"type": "a.io/two", "status": "False"}]}}
    )
    assert [(c.type, c.status) for c in second.status.conditions] == [("a.io/one", "True"), ("a.io/two", "False")]
    third = core.patch_namespaced_pod_status(
        name, namespace, {"status": {"conditions": [{"type": "a.io/one", "status": "False"}]}}
    )
    assert [(c.type, c.status) for c in third.status.conditions] == [("a.io/one", "False"), ("a.io/two", "False")]
    assert int(third.metadata.resource_version) > int(first.metadata.resource_version)
    entries = [e for e in third.metadata.managed_fields if e.subresource == "status"]
    assert len(entries) == 1 and entries[0].operation == "Update" and "f:status" in entries[0].fields_v1

    # JSON patch (a list body) and merge patch (lists replace).
    fourth = core.patch_namespaced_pod_status(
        name, namespace, [{"op": "add", "path": "/status/conditions/-", "value": {"type": "a.io/three", "status": "True"}}]
    )
    assert [c.type for c in fourth.status.conditions] == ["a.io/one", "a.io/two", "a.io/three"]
    fifth = core.patch_namespaced_pod_status(
        name,
        namespace,
        {"status": {"conditions": [{"type": "a.io/only", "status": "True"}]}},
        _content_type="application/merge-patch+json",
    )
    assert [c.type for c in fifth.status.conditions] == ["a.io/only"]

    # A status write changes nothing but status (and resourceVersion, managedFields).
    sixth = core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "metadata": {"labels": {"app": "changed", "extra": "x"}, "annotations": {"a": "b"}},
            "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "app", "image": "other:1"}]},
            "status": {"phase": "Pending"},
        },
    )
    assert sixth.metadata.labels == {"app": name} and not sixth.metadata.annotations
    assert sixth.spec.to_dict() == created.spec.to_dict() and sixth.metadata.generation == created.metadata.generation
    assert sixth.status.phase == "Pending" and [c.type for c in sixth.status.conditions] == ["a.io/only"]

    # PUT: the resourceVersion is a precondition; so is one in a patch.
    stale = client.V1Pod(metadata=client.V1ObjectMeta(name=name, resource_version=first.metadata.resource_version))
    stale.status = client.V1PodStatus(phase="Running")
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod_status(name, namespace, stale)
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod_status(
            name, namespace, {"metadata": {"resourceVersion": first.metadata.resource_version}, "status": {"phase": "Running"}}
        )
    assert err.value.status == 409
    current = core.read_namespaced_pod_status(name, namespace)
    current.status.phase = "Running"
    replaced = core.replace_namespaced_pod_status(name, namespace, current)
    assert replaced.status.phase == "Running" and replaced.spec.to_dict() == created.spec.to_dict()

    # A condition type must be a qualified name (the system ones aside).
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod_status(name, namespace, {"status": {"conditions": [{"type": "not valid!", "status": "True"}]}})
    assert err.value.status == 422
    assert "status.conditions[1].Type" in json.loads(err.value.body)["message"]


def test_readiness_gates_are_validated(api: client.ApiClient, namespace: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": unique("badgate")},
        "spec": {"readinessGates": [{"conditionType": "bad gate"}], "containers": [{"name": "app", "image": BASE_IMAGE}]},
    }
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod)
    assert err.value.status == 422
    body = json.loads(err.value.body)
    assert body["details"]["causes"][0]["field"] == "spec.readinessGates[0].conditionType"
    assert 'Invalid value: "bad gate": name part must consist of alphanumeric characters' in body["message"]
    d = gated_deployment(unique("badgate"))
    d["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": "a/b/c"}]
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(namespace, d)
    assert err.value.status == 422
    assert "spec.template.spec.readinessGates[0].conditionType" in json.loads(err.value.body)["message"]
    hostname = dict(pod, metadata={"name": unique("badhost")})
    hostname["spec"] = {"hostname": "Not_A_Label", "containers": [{"name": "app", "image": BASE_IMAGE}]}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, hostname)
    assert err.value.status == 422 and "spec.hostname" in json.loads(err.value.body)["message"]


# ----- termination messages -----


def test_fallback_to_logs_on_error_puts_the_end_of_the_log_in_the_status(wl_api: client.ApiClient, wl_namespace: str) -> None:
    """A failed container's terminated state carries its last log lines (at most 80 lines, 2 KiB) under
    FallbackToLogsOnError; a container with the default policy ("File") gets no message from its log."""
    core = client.CoreV1Api(wl_api)
    # One stream: Docker keeps no order between stdout and stderr.
    script = "import sys\nfor i in range(100): print(f'line {i}')\nprint('boom: DATABASE_URL is not set')\nsys.exit(3)"
    for name, policy in (("fallback", "FallbackToLogsOnError"), ("file", "File")):
        core.create_namespaced_pod(
            wl_namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "app",
                            "image": BASE_IMAGE,
                            "command": ["python3", "-c", script],
                            "terminationMessagePolicy": policy,
                        }
                    ],
                },
            },
        )

    def terminated(name: str) -> Any:
        pod = core.read_namespaced_pod(name, wl_namespace)
        statuses = pod.status.container_statuses or []
        return statuses[0].state.terminated if statuses and statuses[0].state.terminated else None

    state = poll_until(lambda: terminated("fallback"), timeout=30, what="the fallback pod's container to end")
    assert state.exit_code == 3 and state.message, state
    lines = state.message.strip().splitlines()
    assert lines[-1] == "boom: DATABASE_URL is not set" and len(lines) <= 80 and len(state.message.encode()) <= 2048, lines
    assert "line 99" in state.message and "line 0\n" not in state.message
    plain = poll_until(lambda: terminated("file"), timeout=30, what="the file-policy pod's container to end")
    assert not plain.message, plain
