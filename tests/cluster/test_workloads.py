"""Deployments, ReplicaSets, garbage collection and the kubelet, in-process with real Docker containers.

Each test runs its own Store with the controllers and a kubelet on a node of
its own (see tests/cluster/workloads.py); pods are real containers on the host
network, each bound to its own loopback pod IP.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import re
import statistics
import time

import pytest

from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import CONFIGMAPS, DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS, SECRETS
from bootstrap.cluster.store import WatchEvent
from tests.cluster.workloads import (
    BASE_IMAGE,
    LocalCluster,
    condition,
    deployment,
    docker_engine,
    is_ready,
    local,
    pod,
    registry_image,
    rollout_complete,
    unique,
    wait_for,
)

__all__ = ["docker_engine", "local", "registry_image"]  # fixtures used by name

POD_NAME = re.compile(r"^(?P<rs>.+)-[bcdfghjklmnpqrstvwxz2456789]{5}$")


async def available(local: LocalCluster, name: str, *, timeout: float = 30.0) -> dict:
    def check() -> dict | None:
        d = local.deployment(name)
        return d if rollout_complete(d) and condition(d, "Available").get("status") == "True" else None

    return await wait_for(check, timeout=timeout, what=f"deployment {name} available")


async def test_deployment_becomes_available(local: LocalCluster) -> None:
    name = unique("web")
    local.store.create(DEPLOYMENTS, deployment(name))
    d = await available(local, name)

    status = d["status"]
    assert status["observedGeneration"] == d["metadata"]["generation"] == 1
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"], status["availableReplicas"]) == (3, 3, 3, 3)
    assert "unavailableReplicas" not in status
    assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = condition(d, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

    [rs] = local.replica_sets(name)
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"{name}-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": name, "pod-template-hash": pod_hash}
    annotations = rs["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + 25% surge rounded up
    assert rs["status"]["readyReplicas"] == rs["status"]["availableReplicas"] == 3

    pods = local.pods(name)
    assert len(pods) == 3
    ips = set()
    for p in pods:
        match = POD_NAME.match(p["metadata"]["name"])
        assert match and match["rs"] == rs["metadata"]["name"]
        assert p["metadata"]["labels"]["pod-template-hash"] == pod_hash
        [ref] = p["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "ReplicaSet",
            rs["metadata"]["uid"],
            True,
            True,
        )
        ip = ipaddress.IPv4Address(p["status"]["podIP"])
        assert ip in local.pod_network
        assert p["status"]["podIPs"] == [{"ip": str(ip)}] and p["status"]["hostIP"] == "127.0.0.1"
        ips.add(str(ip))
        assert p["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in p["status"]["conditions"]} == {
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        [cs] = p["status"]["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        assert cs["containerID"].startswith("docker://") and cs["image"] == BASE_IMAGE
    assert len(ips) == 3
    containers = local.containers(all=False)
    assert len(containers) == 3
    labels = containers[0].labels
    assert {
        "io.kubernetes.pod.uid",
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.container.name",
        "io.kubernetes.container.restartCount",
    } <= set(labels)
    assert containers[0].name.startswith("k8s_web_")
    messages = [e["message"] for e in local.events_for(d)]
    assert f"Scaled up replica set {rs['metadata']['name']} from 0 to 3" in messages
    pod_events = {e["reason"] for e in local.events_for(pods[0])}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= pod_events


def _set_env(local: LocalCluster, name: str, value: str) -> None:
    d = local.deployment(name)
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [
        e for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []) if e["name"] != "VERSION"
    ] + [{"name": "VERSION", "value": value}]
    local.store.update(DEPLOYMENTS, d)


async def test_rolling_update_never_drops_below_three_ready(local: LocalCluster) -> None:
    name = unique("roll")
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    local.store.create(DEPLOYMENTS, deployment(name, **spec))
    await available(local, name)
    ready_counts: list[int] = []
    became_ready: list[float] = []
    scaled: list[float] = []

    def watch(event: WatchEvent) -> None:
        obj = event.object
        if event.resource is PODS and (obj["metadata"].get("labels") or {}).get("app") == name:
            pods = local.pods(name)
            ready_counts.append(sum(1 for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp")))
            if event.old is not None and is_ready(obj) and not is_ready(event.old):
                became_ready.append(time.perf_counter())
        if event.resource is REPLICASETS and event.old is not None:
            if obj["spec"].get("replicas") != event.old["spec"].get("replicas"):
                scaled.append(time.perf_counter())

    local.store.subscribe(watch)
    try:
        _set_env(local, name, "2")
        d = await available(local, name)
    finally:
        local.store.unsubscribe(watch)
    assert ready_counts and min(ready_counts) >= 3, ready_counts
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    rss = sorted(local.replica_sets(name), key=lambda rs: rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 3]
    assert rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    await wait_for(lambda: len(local.pods(name)) == 3, what="old pods gone")
    # Reaction time: a new pod turning Ready -> the next ReplicaSet scale step.
    reactions = [min(s for s in scaled if s >= r) - r for r in became_ready if any(s >= r for s in scaled)]
    assert reactions
    median_ms = statistics.median(reactions) * 1000
    print(f"reaction time pod Ready -> next scale step: median {median_ms:.1f} ms over {len(reactions)} steps")
    assert median_ms < 200


async def test_crash_loop_back_off_and_progress_deadline(local: LocalCluster) -> None:
    name = unique("crash")
    crasher = {"name": "app", "image": BASE_IMAGE, "command": ["python3", "-c", "import sys; print('boom'); sys.exit(3)"]}
    local.store.create(DEPLOYMENTS, deployment(name, replicas=1, containers=[crasher], progressDeadlineSeconds=3))

    def crash_looping() -> dict | None:
        [p] = local.pods(name)
        cs = p["status"]["containerStatuses"][0]
        waiting = cs["state"].get("waiting") or {}
        return cs if waiting.get("reason") == "CrashLoopBackOff" and cs["restartCount"] > 0 else None

    cs = await wait_for(crash_looping, timeout=10, what="CrashLoopBackOff")
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert not cs["ready"]
    [p] = local.pods(name)
    assert p["status"]["phase"] == "Running"
    assert "BackOff" in {e["reason"] for e in local.events_for(p)}

    def timed_out() -> dict | None:
        cond = condition(local.deployment(name), "Progressing")
        return cond if cond.get("reason") == "ProgressDeadlineExceeded" else None

    cond = await wait_for(timed_out, timeout=10, what="ProgressDeadlineExceeded")
    [rs] = local.replica_sets(name)
    assert cond["status"] == "False"
    assert cond["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.'
    assert condition(local.deployment(name), "Available")["status"] == "False"
    # kubectl logs --previous shows the crashed container's output
    chunks = [
        c
        async for c in local.kubelet.logs(
            "default", p["metadata"]["name"], container=None, follow=False, tail_lines=None, timestamps=False, previous=True
        )
    ]
    assert b"boom" in b"".join(chunks)


async def test_unpullable_image_and_config_errors(local: LocalCluster) -> None:
    missing = {"name": "app", "image": f"127.0.0.1:5000/{unique('missing')}:v1"}
    local.store.create(PODS, pod("nopull", [missing]))
    root = {"name": "app", "image": BASE_IMAGE, "command": ["sleep", "60"], "securityContext": {"runAsNonRoot": True}}
    local.store.create(PODS, pod("rootimage", [root]))
    cm_ref = {
        "name": "app",
        "image": BASE_IMAGE,
        "command": ["sleep", "60"],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}],
    }
    local.store.create(PODS, pod("nocm", [cm_ref]))

    def waiting(pod_name: str, *reasons: str) -> dict | None:
        state = local.container_status(pod_name).get("state", {}).get("waiting") or {}
        return state if state.get("reason") in reasons else None

    await wait_for(lambda: waiting("nopull", "ErrImagePull", "ImagePullBackOff"), what="ErrImagePull")
    await wait_for(lambda: waiting("nopull", "ImagePullBackOff"), what="ImagePullBackOff")
    p = local.store.get(PODS, "default", "nopull")
    assert p["status"]["phase"] == "Pending"
    assert any(e["reason"] == "Failed" and "Failed to pull image" in e["message"] for e in local.events_for(p))
    with pytest.raises(ApiError) as err:
        [
            c
            async for c in local.kubelet.logs(
                "default", "nopull", container=None, follow=False, tail_lines=None, timestamps=False, previous=False
            )
        ]
    assert err.value.code == 400 and "is waiting to start: trying and failing to pull image" in err.value.message
    state = await wait_for(lambda: waiting("rootimage", "CreateContainerConfigError"), what="runAsNonRoot refused")
    assert "runAsNonRoot and image will run as root" in state["message"]
    state = await wait_for(lambda: waiting("nocm", "CreateContainerConfigError"), what="missing configmap")
    assert state["message"] == 'configmap "absent" not found'


async def test_env_downward_api_configmap_secret_and_digest_pull(local: LocalCluster, registry_image: tuple[str, str]) -> None:
    import base64
    import json

    _, by_digest = registry_image
    local.store.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"COLOR": "blue", "SIZE": "L"}})
    local.store.create(
        SECRETS, {"metadata": {"name": "sec", "namespace": "default"}, "data": {"TOKEN": base64.b64encode(b"s3cret").decode()}}
    )
    script = "import json, os, sys; print(json.dumps(dict(os.environ), sort_keys=True)); print('args', sys.argv[1:])"
    container = {
        "name": "app",
        "image": by_digest,
        "imagePullPolicy": "Always",
        "command": ["python3", "-c", script],
        "args": ["$(GREETING)", "$$(GREETING)"],
        "workingDir": "/tmp",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
        "env": [
            {"name": "GREETING", "value": "hello-$(CM_COLOR)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SIZE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "SIZE"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ],
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        "securityContext": {
            "runAsUser": 1000,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    created = local.store.create(PODS, pod("envpod", [container], restartPolicy="Never"))
    p = await wait_for(
        lambda: (x := local.store.get(PODS, "default", "envpod"))["status"].get("phase") == "Succeeded" and x,
        what="pod Succeeded",
    )
    cs = p["status"]["containerStatuses"][0]
    assert cs["state"]["terminated"]["reason"] == "Completed" and cs["imageID"] == by_digest
    assert {c["type"]: c.get("reason") for c in p["status"]["conditions"]}["Ready"] == "PodCompleted"
    out = b"".join(
        [
            c
            async for c in local.kubelet.logs(
                "default", "envpod", container="app", follow=False, tail_lines=None, timestamps=False, previous=False
            )
        ]
    )
    env_line, args_line = out.decode().strip().splitlines()
    env = json.loads(env_line)
    assert env["GREETING"] == "hello-blue" and env["CM_COLOR"] == "blue" and env["TOKEN"] == "s3cret"
    assert env["POD_NAME"] == "envpod" and env["POD_NS"] == "default" and env["POD_UID"] == created["metadata"]["uid"]
    assert env["POD_IP"] == p["status"]["podIP"] and env["NODE"] == local.node_name
    assert env["SIZE"] == "L" and env["PASS"] == "s3cret" and "OPT" not in env and env["MEM"] == "64"
    assert env["HOSTNAME"] == "envpod"
    assert args_line == "args ['hello-blue', '$(GREETING)']"
    [container_obj] = local.containers()
    host_config = container_obj.attrs["HostConfig"]
    assert host_config["NetworkMode"] == "host" and host_config["Memory"] == 64 * 2**20
    assert host_config["NanoCpus"] == 500_000_000 and host_config["ReadonlyRootfs"]
    assert "no-new-privileges" in host_config["SecurityOpt"] and container_obj.attrs["Config"]["User"] == "1000"
    tail = b"".join(
        [
            c
            async for c in local.kubelet.logs(
                "default", "envpod", container=None, follow=False, tail_lines=1, timestamps=True, previous=False
            )
        ]
    )
    assert re.match(rb"^\d{4}-\d\d-\d\dT[\d:.]+Z args", tail)
    with pytest.raises(ApiError) as err:
        [
            c
            async for c in local.kubelet.logs(
                "default", "absent", container=None, follow=False, tail_lines=None, timestamps=False, previous=False
            )
        ]
    assert err.value.code == 404


async def test_rollback_reuses_old_replica_set(local: LocalCluster) -> None:
    name = unique("undo")
    original = deployment(name, replicas=1)
    original["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
    local.store.create(DEPLOYMENTS, original)
    await available(local, name)
    [first_rs] = local.replica_sets(name)
    assert first_rs["metadata"]["annotations"]["kubernetes.io/change-cause"] == "first"
    _set_env(local, name, "2")
    await available(local, name)
    assert len(local.replica_sets(name)) == 2
    d = local.deployment(name)
    d["spec"]["template"] = copy.deepcopy(original["spec"]["template"])  # what `kubectl rollout undo` does
    local.store.update(DEPLOYMENTS, d)
    d = await available(local, name)
    rss = {rs["metadata"]["name"]: rs for rs in local.replica_sets(name)}
    assert len(rss) == 2
    reused = rss[first_rs["metadata"]["name"]]
    assert reused["metadata"]["uid"] == first_rs["metadata"]["uid"] and reused["spec"]["replicas"] == 1
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


async def test_revision_history_limit_prunes_and_scale_down(local: LocalCluster) -> None:
    name = unique("hist")
    local.store.create(DEPLOYMENTS, deployment(name, replicas=0, revisionHistoryLimit=1))
    await available(local, name)
    for version in ("2", "3", "4"):
        _set_env(local, name, version)
        await available(local, name)
    rss = await wait_for(lambda: r if len(r := local.replica_sets(name)) == 2 else None, what="pruned history")
    assert sorted(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in rss) == ["3", "4"]
    d = local.deployment(name)
    d["spec"]["replicas"] = 3
    local.store.update(DEPLOYMENTS, d)
    await available(local, name)
    d = local.deployment(name)
    d["spec"]["replicas"] = 1
    local.store.update(DEPLOYMENTS, d)
    d = await available(local, name)
    assert d["status"]["replicas"] == 1
    await wait_for(lambda: len(local.pods(name)) == 1 and len(local.containers()) == 1, what="scaled down to 1")
    new_rs = next(rs for rs in local.replica_sets(name) if rs["spec"]["replicas"] == 1)
    assert f"Scaled down replica set {new_rs['metadata']['name']} from 3 to 1" in [e["message"] for e in local.events_for(d)]


async def test_pause_stops_rollout(local: LocalCluster) -> None:
    name = unique("pause")
    local.store.create(DEPLOYMENTS, deployment(name, replicas=1))
    await available(local, name)
    d = local.deployment(name)
    d["spec"]["paused"] = True
    local.store.update(DEPLOYMENTS, d)
    await wait_for(lambda: condition(local.deployment(name), "Progressing").get("reason") == "DeploymentPaused", what="paused")
    _set_env(local, name, "2")
    # The controller has synced the change once it reports its generation (a new ReplicaSet would come first).
    d = await wait_for(
        lambda: (x := local.deployment(name))["status"].get("observedGeneration") == x["metadata"]["generation"] and x,
        what="the paused change observed",
    )
    assert len(local.replica_sets(name)) == 1
    d["spec"]["paused"] = False
    local.store.update(DEPLOYMENTS, d)
    d = await available(local, name)
    assert len(local.replica_sets(name)) == 2 and d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
async def test_delete_cascades_to_pods_and_containers(local: LocalCluster, propagation: str) -> None:
    name = unique("del")
    local.store.create(DEPLOYMENTS, deployment(name, replicas=2))
    await available(local, name)
    assert len(local.containers()) == 2
    local.store.delete(DEPLOYMENTS, "default", name, propagation=propagation)
    if propagation == "Foreground":
        d = local.store.try_get(DEPLOYMENTS, "default", name)
        assert d is not None and "foregroundDeletion" in d["metadata"]["finalizers"]
    await wait_for(
        lambda: (
            local.store.try_get(DEPLOYMENTS, "default", name) is None
            and not local.replica_sets(name)
            and not local.pods(name)
            and not local.containers()
        ),
        timeout=15,
        what="cascade",
    )


async def test_graceful_termination(local: LocalCluster) -> None:
    sleep = "\nprint('up', flush=True)\ntime.sleep(600)"
    polite = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))" + sleep
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)" + sleep
    local.store.create(
        PODS,
        pod(
            "polite",
            [{"name": "app", "image": BASE_IMAGE, "command": ["python3", "-c", polite]}],
            terminationGracePeriodSeconds=20,
        ),
    )
    local.store.create(
        PODS,
        pod(
            "stubborn",
            [{"name": "app", "image": BASE_IMAGE, "command": ["python3", "-c", stubborn]}],
            terminationGracePeriodSeconds=2,
        ),
    )
    for name in ("polite", "stubborn"):
        await wait_for(lambda n=name: is_ready(local.store.get(PODS, "default", n)), what=f"{name} ready")
    await wait_for(  # each prints "up" once its SIGTERM handler is in place
        lambda: len(cs := local.containers()) == 2 and all(b"up" in c.logs() for c in cs), what="both handlers installed"
    )
    started = time.monotonic()
    local.store.delete(PODS, "default", "polite")
    local.store.delete(PODS, "default", "stubborn")
    await wait_for(lambda: local.store.try_get(PODS, "default", "polite") is None, timeout=10, what="polite gone")
    polite_took = time.monotonic() - started
    await wait_for(lambda: local.store.try_get(PODS, "default", "stubborn") is None, timeout=10, what="stubborn gone")
    stubborn_took = time.monotonic() - started
    assert polite_took < 1.8, polite_took
    assert 2.0 <= stubborn_took < 5.0, stubborn_took
    assert not local.containers()


async def test_readiness_gates_ready_and_liveness_restarts(local: LocalCluster) -> None:
    gated = {
        "name": "app",
        "image": BASE_IMAGE,
        "command": [
            "python3",
            "-c",
            "import pathlib, time; time.sleep(1.5); pathlib.Path('/tmp/ready').touch(); time.sleep(600)",
        ],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
    }
    local.store.create(PODS, pod("gated", [gated]))
    p = await wait_for(
        lambda: (x := local.store.get(PODS, "default", "gated"))["status"].get("phase") == "Running" and x, what="running"
    )
    assert not is_ready(p) and condition(p, "Ready")["reason"] == "ContainersNotReady"
    await wait_for(lambda: is_ready(local.store.get(PODS, "default", "gated")), timeout=10, what="ready after probe")
    unhealthy = {
        "name": "app",
        "image": BASE_IMAGE,
        "command": ["sleep", "600"],
        "livenessProbe": {"httpGet": {"port": 9, "path": "/healthz"}, "periodSeconds": 1, "failureThreshold": 1},
    }
    local.store.create(PODS, pod("unhealthy", [unhealthy], terminationGracePeriodSeconds=0))
    cs = await wait_for(
        lambda: (s := local.container_status("unhealthy")).get("restartCount", 0) >= 1 and s, timeout=15, what="liveness restart"
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    reasons = {e["reason"] for e in local.events_for(local.store.get(PODS, "default", "unhealthy"))}
    assert {"Unhealthy", "Killing"} <= reasons


async def test_restart_readopts_running_containers(local: LocalCluster) -> None:
    name = unique("adopt")
    local.store.create(DEPLOYMENTS, deployment(name, replicas=2))
    await available(local, name)
    before = sorted(c.id for c in local.containers())
    await local.stop()
    assert sorted(c.id for c in local.containers(all=False)) == before  # containers outlive the kubelet
    await local.start()
    await asyncio.sleep(1.0)  # the new kubelet's chance to (wrongly) replace them: an absence has no event to wait for
    assert sorted(c.id for c in local.containers()) == before
    d = await available(local, name)
    assert d["status"]["readyReplicas"] == 2
    for p in local.pods(name):
        assert p["status"]["containerStatuses"][0]["restartCount"] == 0 and is_ready(p)
    # the re-adopted containers are still managed: deletion stops them
    local.store.delete(DEPLOYMENTS, "default", name)
    await wait_for(lambda: not local.containers(), timeout=15, what="containers removed")


async def test_namespace_deletion_and_recreate_strategy(local: LocalCluster) -> None:
    local.store.create(NAMESPACES, {"metadata": {"name": "doomed"}})
    local.store.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "doomed"}, "data": {"a": "b"}})
    d = deployment("rec", replicas=1, strategy={"type": "Recreate"})
    d["metadata"]["namespace"] = "doomed"
    local.store.create(DEPLOYMENTS, d)
    await wait_for(lambda: rollout_complete(local.store.get(DEPLOYMENTS, "doomed", "rec")), what="recreate available")
    d = local.store.get(DEPLOYMENTS, "doomed", "rec")
    d["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    local.store.update(DEPLOYMENTS, d)
    await wait_for(lambda: rollout_complete(local.store.get(DEPLOYMENTS, "doomed", "rec")), what="recreate rolled")
    assert len(local.pods("rec", "doomed")) == 1
    local.store.delete(NAMESPACES, None, "doomed")
    await wait_for(lambda: local.store.try_get(NAMESPACES, None, "doomed") is None, timeout=15, what="namespace gone")
    assert not local.store.list(CONFIGMAPS, "doomed") and not local.store.list(PODS, "doomed")
    assert not local.containers()
