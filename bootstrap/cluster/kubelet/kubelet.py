"""The node: a small scheduler (one node; nodeSelector and node affinity checked) and a kubelet whose pods are Docker containers on the host network.

The kubelet shares the cluster's event loop. Docker calls run on its own
thread pool (a slow `docker stop` must not starve the API server's threads),
container exits arrive through Docker's event stream (read in a thread,
handed to the loop with `call_soon_threadsafe`), and every pod is driven by
its own PodWorker task. When the kubelet stops, containers keep running: the
next kubelet on the same node name re-adopts them from their labels.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.events import NORMAL, WARNING, EventRecorder
from bootstrap.cluster.kubelet import node as nodeinfo, runtime
from bootstrap.cluster.kubelet.logs import stream_logs
from bootstrap.cluster.kubelet.podips import NETWORK as POD_NETWORK, PodIPAllocator
from bootstrap.cluster.kubelet.podworker import PodWorker
from bootstrap.cluster.kubelet.scheduling import unschedulable_reason
from bootstrap.cluster.kubelet.volumes import ApiAccess, remove_pod_dir
from bootstrap.cluster.resources import LEASES, NODES, PODS
from bootstrap.cluster.store import Obj, Store, WatchEvent, now_rfc3339

log = logging.getLogger(__name__)

T = TypeVar("T")


def _node_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2**30


class Kubelet:
    def __init__(
        self,
        store: Store,
        *,
        node_name: str,
        docker: docker.DockerClient,
        state_dir: Path,
        events: EventRecorder | None = None,
        pod_network: ipaddress.IPv4Network = POD_NETWORK,
        api_access: ApiAccess | None = None,
    ) -> None:
        """`api_access`: the API server pods reach with their mounted service-account token (see volumes.py);
        None projects no token (an API-less test kubelet)."""
        self.store = store
        self.docker = docker
        self.node_name = node_name
        self.cluster_id = ""  # read from state_dir when run() starts
        self.node_cpus = os.cpu_count() or 1
        self.node_memory = _node_memory()
        self.state_dir = state_dir
        self.api_access = api_access
        self._events = events or EventRecorder(store)
        self._ips = PodIPAllocator(pod_network)
        self.pod_network = pod_network
        self._runtime_version = "docker://unknown"
        self._workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix=f"kubelet-{node_name}")
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----- PodHost, for the workers -----

    async def call(self, fn: Callable[[], T]) -> T:
        """Run a blocking Docker call on the kubelet's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def event(self, pod: Obj, reason: str, message: str, *, warning: bool = False, container: str | None = None) -> None:
        self._events.record(
            pod,
            reason=reason,
            message=message,
            component="kubelet",
            host=self.node_name,
            type=WARNING if warning else NORMAL,
            field_path=f"spec.containers{{{container}}}" if container else None,
        )

    def pod_ip(self, uid: str) -> str:
        ip = self._ips.get(uid)
        if ip is None:
            raise RuntimeError(f"pod {uid} has no IP yet: assign_pod_ip() first")
        return ip

    async def assign_pod_ip(self, uid: str) -> str:
        """The pod's IP, allocated once, avoiding addresses other kubelets' containers on this host use."""
        ip = self._ips.get(uid)
        if ip is not None:
            return ip
        summaries = await self.call(lambda: self.docker.api.containers(filters={"label": runtime.LABEL_POD_IP}))
        used = frozenset(
            s["Labels"][runtime.LABEL_POD_IP]
            for s in summaries
            if (s["Labels"].get(runtime.LABEL_NODE), s["Labels"].get(runtime.LABEL_CLUSTER)) != (self.node_name, self.cluster_id)
        )

        return self._ips.allocate(uid, avoid=used)

    def write_status(self, pod: Obj, build: Callable[[Obj], Obj]) -> None:
        """Write a pod's status, `build(current)` from the pod as stored now, if it changed.

        Built from the latest stored object (not the worker's copy) so that conditions others wrote (a
        readiness gate's) are kept and count, and written with its resourceVersion as a precondition,
        rebuilt on a conflict, so a concurrent status write by another client is never lost.
        """
        meta = pod["metadata"]
        for _ in range(5):
            current = self.store.try_get(PODS, meta["namespace"], meta["name"])
            if current is None or current["metadata"]["uid"] != meta["uid"]:
                return
            status = build(current)
            if current.get("status") == status:
                return
            current["status"] = status
            try:
                self.store.update(PODS, current, subresource="status")
                return
            except ApiError as err:
                if err.code != 409:
                    raise

    def finish_pod(self, pod: Obj) -> None:
        """The pod's containers are gone: remove it from the store (kubelet's delete with grace period 0)."""
        meta = pod["metadata"]
        self._ips.release(meta["uid"])
        remove_pod_dir(self.state_dir, meta["uid"])
        try:
            self.store.delete(PODS, meta["namespace"], meta["name"], grace_period_seconds=0, preconditions={"uid": meta["uid"]})
        except ApiError as err:
            if err.code not in (404, 409):
                raise

    # ----- lifecycle -----

    async def run(self) -> None:
        """Schedule and run this node's pods until cancelled; containers survive the cancellation."""
        self._loop = asyncio.get_running_loop()
        self.cluster_id = self._load_cluster_id()
        stream = await self.call(
            lambda: self.docker.events(decode=True, filters={"type": "container", "event": ["die"], "label": self._owned()})
        )
        pump = threading.Thread(target=self._pump_docker_events, args=(stream,), daemon=True, name="kubelet-events")
        pump.start()
        await self._register_node()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        self.store.subscribe(self._on_event)
        try:
            await self._adopt_and_start()
            await asyncio.Event().wait()
        finally:
            heartbeat.cancel()
            self.store.unsubscribe(self._on_event)
            stream.close()
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._workers.clear()
            self._tasks.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ----- the Node -----

    async def _register_node(self) -> None:
        """Create this kubelet's Node, or bring an existing one's labels and status up to date."""
        try:
            version = await self.call(lambda: str(self.docker.version().get("Version") or ""))
        except Exception:  # the node registers anyway, as a kubelet whose runtime is not up yet would
            log.warning("docker version unknown", exc_info=True)
            version = ""
        self._runtime_version = f"docker://{version or 'unknown'}"
        existing = self.store.try_get(NODES, None, self.node_name)
        node = nodeinfo.node_object(self.node_name, pod_network=self.pod_network, existing=existing)
        if existing is None:
            node["status"] = self._node_status(None)
            self.store.create(NODES, node)
        else:
            node["metadata"].pop("resourceVersion", None)
            self.store.update(NODES, node)
            self._write_node_status()
        self._node_events()
        self._renew_lease()

    def _node_status(self, previous: Obj | None) -> Obj:
        return nodeinfo.node_status(
            self.node_name, state_dir=self.state_dir, runtime_version=self._runtime_version, previous=previous
        )

    def _write_node_status(self) -> None:
        """Refresh the Node's status (lastHeartbeatTime and all); recreate it if someone deleted it."""
        node = self.store.try_get(NODES, None, self.node_name)
        if node is None:
            node = nodeinfo.node_object(self.node_name, pod_network=self.pod_network)
            node["status"] = self._node_status(None)
            self.store.create(NODES, node)
            return
        node["status"] = self._node_status(node.get("status"))
        node["metadata"].pop("resourceVersion", None)
        self.store.update(NODES, node, subresource="status")

    def _renew_lease(self) -> None:
        node = self.store.try_get(NODES, None, self.node_name)
        if node is None:
            return
        existing = self.store.try_get(LEASES, nodeinfo.LEASE_NAMESPACE, self.node_name)
        lease = nodeinfo.lease_object(node, existing)
        try:
            if existing is None:
                self.store.create(LEASES, lease)
            else:
                self.store.update(LEASES, lease)
        except ApiError as err:  # kube-node-lease deleted, say: the node works on without its Lease
            log.debug("node lease not renewed: %s", err.message)

    async def _heartbeat(self) -> None:
        """Renew the node's Lease every 10 s and post its status every 40 s: two tiny writes, no polling."""
        interval = nodeinfo.LEASE_SECONDS / 4
        ticks_per_status = max(1, round(nodeinfo.HEARTBEAT_SECONDS / interval))
        tick = 0
        while True:
            await asyncio.sleep(interval)
            tick += 1
            try:
                if tick % ticks_per_status == 0:
                    self._write_node_status()
                self._renew_lease()
            except ApiError:
                log.warning("node heartbeat failed", exc_info=True)

    def _node_events(self) -> None:
        """The kubelet's events at registration; like kubelet, they name the node by name as its uid."""
        ref = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node_name, "uid": self.node_name}}
        for reason, message in (
            ("Starting", "Starting kubelet."),
            ("NodeHasSufficientMemory", f"Node {self.node_name} status is now: NodeHasSufficientMemory"),
            ("NodeHasNoDiskPressure", f"Node {self.node_name} status is now: NodeHasNoDiskPressure"),
            ("NodeHasSufficientPID", f"Node {self.node_name} status is now: NodeHasSufficientPID"),
            ("NodeReady", f"Node {self.node_name} status is now: NodeReady"),
        ):
            self._events.record(ref, reason=reason, message=message, component="kubelet", host=self.node_name)

    def _load_cluster_id(self) -> str:
        """This cluster's identity on the host's containers, kept across restarts in state_dir."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "cluster-id"
        if not path.exists():
            path.write_text(uuid.uuid4().hex[:12])
        return path.read_text().strip()

    def _owned(self) -> list[str]:
        """Docker label filters selecting this kubelet's containers, and no other cluster's."""
        return [f"{runtime.LABEL_NODE}={self.node_name}", f"{runtime.LABEL_CLUSTER}={self.cluster_id}"]

    def _pump_docker_events(self, stream: Any) -> None:
        loop = self._loop
        assert loop is not None
        try:
            for event in stream:
                loop.call_soon_threadsafe(self._on_docker_event, event)
        except Exception:  # the stream was closed by run()'s shutdown, or the daemon went away
            log.debug("docker event stream ended", exc_info=True)

    def _on_docker_event(self, event: dict[str, Any]) -> None:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        worker = self._workers.get(attributes.get(runtime.LABEL_POD_UID, ""))
        if worker is not None:
            worker.container_died(str(event.get("id") or (event.get("Actor") or {}).get("ID")))

    async def _adopt_and_start(self) -> None:
        """Re-adopt containers a previous kubelet left; remove those whose pod is gone; start the rest."""
        summaries = await self.call(lambda: self.docker.api.containers(all=True, filters={"label": self._owned()}))
        by_uid: dict[str, list[dict[str, Any]]] = {}
        for summary in summaries:
            by_uid.setdefault(summary["Labels"].get(runtime.LABEL_POD_UID, ""), []).append(summary)
        pods = {p["metadata"]["uid"]: p for p in self.store.list(PODS)}
        for uid, found in by_uid.items():
            pod = pods.get(uid)
            if pod is None or pod["spec"].get("nodeName") != self.node_name:
                for summary in found:
                    await self.call(functools.partial(self.docker.api.remove_container, summary["Id"], force=True))
        for pod in pods.values():
            ip = (pod.get("status") or {}).get("podIP")
            if pod["spec"].get("nodeName") == self.node_name and ip:
                self._ips.reserve(pod["metadata"]["uid"], ip)
        for pod in pods.values():
            self._on_pod(pod, adopted=by_uid.get(pod["metadata"]["uid"]))

    # ----- store events -----

    def _unschedulable(self, pod: Obj, message: str) -> None:
        """PodScheduled False (Unschedulable) and one FailedScheduling event, as kube-scheduler reports a pod that fits no node."""
        status = dict(pod.get("status") or {})
        current = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if current is not None and current.get("status") == "False" and current.get("message") == message:
            return  # already said (this update's own watch event comes back here)
        status.setdefault("phase", "Pending")
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        ]
        pod["status"] = status
        pod = self.store.update(PODS, pod, subresource="status")
        self._events.record(pod, reason="FailedScheduling", message=message, component="default-scheduler", type=WARNING)

    def _on_event(self, event: WatchEvent) -> None:
        if event.resource is NODES and event.type == "MODIFIED":
            # Node labels may now fit a pending pod (kube-scheduler retries on node updates).
            for pod in self.store.list(PODS, None):
                if not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                    meta = pod["metadata"]
                    asyncio.get_running_loop().call_soon(self._bind, meta["namespace"], meta["name"], meta["uid"])
            return
        if event.resource is not PODS:
            return
        if event.type == "DELETED":
            worker = self._workers.get(event.object["metadata"]["uid"])
            if worker is not None:
                worker.gone()
            return
        self._on_pod(event.object)

    def _on_pod(self, pod: Obj, *, adopted: list[dict[str, Any]] | None = None) -> None:
        meta = pod["metadata"]
        node = pod["spec"].get("nodeName")
        if not node:
            if not meta.get("deletionTimestamp"):
                asyncio.get_running_loop().call_soon(self._bind, meta["namespace"], meta["name"], meta["uid"])
            return
        if node != self.node_name:
            return
        worker = self._workers.get(meta["uid"])
        if worker is not None:
            worker.update(pod)
            return
        if not adopted and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return  # finished before a restart, and nothing left to adopt
        worker = PodWorker(self, pod, adopted=adopted)
        self._workers[meta["uid"]] = worker
        task = asyncio.ensure_future(worker.run())
        self._tasks[meta["uid"]] = task
        task.add_done_callback(functools.partial(self._worker_done, meta["uid"]))

    def _worker_done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(uid) is task:
            del self._tasks[uid]
            self._workers.pop(uid, None)
            if not task.cancelled():
                self._ips.release(uid)
                remove_pod_dir(self.state_dir, uid)
                if task.exception() is not None:
                    log.error("pod worker %s failed", uid, exc_info=task.exception())

    def _bind(self, namespace: str, name: str, uid: str) -> None:
        """The scheduler: one node, so every unscheduled pod that fits it (nodeSelector, node affinity) goes here."""
        pod = self.store.try_get(PODS, namespace, name)
        if (
            pod is None
            or pod["metadata"]["uid"] != uid
            or pod["spec"].get("nodeName")
            or pod["metadata"].get("deletionTimestamp")
        ):
            return
        node = self.store.try_get(NODES, None, self.node_name)
        node_labels = (node or {}).get("metadata", {}).get("labels") or nodeinfo.labels(self.node_name)
        reason = unschedulable_reason(pod, node_labels, self.node_name)
        if reason is not None:
            self._unschedulable(pod, reason)
            return
        pod["spec"]["nodeName"] = self.node_name
        pod = self.store.update(PODS, pod)
        status = dict(pod.get("status") or {})
        status.setdefault("phase", "Pending")
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        ]
        pod["status"] = status
        pod = self.store.update(PODS, pod, subresource="status")
        self._events.record(
            pod,
            reason="Scheduled",
            message=f"Successfully assigned {namespace}/{name} to {self.node_name}",
            component="default-scheduler",
        )

    # ----- logs -----

    async def logs(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None,
        follow: bool,
        tail_lines: int | None,
        timestamps: bool,
        previous: bool,
    ) -> AsyncIterator[bytes]:
        """A container's output, chosen and refused as kubelet does (ApiError 400 / 404 on the first step).

        An async generator: the checks run on the first `__anext__`, which then yields b"" at once so a
        server can send its headers before a quiet `follow` stream produces anything.
        """
        pod = self.store.get(PODS, namespace, name)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        if container is None:
            if len(names) != 1:
                raise ApiError(
                    400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        elif container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        container_id = self._log_container(pod, container, previous=previous)
        yield b""
        chunks = stream_logs(
            self.docker, container_id, follow=follow, tail_lines=tail_lines, timestamps=timestamps, executor=self._executor
        )
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    def _log_container(self, pod: Obj, container: str, *, previous: bool) -> str:
        name = pod["metadata"]["name"]
        worker = self._workers.get(pod["metadata"]["uid"])
        status: dict[str, Any] = next(
            (cs for cs in (pod.get("status") or {}).get("containerStatuses") or [] if cs.get("name") == container), {}
        )
        state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
        if previous:
            if not last or not last.get("containerID"):
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found')
            return str(last["containerID"]).removeprefix("docker://")
        if ("running" in state or "terminated" in state) and status.get("containerID"):
            return str(status["containerID"]).removeprefix("docker://")
        if last and last.get("containerID"):
            return str(last["containerID"]).removeprefix("docker://")
        reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
        if worker is not None and worker.containers[container].container_id and "waiting" not in state:
            return str(worker.containers[container].container_id)
        why = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {why}')
