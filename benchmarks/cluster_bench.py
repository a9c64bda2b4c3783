#!/usr/bin/env python3
"""How fast and how light is the local cluster? `python benchmarks/cluster_bench.py` prints one JSON object.

Why a script and not a test: these are numbers to watch over time (and to hold
against issue 3's targets), not pass/fail facts about behaviour, and a loaded
CI machine must not turn them into flaky failures. It exits 0 whatever the
numbers are; `targets_met` says how they compare.

What it does, in about a minute, against a cluster process of its own (free
port, temporary state directory, the kubelet running real Docker containers):

- idle: the process's CPU (% of one core, from utime+stime in /proc/<pid>/stat
  over IDLE_SECONDS) and resident memory (VmRSS) with nothing deployed;
- rollout: a 3-replica Deployment, from the create call to all 3 pods Ready
  (the Deployment reporting 3 updated, available replicas), median of 3;
- reaction: during rolling updates (maxSurge 1, maxUnavailable 0), the time
  from a new pod turning Ready to the controllers' next step (a ReplicaSet
  scale or a pod created). The Ready condition's lastTransitionTime has
  only second precision, so both ends are watch-event arrival times seen by
  this one observer (a watch on pods, one on replicasets), median over steps;
- loaded: CPU and RSS again with the 3 pods running (probes every second).

Everything it created (namespace, containers, image tag, state directory) is
removed at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from kubernetes import client, config, watch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bootstrap.cluster.kubelet.runtime import LABEL_CLUSTER  # noqa: E402
from tests.helpers.cluster import ClusterChild  # noqa: E402

BASE_IMAGE = "pipeline-base:bookworm"
REGISTRY = "127.0.0.1:5000"
IDLE_SECONDS = 10.0
ROLLOUT_RUNS = 3
ROLLING_UPDATES = 2
TARGETS = {"reaction_ms_median": 200.0, "idle_cpu_percent": 2.0, "rss_mb": 150.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds (fields 14 and 15 of /proc/<pid>/stat, after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_percent(pid: int, seconds: float) -> float:
    """The process's CPU use over the next `seconds`, as % of one core."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - before) / (time.monotonic() - start)


# ----------------------------------------------------------------- workloads


def web_deployment(name: str, image: str) -> dict[str, Any]:
    """3 replicas of an HTTP server on the pod IP, Ready when `/` answers; one surge pod at a time."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 1},
                        }
                    ],
                },
            },
        },
    }


def rolled_out(d: client.V1Deployment) -> bool:
    s, want = d.status, d.spec.replicas
    return bool(
        s
        and (s.observed_generation or 0) >= d.metadata.generation
        and (s.updated_replicas or 0) == (s.replicas or 0) == (s.available_replicas or 0) == want
    )


def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.02)


def is_ready(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@dataclass
class Recorder:
    """Watch-event arrival times: pods turning Ready, and the controllers' steps (RS scales, pods created)."""

    ready_at: list[float] = field(default_factory=list)
    steps_at: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _ready: set[str] = field(default_factory=set)
    _scale: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def on_pod(self, event_type: str, pod: client.V1Pod, at: float, *, initial: bool) -> None:
        name = pod.metadata.name
        if event_type == "ADDED" and not initial:
            self.steps_at.append(at)
        if event_type != "DELETED" and is_ready(pod) and not pod.metadata.deletion_timestamp and name not in self._ready:
            self._ready.add(name)
            if not initial:
                self.ready_at.append(at)

    def on_replica_set(self, event_type: str, rs: client.V1ReplicaSet, at: float, *, initial: bool) -> None:
        name, replicas = rs.metadata.name, rs.spec.replicas or 0
        if not initial and event_type != "DELETED" and self._scale.get(name, -1) != replicas:
            self.steps_at.append(at)
        self._scale[name] = replicas

    def reactions_ms(self) -> list[float]:
        """For each Ready transition, the delay to the first controller step after it (if any)."""
        steps = sorted(self.steps_at)
        out = []
        for ready in self.ready_at:
            after = [s for s in steps if s >= ready]
            if after:
                out.append((after[0] - ready) * 1000)
        return out


@contextmanager
def recording(api: client.ApiClient, namespace: str) -> Iterator[Recorder]:
    """Watch pods and replicasets of `namespace` from now on (the initial list only primes the state)."""
    recorder = Recorder()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    primed = threading.Barrier(3)
    watches: list[watch.Watch] = []

    def follow(list_func: Callable[..., Any], handle: Callable[..., None]) -> None:
        initial = list_func(namespace)
        for obj in initial.items:
            handle("ADDED", obj, 0.0, initial=True)
        w = watch.Watch()
        watches.append(w)
        primed.wait()
        try:
            for event in w.stream(list_func, namespace, resource_version=initial.metadata.resource_version, timeout_seconds=120):
                handle(event["type"], event["object"], time.perf_counter(), initial=False)
                if recorder._stop.is_set():
                    break
        except Exception as err:  # a watch cut off after the measurement (cluster stopping) is no error
            if not recorder._stop.is_set():
                recorder.errors.append(f"{list_func.__name__}: {err!r}")

    threads = [
        threading.Thread(target=follow, args=(core.list_namespaced_pod, recorder.on_pod), daemon=True),
        threading.Thread(target=follow, args=(apps.list_namespaced_replica_set, recorder.on_replica_set), daemon=True),
    ]
    for t in threads:
        t.start()
    primed.wait()
    time.sleep(0.2)  # let both watch requests reach the server before the test changes anything
    try:
        yield recorder
    finally:
        recorder._stop.set()
        for w in watches:
            w.stop()


# ----------------------------------------------------------------- the benchmark


def run(work: Path) -> dict[str, Any]:
    engine = docker.from_env()
    # The cluster process of the benchmark's own, as `bootstrap up` would start it.
    cluster = ClusterChild(work / "state", log_file=work / "cluster.log")
    repo = f"{REGISTRY}/cluster-bench-{uuid.uuid4().hex[:8]}"
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    api: client.ApiClient | None = None
    try:
        engine.images.get(BASE_IMAGE).tag(repo, tag="v1")
        engine.images.push(repo, tag="v1")
        image = f"{repo}:v1"
        cluster.start()
        assert cluster.proc is not None
        pid = cluster.proc.pid
        time.sleep(1.0)  # past start-up work (imports, first list of Docker containers)
        idle_cpu = cpu_percent(pid, IDLE_SECONDS)
        idle_rss = rss_mb(pid)

        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        core.create_namespace({"metadata": {"name": namespace}})

        rollouts: list[float] = []
        for run_no in range(ROLLOUT_RUNS):
            name = f"web-{run_no}"
            start = time.perf_counter()
            apps.create_namespaced_deployment(namespace, web_deployment(name, image))
            wait_for(
                lambda n=name: rolled_out(apps.read_namespaced_deployment(n, namespace)), timeout=60, what=f"{name} rolled out"
            )
            rollouts.append(time.perf_counter() - start)
            if run_no < ROLLOUT_RUNS - 1:
                apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")

        last = f"web-{ROLLOUT_RUNS - 1}"
        wait_for(lambda: len(core.list_namespaced_pod(namespace).items) == 3, timeout=30, what="earlier runs' pods gone")
        reactions: list[float] = []
        update_seconds: list[float] = []
        for update in range(ROLLING_UPDATES):
            with recording(api, namespace) as recorder:
                start = time.perf_counter()
                patch = {"spec": {"template": {"metadata": {"annotations": {"bench/update": str(update)}}}}}
                apps.patch_namespaced_deployment(last, namespace, patch)
                wait_for(
                    lambda: (
                        rolled_out(apps.read_namespaced_deployment(last, namespace))
                        and len(core.list_namespaced_pod(namespace).items) == 3
                    ),
                    timeout=60,
                    what=f"rolling update {update}",
                )
                update_seconds.append(time.perf_counter() - start)
            if recorder.errors:
                raise RuntimeError(f"a watch failed during rolling update {update}: {recorder.errors}")
            reactions += recorder.reactions_ms()

        loaded_cpu = cpu_percent(pid, IDLE_SECONDS / 2)
        loaded_rss = rss_mb(pid)
        if not reactions:
            raise RuntimeError("no pod Ready -> next step pair was observed during the rolling updates")
        reaction_median = statistics.median(reactions)
        return {
            "rollout_3_replicas_seconds": {
                "median": round(statistics.median(rollouts), 3),
                "runs": [round(r, 3) for r in rollouts],
            },
            "rolling_update_3_replicas_seconds": [round(u, 3) for u in update_seconds],
            "reaction_ms": {
                "median": round(reaction_median, 1),
                "max": round(max(reactions), 1),
                "steps": len(reactions),
                "all": [round(r, 1) for r in reactions],
                "measured": "watch arrival: pod Ready -> next ReplicaSet scale or pod creation",
            },
            "cpu_percent_of_one_core": {"idle": round(idle_cpu, 2), "with_3_pods": round(loaded_cpu, 2)},
            "rss_mb": {"idle": round(idle_rss, 1), "after_rollouts": round(loaded_rss, 1)},
            "targets": TARGETS,
            "targets_met": {
                "reaction_ms_median": reaction_median < TARGETS["reaction_ms_median"],
                "idle_cpu_percent": idle_cpu < TARGETS["idle_cpu_percent"],
                "rss_mb": max(idle_rss, loaded_rss) < TARGETS["rss_mb"],
            },
        }
    finally:
        if api is not None:
            try:
                client.CoreV1Api(api).delete_namespace(namespace)
                wait_for(lambda: not _containers(engine, cluster), timeout=20, what="bench containers removed")
            except Exception as err:  # the forced removal below still cleans up
                print(f"cleanup through the API failed ({err}); removing containers directly", file=sys.stderr)
            api.close()
        cluster.stop()
        cluster.remove_containers()
        try:
            engine.images.remove(f"{repo}:v1")
        except docker.errors.APIError:
            pass
        engine.close()


def _containers(engine: docker.DockerClient, cluster: ClusterChild) -> list[Any]:
    cluster_id = cluster.cluster_id
    if not cluster_id:
        return []
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster_id}"}))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as work:
        result = run(Path(work))
    print(json.dumps(result, indent=2))
    from benchmarks.report import write_report

    write_report("cluster_bench", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
