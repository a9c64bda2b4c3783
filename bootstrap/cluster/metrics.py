"""metrics.k8s.io/v1beta1, what metrics-server serves through kube-apiserver's aggregation (`kubectl top`).

- Discovery lists the group (discovery.py: `metrics.k8s.io`, version v1beta1, resources `nodes` (NodeMetrics)
  and `pods` (PodMetrics), verbs get and list), as a cluster with metrics-server installed does.
- PodMetrics (`/apis/metrics.k8s.io/v1beta1/[namespaces/<ns>/]pods[/<name>]`, `labelSelector`): one per pod
  of this node with a running container, named and labelled as the pod, each running container's `usage`:
  `cpu` the rate of the container's cumulative CPU time (Docker stats `cpu_stats.cpu_usage.total_usage`) over
  the `window` between two samples, in nanocores (`123456n`, canonical as resource.Quantity prints it), and
  `memory` its working set as cAdvisor counts it (usage minus inactive_file), in bytes (`1234Ki`).
- NodeMetrics (`/apis/metrics.k8s.io/v1beta1/nodes[/<name>]`): the node's CPU from /proc/stat (all but idle
  and iowait) and memory in use (MemTotal - MemAvailable from /proc/meminfo).
- A pod or node without metrics is 404 (`podmetrics.metrics.k8s.io "x" not found`), as metrics-server answers.

Cost: nothing while idle. metrics-server scrapes every 15 s and answers from the last two scrapes; here the
samples are taken when asked (Docker's one-shot stats, a few ms per container) and kept: a request within
a minute of the previous one uses that as the window's start, else it samples twice, one second apart (the
first `kubectl top` takes a second).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web

from bootstrap.cluster import errors
from bootstrap.cluster.resources import NODES, PODS
from bootstrap.cluster.selectors import SelectorError, parse_label_selector
from bootstrap.cluster.store import Obj, Store

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{API_VERSION}"
RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]
MIN_WINDOW = 0.5  # seconds: a shorter gap between samples is resampled
MAX_AGE = 60.0  # seconds: an older sample is not a window's start
RESAMPLE_AFTER = 1.0

T = TypeVar("T")
Sample = tuple[float, int, int]  # (monotonic time, cumulative CPU ns, memory working set bytes)


class StatsHost(Protocol):
    """What the metrics need from the kubelet."""

    docker: Any
    node_name: str

    async def call(self, fn: Callable[[], T]) -> T: ...


def cpu_quantity(nanocores: int) -> str:
    """resource.Quantity's canonical form of a nanocore count (scale -9): 0, 250m, 1500u, 123456789n, 2."""
    if nanocores <= 0:
        return "0"
    for suffix, factor in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanocores % factor == 0:
            return f"{nanocores // factor}{suffix}"
    return f"{nanocores}n"


def memory_quantity(size: int) -> str:
    """resource.Quantity's canonical BinarySI form: the largest of Ki, Mi, Gi, Ti that divides evenly."""
    if size <= 0:
        return "0"
    for suffix, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def go_duration(seconds: float) -> str:
    """metav1.Duration's text for a window: Go's Duration.String() at millisecond precision."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_sample(docker: Any, container_id: str) -> Sample | None:
    try:
        stats = docker.api.stats(container_id, stream=False, one_shot=True)
    except Exception:  # gone, or the engine is busy: no metrics for it this time
        return None
    cpu = int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
    memory = stats.get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    detail = memory.get("stats") or {}
    inactive = int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
    if not cpu and not usage:
        return None  # not running
    return time.monotonic(), cpu, max(0, usage - inactive if inactive < usage else 0)


def _node_sample() -> Sample:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    meminfo: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            meminfo[key] = int(rest.split()[0]) * 1024
    used = meminfo.get("MemTotal", 0) - meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    return time.monotonic(), busy * 10**9 // tick, used


class Metrics:
    """The metrics API of one kubelet's node."""

    def __init__(self, store: Store, host: StatsHost | None) -> None:
        self.store = store
        self.host = host
        self._previous: dict[str, Sample] = {}

    async def _samples(self, keys: dict[str, Callable[[], Sample | None]]) -> dict[str, tuple[Sample, float]]:
        """(latest sample, window in seconds) for each key that has two samples far enough apart."""
        assert self.host is not None
        host = self.host

        async def take(wanted: list[str]) -> dict[str, Sample]:
            results = await asyncio.gather(*(host.call(keys[k]) for k in wanted))
            return {k: s for k, s in zip(wanted, results, strict=True) if s is not None}

        now = await take(list(keys))
        usable = {k for k, s in now.items() if k in self._previous and MIN_WINDOW <= s[0] - self._previous[k][0] <= MAX_AGE}
        start = {k: self._previous[k] for k in usable}
        fresh = [k for k in now if k not in usable]
        if fresh:
            start.update({k: now[k] for k in fresh})
            await asyncio.sleep(RESAMPLE_AFTER)
            now.update(await take(fresh))
        self._previous = {**{k: v for k, v in self._previous.items() if k in keys}, **now}
        out: dict[str, tuple[Sample, float]] = {}
        for key, sample in now.items():
            first = start.get(key)
            if first is None or sample[0] <= first[0]:
                continue
            window = sample[0] - first[0]
            rate = max(0, sample[1] - first[1]) / window
            out[key] = ((sample[0], int(rate), sample[2]), window)
        return out

    def _running_pods(self, namespace: str | None, name: str | None, selector: str | None) -> list[tuple[Obj, dict[str, str]]]:
        """(pod, {container name: docker id}) for the pods of this node with running containers."""
        if self.host is None:
            return []
        try:
            matcher = parse_label_selector(selector)
        except SelectorError as err:
            raise errors.bad_request(str(err)) from None
        pods = [self.store.try_get(PODS, namespace, name)] if name and namespace else self.store.list(PODS, namespace)
        found = []
        for pod in pods:
            if pod is None or pod["spec"].get("nodeName") != self.host.node_name:
                continue
            if not matcher(pod):
                continue
            running = {
                cs["name"]: str(cs["containerID"]).removeprefix("docker://")
                for cs in (pod.get("status") or {}).get("containerStatuses") or []
                if "running" in (cs.get("state") or {}) and cs.get("containerID")
            }
            if running:
                found.append((pod, running))
        return found

    async def pod_metrics(self, namespace: str | None, name: str | None, selector: str | None) -> list[Obj]:
        pods = self._running_pods(namespace, name, selector)
        if not pods:
            return []
        assert self.host is not None
        docker = self.host.docker
        keys: dict[str, Callable[[], Sample | None]] = {
            cid: functools.partial(_container_sample, docker, cid) for _, running in pods for cid in running.values()
        }
        samples = await self._samples(keys)
        at = datetime.now(UTC)
        items = []
        for pod, running in pods:
            measured = [(c, samples[cid]) for c, cid in running.items() if cid in samples]
            if len(measured) != len(running):
                continue  # metrics-server skips a pod whose containers it could not all measure
            meta = pod["metadata"]
            items.append(
                {
                    "kind": "PodMetrics",
                    "apiVersion": API_VERSION,
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "creationTimestamp": _stamp(at),
                        **({"labels": dict(meta["labels"])} if meta.get("labels") else {}),
                    },
                    "timestamp": _stamp(at),
                    "window": go_duration(max(window for _, (_, window) in measured)),
                    "containers": [
                        {"name": c, "usage": {"cpu": cpu_quantity(s[1]), "memory": memory_quantity(s[2])}}
                        for c, (s, _) in measured
                    ],
                }
            )
        return items

    async def node_metrics(self, name: str | None) -> list[Obj]:
        if self.host is None or (name is not None and name != self.host.node_name):
            return []
        node = self.store.try_get(NODES, None, self.host.node_name)
        if node is None:
            return []
        samples = await self._samples({"node": _node_sample})
        if "node" not in samples:
            return []
        (_, cpu, memory), window = samples["node"]
        at = datetime.now(UTC)
        meta = node["metadata"]
        return [
            {
                "kind": "NodeMetrics",
                "apiVersion": API_VERSION,
                "metadata": {
                    "name": meta["name"],
                    "creationTimestamp": _stamp(at),
                    **({"labels": dict(meta["labels"])} if meta.get("labels") else {}),
                },
                "timestamp": _stamp(at),
                "window": go_duration(window),
                "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
            }
        ]

    # ----- HTTP -----

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        parts = [p for p in request.path.removeprefix(PREFIX).split("/") if p]
        selector = request.query.get("labelSelector")
        namespace: str | None = None
        if parts[:1] == ["namespaces"] and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        if parts[:1] == ["nodes"] and namespace is None and len(parts) <= 2:
            name = parts[1] if len(parts) == 2 else None
            items = await self.node_metrics(name)
            kind, plural = "NodeMetrics", "nodes"
            if selector:
                try:
                    matcher = parse_label_selector(selector)
                except SelectorError as err:
                    raise errors.bad_request(str(err)) from None
                items = [i for i in items if matcher(i)]
        elif parts[:1] == ["pods"] and len(parts) <= 2:
            name = parts[1] if len(parts) == 2 else None
            if name is not None and namespace is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            items = await self.pod_metrics(namespace, name, selector)
            kind, plural = "PodMetrics", "pods"
        else:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is not None:
            if not items:
                raise errors.ApiError(
                    404,
                    "NotFound",
                    f'{plural[:-1]}metrics.{GROUP} "{name}" not found',
                    details={"name": name, "group": GROUP, "kind": plural},
                )
            return _json(items[0])
        return _json({"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items})


def _json(body: Obj) -> web.Response:
    import json

    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json")


def register(app: web.Application, store: Store, host: StatsHost | None) -> None:
    """The metrics routes, ahead of the API's catch-all (discovery of the group stays with discovery.py)."""
    metrics = Metrics(store, host)
    app.router.add_route("*", PREFIX + "/{tail:.+}", metrics.handle)
