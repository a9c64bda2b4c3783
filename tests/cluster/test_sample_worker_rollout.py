"""A rolling update of the real sample worker never leaves its task queue without a live poller.

This is the pipeline's central promise, checked end to end: the sample worker
image built from the repo's Dockerfile (two versions, pushed to the local
registry and deployed by digest), manifests from `pipeline.render`, applied
with `pipeline.kube.server_side_apply` to the session's workload cluster, and
Temporal's own view of the task queue (`DescribeTaskQueue`) sampled every
~100 ms while v1 is replaced by v2 with maxSurge 1 / maxUnavailable 0.

Temporal keeps listing a poller for a while after its process stopped, so a
listed poller only counts when the pod its identity names (`<pod>@<build id>`)
is Running and not terminating in the cluster, and the poller was seen after
that pod started (the sampler and the order stream are tests/helpers/zero_downtime.py,
shared with the rollback test in tests/faults). Orders are started throughout
the rollout and must all complete: no work is lost while pods are replaced.
The rendered pods carry the pipeline's readiness gate, so the test runs the
pipeline worker's gate controller (`pipeline.readiness.PollingGate`), which
makes each pod Ready once Temporal lists it polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest
from temporalio.client import Client

from pipeline.kube.apply import server_side_apply
from pipeline.kube.client import KubeClient, connect
from pipeline.models import AppSpec, Poller, RenderInput, ResourceSpec, RolloutSpec, TemporalTarget
from pipeline.readiness import PollingGate
from pipeline.references import build_id_of
from pipeline.render import render_manifests, selector_labels
from pipeline.verify import describe_pollers
from sample_worker.workflows import OrderResult
from tests.cluster.workloads import BASE_IMAGE, REGISTRY, docker_engine, unique
from tests.helpers import REPO_ROOT
from tests.helpers.cluster import ClusterProcess
from tests.helpers.images import ensure_wheelhouse
from tests.helpers.zero_downtime import OrderStream, Pods, live_pollers, sample_pollers

__all__ = ["docker_engine"]  # session fixture used by name

FIELD_MANAGER = "sample-worker-rollout-test"


@dataclass(frozen=True)
class WorkerImages:
    """The two pushed versions of the sample worker, by digest."""

    v1: str
    v2: str


@pytest.fixture(scope="module")
def worker_images(docker_engine: docker.DockerClient) -> Iterator[WorkerImages]:
    """Build the sample worker twice (VERSION v1/v2: different image configs, so different digests) and push both."""
    ensure_wheelhouse()
    repo = f"{REGISTRY}/{unique('sample-worker-rollout')}"
    refs: dict[str, str] = {}
    for version in ("v1", "v2"):
        docker_engine.images.build(
            path=str(REPO_ROOT),
            target="sample-worker",
            tag=f"{repo}:{version}",
            buildargs={"BASE_IMAGE": BASE_IMAGE, "VERSION": version},
            rm=True,
            forcerm=True,
        )
        docker_engine.images.push(repo, tag=version)
        refs[version] = f"{repo}@{docker_engine.images.get_registry_data(f'{repo}:{version}').id}"
    assert refs["v1"] != refs["v2"]
    try:
        yield WorkerImages(v1=refs["v1"], v2=refs["v2"])
    finally:
        for version in ("v1", "v2"):
            try:
                docker_engine.images.remove(f"{repo}:{version}", force=True)
            except docker.errors.APIError:
                pass


def app_spec(name: str, task_queue: str) -> AppSpec:
    return AppSpec(
        name=name,
        namespace=name,
        task_queue=task_queue,
        replicas=3,
        resources=ResourceSpec(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi"),
        rollout=RolloutSpec(
            progress_deadline_seconds=120, max_surge=1, max_unavailable=0, verification_timeout_seconds=60, auto_rollback=False
        ),
        health_port=8080,
        # SHUTDOWN_GRACE_SECONDS = 5: old workers finish in-flight work, then exit well before SIGKILL.
        termination_grace_period_seconds=10,
    )


def list_pods(kc: KubeClient, app: AppSpec) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in selector_labels(app).items())
    answer = kc.request(
        method="GET",
        path=f"/api/v1/namespaces/{app.namespace}/pods",
        what=f"pods of {app.name}",
        query=[("labelSelector", selector)],
    )
    return list(answer["items"])


def rolled_out(kc: KubeClient, app: AppSpec) -> bool:
    d = kc.request(method="GET", path=f"/apis/apps/v1/namespaces/{app.namespace}/deployments/{app.name}", what=app.name)
    s = d.get("status") or {}
    return (
        s.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and s.get("updatedReplicas") == s.get("replicas") == s.get("availableReplicas") == app.replicas
    )


def namespace_containers(engine: docker.DockerClient, cluster: ClusterProcess, namespace: str) -> list[Any]:
    """The session cluster's containers for pods of `namespace` (by the kubelet's labels)."""
    labels = [f"bootstrap.cluster/cluster-id={cluster.cluster_id}", f"io.kubernetes.pod.namespace={namespace}"]
    # sparse: no per-container inspect, which races with the kubelet removing containers
    return list(engine.containers.list(all=True, filters={"label": labels}, sparse=True))


async def test_rolling_update_keeps_a_live_poller(
    workload_cluster: ClusterProcess,
    worker_images: WorkerImages,
    client: Client,
    temporal_address: str,
    docker_engine: docker.DockerClient,
) -> None:
    name, task_queue = unique("sw-roll"), unique("tq-roll")
    app = app_spec(name, task_queue)
    temporal = TemporalTarget(address=temporal_address, namespace="default")
    builds = {v: build_id_of(ref) for v, ref in (("v1", worker_images.v1), ("v2", worker_images.v2))}
    kc = connect(kubeconfig=str(workload_cluster.kubeconfig))

    async def apply(version: str, image: str) -> None:
        manifests = render_manifests(RenderInput(app=app, temporal=temporal, image=image, build_id=builds[version]))
        await asyncio.to_thread(server_side_apply, kc, manifests.objects, field_manager=FIELD_MANAGER)

    async def wait_until(check: Any, *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(check):
            assert time.monotonic() < deadline, f"{what} not reached within {timeout:.0f}s: {list_pods(kc, app)}"
            await asyncio.sleep(0.2)

    # The pods carry the pipeline's readiness gate (Ready only once Temporal lists them polling): the
    # pipeline worker's controller sets it, as it would on AKS.
    gate = PollingGate(client, connect=lambda: connect(kubeconfig=str(workload_cluster.kubeconfig)), namespace=app.namespace)
    try:
        async with gate:
            await apply("v1", worker_images.v1)
            await wait_until(lambda: rolled_out(kc, app), timeout=60, what="v1 available")

            async def three_v1_pollers() -> bool:
                pods, pollers = await asyncio.gather(
                    asyncio.to_thread(list_pods, kc, app), describe_pollers(client, namespace="default", task_queue=task_queue)
                )
                return len(live_pollers(pods, pollers)) == 3

            deadline = time.monotonic() + 30
            while not await three_v1_pollers():
                assert time.monotonic() < deadline, "the three v1 pods never all polled"
                await asyncio.sleep(0.2)

            async def v2_everywhere(pods: Pods, pollers: list[Poller]) -> bool:
                """All 3 pods poll both queues with v2 (a new worker's activity poller may lag its workflow one)."""
                live, activity_live = live_pollers(pods, pollers), live_pollers(pods, pollers, "activity")
                v2_live = [
                    pod
                    for pod, p in live.items()
                    if p.build_id == builds["v2"] and pod in activity_live and activity_live[pod].build_id == builds["v2"]
                ]
                return len(pods) == 3 and len(v2_live) == 3 and await asyncio.to_thread(rolled_out, kc, app)

            orders = OrderStream(client, task_queue)  # one order every ~250 ms for as long as the rollout runs
            orders.start()
            await apply("v2", worker_images.v2)
            try:
                sampling = await sample_pollers(
                    client,
                    task_queue=task_queue,
                    list_pods=lambda: list_pods(kc, app),
                    done=v2_everywhere,
                    timeout=90,
                    what="v2 rolled out",
                )
            finally:
                await orders.stop()

            print(f"{sampling.summary()}; {len(orders.handles)} orders started while rolling")
            sampling.assert_always_live()  # and at least 20 samples: the rollout was really watched, not just its end

            # The sample that ended the loop: every pod of the Deployment now, and what Temporal listed at that moment.
            pods, pollers = sampling.pods, sampling.pollers
            for queue_type in ("workflow", "activity"):
                live = live_pollers(pods, pollers, queue_type)
                assert sorted(live) == sorted(p["metadata"]["name"] for p in pods), (queue_type, live)
                assert {p.build_id for p in live.values()} == {builds["v2"]}
                assert all(p.identity == f"{pod}@{builds['v2']}" for pod, p in live.items())
            assert {p["spec"]["containers"][0]["image"] for p in pods} == {worker_images.v2}

            assert len(orders.handles) >= 5, len(orders.handles)
            results = await orders.outcomes(timeout=60)
            assert all(isinstance(r, OrderResult) and r.tracking_id.startswith("trk-") for r in results), results
    finally:
        try:
            kc.request(method="DELETE", path=f"/api/v1/namespaces/{app.namespace}", what=f"namespace {app.namespace}")
            await wait_until(
                lambda: not namespace_containers(docker_engine, workload_cluster, app.namespace),
                timeout=30,
                what=f"containers of namespace {app.namespace} removed",
            )
        finally:
            kc.close()
