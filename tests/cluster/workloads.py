"""Fixtures for the workload tests: a Store plus the controllers and a kubelet, in-process, with real Docker.

Every test gets its own store and its own node name; the node name is a label
on every container the kubelet creates, so the finalizer removes exactly this
test's containers. Import the fixtures into a test module with
`from tests.cluster.workloads import *  # noqa: F403`-style explicit imports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest
import pytest_asyncio

from bootstrap.cluster.controllers import DeploymentController, GarbageCollector, ReplicaSetController
from bootstrap.cluster.events import EventRecorder
from bootstrap.cluster.kubelet import Kubelet
from bootstrap.cluster.kubelet.runtime import LABEL_NODE
from bootstrap.cluster.resources import DEPLOYMENTS, EVENTS, PODS, REPLICASETS
from bootstrap.cluster.store import Obj, Store

BASE_IMAGE = "pipeline-base:bookworm"
REGISTRY = "127.0.0.1:5000"
T = TypeVar("T")


@dataclass
class LocalCluster:
    """The store and the workload components of one test, restartable on the same store."""

    store: Store
    docker: docker.DockerClient
    node_name: str
    state_dir: Path
    pod_network: ipaddress.IPv4Network
    kubelet: Kubelet | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        events = EventRecorder(self.store)
        self.kubelet = Kubelet(
            self.store,
            node_name=self.node_name,
            docker=self.docker,
            state_dir=self.state_dir,
            events=events,
            pod_network=self.pod_network,
        )
        components = [
            DeploymentController(self.store, events=events).run(),
            ReplicaSetController(self.store, events=events).run(),
            GarbageCollector(self.store).run(),
            self.kubelet.run(),
        ]
        self.tasks = [asyncio.ensure_future(c) for c in components]
        await asyncio.sleep(0.05)
        for task in self.tasks:
            if task.done():
                task.result()

    async def stop(self) -> None:
        """Stop the components as a process stop would: containers keep running."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    def containers(self, *, all: bool = True) -> list[Any]:
        return list(self.docker.containers.list(all=all, filters={"label": f"{LABEL_NODE}={self.node_name}"}))

    # ----- reads -----

    def deployment(self, name: str, namespace: str = "default") -> Obj:
        return self.store.get(DEPLOYMENTS, namespace, name)

    def replica_sets(self, app: str, namespace: str = "default") -> list[Obj]:
        return [rs for rs in self.store.list(REPLICASETS, namespace) if (rs["metadata"].get("labels") or {}).get("app") == app]

    def pods(self, app: str, namespace: str = "default") -> list[Obj]:
        return [p for p in self.store.list(PODS, namespace) if (p["metadata"].get("labels") or {}).get("app") == app]

    def events_for(self, obj: Obj) -> list[Obj]:
        uid = obj["metadata"]["uid"]
        return [e for e in self.store.list(EVENTS) if e["involvedObject"].get("uid") == uid]

    def container_status(self, pod_name: str, namespace: str = "default") -> Obj:
        pod = self.store.get(PODS, namespace, pod_name)
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return dict(statuses[0])


async def wait_for(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` (a test-side read of the store) until it returns something truthy without asserting."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, LookupError, ValueError, TypeError) as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s (last error: {last!r})")
        await asyncio.sleep(0.05)


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def condition(obj: Obj, cond_type: str) -> Obj:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == cond_type:
            return dict(cond)
    return {}


def rollout_complete(d: Obj) -> bool:
    """`kubectl rollout status`'s success test."""
    status = d.get("status") or {}
    want = d["spec"].get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
    )


def web_container(*, name: str = "web", port: int = 8080, env: list[Obj] | None = None) -> Obj:
    """A container serving HTTP on its pod IP, ready when it answers."""
    return {
        "name": name,
        "image": BASE_IMAGE,
        "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", str(port)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *(env or [])],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 1},
    }


def deployment(name: str, *, replicas: int = 3, containers: list[Obj] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers or [web_container()], "terminationGracePeriodSeconds": 1},
            },
            **spec,
        },
    }


def pod(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 1, **spec},
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        client.ping()
        client.images.get(BASE_IMAGE)
    except docker.errors.DockerException as err:
        pytest.skip(f"docker or {BASE_IMAGE} unavailable: {err}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry_image(docker_engine: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """The base image pushed to the local registry: (tagged reference, digest reference)."""
    repo = f"{REGISTRY}/{unique('workloads')}"
    docker_engine.images.get(BASE_IMAGE).tag(repo, tag="v1")
    docker_engine.images.push(repo, tag="v1")
    digests = docker_engine.images.get_registry_data(f"{repo}:v1").id
    yield f"{repo}:v1", f"{repo}@{digests}"
    for ref in (f"{repo}:v1",):
        try:
            docker_engine.images.remove(ref, force=True)
        except docker.errors.APIError:
            pass


@pytest_asyncio.fixture
async def local(docker_engine: docker.DockerClient, tmp_path: Path) -> AsyncIterator[LocalCluster]:
    # A /24 of its own in 127.2.0.0/16, so tests never collide with a running quick-start cluster (127.1.0.0/16).
    network = ipaddress.IPv4Network(f"127.2.{random.randrange(256)}.0/24")
    cluster = LocalCluster(Store(None), docker_engine, unique("node"), tmp_path / "kubelet", network)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()
        for container in cluster.containers():
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
