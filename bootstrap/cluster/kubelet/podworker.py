"""One pod's life on the node: a task that starts, watches, restarts and stops its containers.

Like kubelet's pod workers, each pod is synced by one task, so its containers
never race each other. The task sleeps until something happens: the pod
changed, a container died (Docker's event stream), a probe flipped, or a
back-off timer expired. Each wake-up runs `_sync` (start what should run,
record what died) and writes the pod's status if it changed.

"The pod changed" includes status writes by others: a controller that sets a
readiness gate's condition (PATCH pods/status) wakes the worker, which
re-evaluates Ready at once. The status is always built from the pod as stored
at the moment of the write, keeping every condition the kubelet does not own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import docker
import docker.errors

from bootstrap.cluster.kubelet import runtime
from bootstrap.cluster.kubelet.envs import EnvError, build_env
from bootstrap.cluster.kubelet.probes import Prober
from bootstrap.cluster.kubelet.volumes import (
    TERMINATION_MESSAGE_BYTES,
    ApiAccess,
    MountError,
    container_mounts,
    refresh_volumes,
    termination_log,
)
from bootstrap.cluster.store import Obj, Store, now_rfc3339

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF = 300.0
INITIAL_BACKOFF = 10.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long restarts without back-off
CONFIG_RETRY = 5.0
# FallbackToLogsOnError: the kubelet's MaxContainerTerminationMessageLogLines and ...LogLength.
TERMINATION_LOG_LINES = 80
TERMINATION_LOG_BYTES = 2048
READY_SETTLE = 1.0  # seconds a container without readiness probe must run before it is Ready
# kubelet's volume manager re-renders mounted configMap/secret/downwardAPI/projected volumes about once a minute;
# a projected token due for rotation sooner (volumes.TOKEN_REFRESH_FRACTION) is rewritten when it is due.
VOLUME_RESYNC = 60.0
# The pod conditions kubelet owns (kubetypes.PodConditionByKubelet): it writes these, and keeps any other as stored.
KUBELET_CONDITIONS = frozenset({"PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers"})
READINESS_GATES_NOT_READY = "ReadinessGatesNotReady"


class PodHost(Protocol):
    """What a pod worker needs from its kubelet."""

    store: Store
    docker: docker.DockerClient
    node_name: str
    cluster_id: str
    node_cpus: int
    node_memory: int
    state_dir: Path
    api_access: ApiAccess | None  # None: no service-account tokens are projected

    async def call(self, fn: Callable[[], T]) -> T: ...
    def event(self, pod: Obj, reason: str, message: str, *, warning: bool = False, container: str | None = None) -> None: ...
    def write_status(self, pod: Obj, build: Callable[[Obj], Obj]) -> None: ...
    def pod_ip(self, uid: str) -> str: ...
    async def assign_pod_ip(self, uid: str) -> str: ...
    def finish_pod(self, pod: Obj) -> None: ...


@dataclass
class ContainerRuntime:
    """What the kubelet knows about one container of the pod, across its restarts."""

    name: str
    restart_count: int = 0
    container_id: str | None = None  # newest Docker container (running or exited)
    last_id: str | None = None  # the one lastState describes; kept for `logs --previous`
    image_id: str = ""
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    running: bool = False
    ready: bool = False
    done: bool = False  # exited and will not be restarted
    started_wall: float = 0.0
    crash_delay: float = 0.0  # the next crash back-off
    not_before: float = 0.0  # loop time before which no restart
    pull_delay: float = 0.0
    pull_not_before: float = 0.0
    liveness_failed: bool = False
    probes: list[asyncio.Task[None]] = field(default_factory=list)

    def stop_probes(self) -> None:
        for task in self.probes:
            task.cancel()
        self.probes.clear()


class PodWorker:
    def __init__(self, host: PodHost, pod: Obj, *, adopted: list[dict[str, Any]] | None = None) -> None:
        self._host = host
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.containers = {c["name"]: ContainerRuntime(c["name"]) for c in pod["spec"].get("containers") or []}
        self._adopted = adopted or []
        self._wake = asyncio.Event()
        self._wake.set()
        self._died: set[str] = set()
        self._gone = False
        self._terminating = False
        self._timers: list[asyncio.TimerHandle] = []
        self._volume_refresher: asyncio.Task[None] | None = None

    # ----- signals from the kubelet (called on the loop, cheap) -----

    def update(self, pod: Obj) -> None:
        if self._terminating and pod["metadata"].get("deletionGracePeriodSeconds") == 0:
            self._kill_now()
        self.pod = pod
        self._wake.set()

    def gone(self) -> None:
        """The pod left the store (force deletion, or a finished pod deleted): stop everything now."""
        self._gone = True
        if self._terminating:
            self._kill_now()
        self._wake.set()

    def container_died(self, container_id: str) -> None:
        self._died.add(container_id)
        self._wake.set()

    # ----- the worker task -----

    async def run(self) -> None:
        try:
            if not self.pod["metadata"].get("deletionTimestamp"):
                await self._host.assign_pod_ip(self.uid)
            if self._adopted:
                await self._adopt()
            elif not self.pod["metadata"].get("deletionTimestamp"):
                self._host.write_status(self.pod, self._status)  # Pending, ContainerCreating, with its pod IP
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._gone or self.pod["metadata"].get("deletionTimestamp"):
                    await self._terminate()
                    return
                await self._sync()
                if not self._gone:
                    self._host.write_status(self.pod, self._status)
        finally:
            for st in self.containers.values():
                st.stop_probes()
            for timer in self._timers:
                timer.cancel()
            if self._volume_refresher is not None:
                self._volume_refresher.cancel()

    async def _refresh_volumes(self) -> None:
        """Keep the pod's rendered volumes current: rotate projected tokens, follow ConfigMap and Secret changes."""
        while True:
            try:
                due = refresh_volumes(self._host.store, self.pod, state_dir=self._host.state_dir, api=self._host.api_access)
            except Exception:  # never let a refresh kill the pod worker
                log.exception("refreshing the volumes of pod %s failed", self.uid)
                due = None
            delay = VOLUME_RESYNC if due is None else min(VOLUME_RESYNC, max(0.5, due - time.time()))
            await asyncio.sleep(delay)

    def _wake_after(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(loop.call_later(max(0.0, delay), self._wake.set))

    async def _sync(self) -> None:
        for container in self.pod["spec"].get("containers") or []:
            st = self.containers[container["name"]]
            if st.running and st.liveness_failed:
                await self._kill_for_liveness(container, st)
            if st.running and st.container_id in self._died:
                await self._inspect_exit(st)
            if st.running or st.done or self._gone:
                continue
            if st.container_id is not None and "terminated" in st.state:
                self._after_exit(st)
                if st.done:
                    continue
            await self._start(container, st)

    # ----- exits and restarts -----

    async def _inspect_exit(self, st: ContainerRuntime) -> None:
        cid = st.container_id
        assert cid is not None
        try:
            attrs = await self._host.call(lambda: self._host.docker.api.inspect_container(cid))
        except docker.errors.NotFound:
            attrs = {"State": {"Running": False, "ExitCode": 137, "FinishedAt": ""}}
        state = attrs["State"]
        if state.get("Running"):
            self._died.discard(cid)
            return
        self._died.discard(cid)
        self._record_exit(st, state)
        await self._termination_message(st, cid)

    async def _termination_message(self, st: ContainerRuntime, cid: str) -> None:
        """The container's message, as the kubelet reads it: what it wrote to its terminationMessagePath (at most
        4 KiB); else, with terminationMessagePolicy FallbackToLogsOnError and a failure, the end of its log (at
        most 80 lines and 2 KiB)."""
        container = next((c for c in self.pod["spec"].get("containers") or [] if c["name"] == st.name), {})
        terminated = st.state.get("terminated") or {}
        try:
            written = termination_log(self._host.state_dir, self.pod, st.name).read_bytes()[:TERMINATION_MESSAGE_BYTES]
        except OSError:
            written = b""
        if written:
            terminated["message"] = written.decode("utf-8", "replace")
            return
        if container.get("terminationMessagePolicy") != "FallbackToLogsOnError" or terminated.get("exitCode", 0) == 0:
            return
        try:
            raw = await self._host.call(
                lambda: self._host.docker.api.logs(cid, stdout=True, stderr=True, tail=TERMINATION_LOG_LINES)
            )
        except docker.errors.DockerException:
            return
        message = bytes(raw)[-TERMINATION_LOG_BYTES:].decode("utf-8", "replace")
        if message:
            terminated["message"] = message

    def _record_exit(self, st: ContainerRuntime, state: dict[str, Any]) -> None:
        code = int(state.get("ExitCode", 0))
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        started = _docker_time(state.get("StartedAt")) or st.state.get("running", {}).get("startedAt") or now_rfc3339()
        st.state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": _docker_time(state.get("FinishedAt")) or now_rfc3339(),
                "containerID": f"docker://{st.container_id}",
            }
        }
        st.running = False
        st.ready = False
        st.liveness_failed = False
        st.stop_probes()

    def _after_exit(self, st: ContainerRuntime) -> None:
        """Decide about an exited container: done (restartPolicy), or restart after the crash back-off."""
        policy = self.pod["spec"].get("restartPolicy") or "Always"
        terminated = st.state["terminated"]
        if policy == "Never" or (policy == "OnFailure" and terminated["exitCode"] == 0):
            st.done = True
            return
        if st.started_wall and time.time() - st.started_wall >= BACKOFF_RESET_AFTER:
            st.crash_delay = 0.0
        st.not_before = asyncio.get_running_loop().time() + st.crash_delay
        st.crash_delay = INITIAL_BACKOFF if st.crash_delay == 0 else min(st.crash_delay * 2, MAX_BACKOFF)
        st.last_state = {"terminated": dict(terminated)}
        if st.last_id and st.last_id != st.container_id:
            self._remove_later(st.last_id)
        st.last_id = st.container_id
        delay = st.not_before - asyncio.get_running_loop().time()
        if delay > 0:
            meta = self.pod["metadata"]
            who = f"{meta['name']}_{meta['namespace']}({self.uid})"
            st.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {round(delay):d}s restarting failed container={st.name} pod={who}",
                }
            }
            self._host.event(
                self.pod,
                "BackOff",
                f"Back-off restarting failed container {st.name} in pod {who}",
                warning=True,
                container=st.name,
            )

    def _remove_later(self, container_id: str) -> None:
        def remove() -> None:
            try:
                self._host.docker.api.remove_container(container_id, force=True)
            except docker.errors.APIError:
                pass

        asyncio.ensure_future(self._host.call(remove))

    async def _kill_for_liveness(self, container: Obj, st: ContainerRuntime) -> None:
        self._host.event(self.pod, "Killing", f"Container {st.name} failed liveness probe, will be restarted", container=st.name)
        st.stop_probes()
        grace = int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        cid = st.container_id
        assert cid is not None
        await self._host.call(lambda: _stop(self._host.docker, cid, grace))
        self._died.add(cid)
        st.liveness_failed = False

    # ----- starting -----

    async def _start(self, container: Obj, st: ContainerRuntime) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < st.not_before:
            self._wake_after(st.not_before - now)
            return
        image = container["image"]
        if now < st.pull_not_before:
            st.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}
            self._host.event(self.pod, "BackOff", f'Back-off pulling image "{image}"', container=st.name)
            self._wake_after(st.pull_not_before - now)
            return
        policy = runtime.pull_policy(container)
        try:
            pulled = await self._host.call(lambda: runtime.ensure_image(self._host.docker, image, policy))
        except runtime.PullError as err:
            if err.reason == "ErrImagePull":
                self._host.event(self.pod, "Pulling", f'Pulling image "{image}"', container=st.name)
            self._host.event(self.pod, "Failed", f'Failed to pull image "{image}": {err}', warning=True, container=st.name)
            self._host.event(self.pod, "Failed", f"Error: {err.reason}", warning=True, container=st.name)
            st.state = {"waiting": {"reason": err.reason, "message": str(err)}}
            st.pull_delay = INITIAL_BACKOFF if st.pull_delay == 0 else min(st.pull_delay * 2, MAX_BACKOFF)
            st.pull_not_before = loop.time() + st.pull_delay
            self._wake_after(1.0)  # show ImagePullBackOff while waiting for the next attempt
            return
        st.pull_delay = 0.0
        if pulled.pulled:
            self._host.event(self.pod, "Pulling", f'Pulling image "{image}"', container=st.name)
            self._host.event(
                self.pod,
                "Pulled",
                f'Successfully pulled image "{image}" in {pulled.seconds:.3f}s. Image size: {pulled.size} bytes.',
                container=st.name,
            )
        else:
            self._host.event(self.pod, "Pulled", f'Container image "{image}" already present on machine', container=st.name)
        st.image_id = pulled.image_id
        restart = st.restart_count + 1 if st.container_id is not None else st.restart_count
        pod_ip = self._host.pod_ip(self.uid)
        try:
            mounts = container_mounts(
                self._host.store, self.pod, container, state_dir=self._host.state_dir, api=self._host.api_access, pod_ip=pod_ip
            )
        except (MountError, OSError) as err:
            st.state = {"waiting": {"reason": "ContainerCreating"}}
            self._host.event(self.pod, "FailedMount", f"MountVolume.SetUp failed for {err}", warning=True)
            self._wake_after(CONFIG_RETRY)
            return
        if self._volume_refresher is None:
            self._volume_refresher = asyncio.ensure_future(self._refresh_volumes())
        try:
            env = build_env(
                self._host.store, self._with_ips(), container, node_cpus=self._host.node_cpus, node_memory=self._host.node_memory
            )
            env = {**mounts.env, **env}  # the service env first: the container's own env wins
            options = runtime.create_options(
                self.pod,
                container,
                env=env,
                image_user=pulled.user,
                node=self._host.node_name,
                cluster_id=self._host.cluster_id,
                pod_ip=pod_ip,
                restart=restart,
                binds=mounts.binds,
            )
        except (EnvError, runtime.ConfigError) as err:
            st.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(err)}}
            self._host.event(self.pod, "Failed", f"Error: {err}", warning=True, container=st.name)
            self._wake_after(CONFIG_RETRY)
            return
        try:
            cid = await self._host.call(lambda: _create_and_start(self._host.docker, options))
        except docker.errors.APIError as err:
            message = str(err.explanation or err)
            st.state = {"waiting": {"reason": "RunContainerError", "message": message}}
            self._host.event(self.pod, "Failed", f"Error: {message}", warning=True, container=st.name)
            st.not_before = loop.time() + max(st.crash_delay, 1.0)
            st.crash_delay = INITIAL_BACKOFF if st.crash_delay == 0 else min(st.crash_delay * 2, MAX_BACKOFF)
            self._wake_after(st.not_before - loop.time())
            return
        st.restart_count = restart
        st.container_id = cid
        st.running = True
        st.ready = False
        st.started_wall = time.time()
        st.state = {"running": {"startedAt": now_rfc3339()}}
        self._host.event(self.pod, "Created", f"Created container: {st.name}", container=st.name)
        self._host.event(self.pod, "Started", f"Started container {st.name}", container=st.name)
        self._start_probes(container, st)

    def _with_ips(self) -> Obj:
        """The pod as the downward API sees it: its IPs are known before any container starts."""
        ip = self._host.pod_ip(self.uid)
        status = dict(self.pod.get("status") or {})
        status.update(podIP=ip, podIPs=[{"ip": ip}], hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}])
        return {**self.pod, "status": status}

    def _start_probes(self, container: Obj, st: ContainerRuntime) -> None:
        cid = st.container_id
        assert cid is not None
        pod_ip = self._host.pod_ip(self.uid)
        if not container.get("readinessProbe"):
            # Ready once seen running for a moment, as kubelet's PLEG (relisting every second) would see it:
            # a container that crashes at once must never count as available, even for an instant.
            def settle() -> None:
                if st.running and st.container_id == cid:
                    st.ready = True
                    self._wake.set()

            self._timers.append(asyncio.get_running_loop().call_later(READY_SETTLE, settle))

        async def exec_fn(command: list[str], timeout: float) -> int:
            return await self._host.call(lambda: _exec(self._host.docker, cid, command))

        for kind in ("readiness", "liveness"):
            spec = container.get(f"{kind}Probe")
            if not spec:
                continue
            prober = Prober(
                kind,
                spec,
                pod_ip=pod_ip,
                container=container,
                exec_fn=exec_fn,
                on_change=self._on_probe(st, kind),
                on_failure=self._on_probe_failure(st, kind),
            )
            st.probes.append(asyncio.ensure_future(prober.run()))

    def _on_probe(self, st: ContainerRuntime, kind: str) -> Callable[[bool], None]:
        def changed(result: bool) -> None:
            if not st.running:
                return
            if kind == "readiness":
                st.ready = result
            elif not result:
                st.liveness_failed = True
            self._wake.set()

        return changed

    def _on_probe_failure(self, st: ContainerRuntime, kind: str) -> Callable[[str], None]:
        def failed(why: str) -> None:
            if st.running:
                self._host.event(
                    self.pod, "Unhealthy", f"{kind.capitalize()} probe failed: {why}", warning=True, container=st.name
                )

        return failed

    # ----- re-adoption after a kubelet restart -----

    async def _adopt(self) -> None:
        """Take over the containers a previous kubelet left: the newest per name is current, one older is kept."""
        previous = {cs["name"]: cs for cs in (self.pod.get("status") or {}).get("containerStatuses") or []}
        by_name: dict[str, list[dict[str, Any]]] = {}
        for summary in self._adopted:
            by_name.setdefault(summary["Labels"].get(runtime.LABEL_CONTAINER_NAME, ""), []).append(summary)
        for name, found in by_name.items():
            found.sort(key=lambda s: (int(s["Labels"].get(runtime.LABEL_RESTART_COUNT, "0")), s.get("Created", 0)))
            st = self.containers.get(name)
            if st is None:
                for s in found:
                    self._remove_later(s["Id"])
                continue
            for stale in found[:-2]:
                self._remove_later(stale["Id"])
            current = found[-1]
            st.container_id = current["Id"]
            st.restart_count = int(current["Labels"].get(runtime.LABEL_RESTART_COUNT, "0"))
            old = previous.get(name) or {}
            st.image_id = old.get("imageID", "")
            st.last_state = old.get("lastState") or {}
            if len(found) > 1:
                st.last_id = found[-2]["Id"]
            attrs = await self._host.call(functools.partial(self._host.docker.api.inspect_container, current["Id"]))
            state = attrs["State"]
            if state.get("Running"):
                st.running = True
                st.started_wall = time.time()
                st.state = {"running": {"startedAt": _docker_time(state.get("StartedAt")) or now_rfc3339()}}
                container = next(c for c in self.pod["spec"]["containers"] if c["name"] == name)
                self._start_probes(container, st)
                st.ready = bool(old.get("ready")) and old.get("containerID") == f"docker://{current['Id']}"
            else:
                self._record_exit(st, state)

    # ----- termination -----

    async def _terminate(self) -> None:
        self._terminating = True
        meta = self.pod["metadata"]
        grace = (
            0
            if self._gone
            else int(meta.get("deletionGracePeriodSeconds", self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
        )
        stops = []
        for st in self.containers.values():
            st.stop_probes()
            if st.running and st.container_id:
                self._host.event(self.pod, "Killing", f"Stopping container {st.name}", container=st.name)
                cid = st.container_id
                stops.append(self._host.call(functools.partial(_stop, self._host.docker, cid, grace)))
        await asyncio.gather(*stops, return_exceptions=True)
        await self._host.call(lambda: remove_pod_containers(self._host.docker, self.uid))
        if not self._gone:
            self._host.finish_pod(self.pod)

    def _kill_now(self) -> None:
        for st in self.containers.values():
            if st.running and st.container_id:
                cid = st.container_id
                asyncio.ensure_future(self._host.call(functools.partial(_kill, self._host.docker, cid)))

    # ----- status -----

    def _status(self, current: Obj) -> Obj:
        """The pod's status as this worker sees it, merged into `current` (the pod as stored now).

        Like kubelet's generateAPIPodStatus: conditions the kubelet does not own (a controller's readiness-gate
        condition, say) are kept, first and as stored, and Ready is evaluated against them.
        """
        pod = self.pod
        old = current.get("status") or {}
        statuses = []
        for c in pod["spec"].get("containers") or []:
            st = self.containers[c["name"]]
            cs: dict[str, Any] = {
                "name": st.name,
                "state": st.state,
                "lastState": st.last_state,
                "ready": st.running and st.ready,
                "restartCount": st.restart_count,
                "image": c["image"],
                "imageID": st.image_id,
                "started": st.running,
            }
            if st.container_id:
                cs["containerID"] = f"docker://{st.container_id}"
            statuses.append(cs)
        phase = _phase(pod, statuses)
        unready = [cs["name"] for cs in statuses if not cs["ready"]]
        old_list = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
        old_conds = {str(c.get("type")): c for c in old_list}
        conditions = [c for c in old_list if c.get("type") not in KUBELET_CONDITIONS]
        initialized = _cond(old_conds, "Initialized", True)
        if phase == "Succeeded":
            containers_ready = _cond(old_conds, "ContainersReady", False, "PodCompleted")
        elif unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            containers_ready = _cond(old_conds, "ContainersReady", False, "ContainersNotReady", message)
        else:
            containers_ready = _cond(old_conds, "ContainersReady", True)
        ready = _ready_condition(current["spec"].get("readinessGates") or [], conditions, containers_ready, old_conds)
        conditions += [initialized, ready, containers_ready]
        conditions.append(old_conds.get("PodScheduled") or _cond(old_conds, "PodScheduled", True))
        ip = self._host.pod_ip(self.uid)
        return {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": old.get("startTime") or now_rfc3339(),
            "containerStatuses": statuses,
            "qosClass": runtime.qos_class(pod),
        }


def _ready_condition(gates: list[Obj], conditions: list[Obj], containers_ready: Obj, old: dict[str, Obj]) -> Obj:
    """kubelet's GeneratePodReadyCondition: ContainersReady's verdict, then every readiness gate's condition."""
    if containers_ready["status"] != "True":
        return _cond(old, "Ready", False, containers_ready.get("reason"), containers_ready.get("message"))
    by_type = {c.get("type"): c for c in conditions}
    unready = []
    for gate in gates:
        gate_type = gate.get("conditionType")
        found = by_type.get(gate_type)
        if found is None:
            unready.append(f'corresponding condition of pod readiness gate "{gate_type}" does not exist.')
        elif found.get("status") != "True":
            unready.append(f'the status of pod readiness gate "{gate_type}" is not "True", but {found.get("status", "")}')
    if unready:
        return _cond(old, "Ready", False, READINESS_GATES_NOT_READY, ", ".join(unready))
    return _cond(old, "Ready", True)


def _cond(old: dict[str, Obj], cond_type: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    status = "True" if ok else "False"
    previous = old.get(cond_type)
    since = (previous.get("lastTransitionTime") if previous and previous.get("status") == status else None) or now_rfc3339()
    cond: Obj = {"type": cond_type, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _phase(pod: Obj, statuses: list[Obj]) -> str:
    """kubelet's getPhase."""
    running = waiting = stopped = succeeded = 0
    for cs in statuses:
        state = cs["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif cs["lastState"].get("terminated"):
            stopped += 1
        else:
            waiting += 1
    policy = pod["spec"].get("restartPolicy") or "Always"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped == len(statuses) and statuses:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _docker_time(value: str | None) -> str | None:
    """Docker's RFC 3339 with nanoseconds, as Kubernetes' second-precision timestamps."""
    if not value or value.startswith("0001-"):
        return None
    return value[:19] + "Z"


# ----- blocking Docker calls (run through PodHost.call) -----


def _create_and_start(client: docker.DockerClient, options: dict[str, Any]) -> str:
    try:
        container = client.containers.create(**options)
    except docker.errors.APIError as err:
        if err.status_code != 409:
            raise
        client.api.remove_container(options["name"], force=True)  # a leftover of a crashed kubelet
        container = client.containers.create(**options)
    container.start()
    return str(container.id)


def _stop(client: docker.DockerClient, container_id: str, grace: int) -> None:
    """SIGTERM (or the image's STOPSIGNAL), SIGKILL after `grace` seconds: `docker stop` does exactly that."""
    try:
        client.api.stop(container_id, timeout=grace)
    except docker.errors.NotFound:
        pass


def _kill(client: docker.DockerClient, container_id: str) -> None:
    try:
        client.api.kill(container_id)
    except docker.errors.APIError:
        pass


def _exec(client: docker.DockerClient, container_id: str, command: list[str]) -> int:
    exec_id = client.api.exec_create(container_id, command)["Id"]
    client.api.exec_start(exec_id)
    return int(client.api.exec_inspect(exec_id).get("ExitCode") or 0)


def remove_pod_containers(client: docker.DockerClient, uid: str) -> None:
    for summary in client.api.containers(all=True, filters={"label": f"{runtime.LABEL_POD_UID}={uid}"}):
        try:
            client.api.remove_container(summary["Id"], force=True)
        except docker.errors.NotFound:
            pass
