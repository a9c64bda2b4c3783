"""pipeline.kube against the real local cluster: API server, controllers and a kubelet running Docker containers.

One cluster per module (its own state dir and free port), isolated by
namespace per test. Images are the bootstrap's `pipeline-base:bookworm`
pushed to the local registry under a unique name and deployed by digest; the
worker is stood in for by small Python commands that keep (or break) the
sample worker's health contract. At the end the namespaces' containers are
removed by their kubelet label, so nothing outlives the module.
"""

from __future__ import annotations

import copy
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import kube, render
from pipeline.models import Manifests, RenderInput
from pipeline.references import build_id_of
from pipeline.render import to_yaml
from tests.helpers import unique_name
from tests.helpers.cluster import LocalCluster
from tests.helpers.kube import CRASHING_COMMAND, HEALTHY_COMMAND, NEVER_READY_COMMAND, push_base_image
from tests.helpers.render import sample_render_input, ungated

docker = pytest.importorskip("docker")

FIELD_MANAGER = kube.FIELD_MANAGER
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure means no engine
        pytest.skip(f"docker daemon unreachable ({err}); start it with `dockerd --bridge=none --iptables=false &`")
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("kube") / "state")
    local.start()
    try:
        yield local
    finally:
        try:
            with kube.connect(kubeconfig=str(local.kubeconfig)) as kc:
                for namespace in local.namespaces:
                    kube.delete_object(kc, api_version="v1", kind="Namespace", name=namespace)
        except kube.KubeError:
            pass
        local.stop()
        local.remove_containers()


@pytest.fixture(scope="module")
def image(docker_client: Any) -> Iterator[str]:
    """pipeline-base:bookworm pushed as 127.0.0.1:5000/<unique>:v1, by digest."""
    repository = f"127.0.0.1:5000/{unique_name('kube-test')}"
    try:
        ref = push_base_image(docker_client, repository=repository)
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"cannot push to the local registry ({err}); start it with `python -m bootstrap up`")
    yield ref
    try:
        docker_client.images.remove(f"{repository}:v1")
    except docker.errors.APIError:
        pass


@pytest.fixture
def kc(cluster: LocalCluster) -> Iterator[kube.KubeClient]:
    with kube.connect(kubeconfig=str(cluster.kubeconfig)) as client:
        yield client


def render_manifests(spec: RenderInput) -> Manifests:
    """The app's manifests without the readiness gate: these stand-in workers never poll Temporal."""
    return ungated(render.render_manifests(spec))


def app_input(cluster: LocalCluster, image: str, *, command: tuple[str, ...], **app: Any) -> RenderInput:
    """The sample app in a namespace of its own, running `command`; `app` overrides AppSpec fields."""
    namespace = unique_name("kt")
    cluster.namespaces.append(namespace)
    spec = sample_render_input(image=image)
    rollout = replace(spec.app.rollout, **app.pop("rollout", {}))
    settings: dict[str, Any] = {
        "namespace": namespace,
        "command": command,
        "termination_grace_period_seconds": 2,
        "rollout": rollout,
        "readiness_path": "/readyz",  # these stand-ins keep the sample worker's health contract, readiness included
    }
    return replace(spec, app=replace(spec.app, **(settings | app)), build_id=build_id_of(image))


def generation_of(applied: list[dict[str, Any]]) -> int:
    return int(next(o for o in applied if o["kind"] == "Deployment")["metadata"]["generation"])


def versions(applied: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    return {o["kind"]: (o["metadata"]["resourceVersion"], o["metadata"].get("generation", 0)) for o in applied}


def wait(kc: kube.KubeClient, spec: RenderInput, generation: int, *, timeout: float = 90.0, **kw: Any) -> kube.RolloutOutcome:
    kw.setdefault("on_progress", lambda progress: None)
    kw.setdefault("cancelled", lambda: False)
    return kube.wait_for_rollout(
        kc, namespace=spec.app.namespace, name=spec.app.name, generation=generation, timeout=timeout, **kw
    )


# ----- a healthy rollout, applied once and shared by the tests below -----


@dataclass
class Deployed:
    spec: RenderInput
    applied: list[dict[str, Any]]
    outcome: kube.RolloutOutcome
    progress: list[kube.RolloutProgress]


@pytest.fixture(scope="module")
def deployed(cluster: LocalCluster, image: str) -> Deployed:
    spec = app_input(cluster, image, command=HEALTHY_COMMAND)
    progress: list[kube.RolloutProgress] = []
    with kube.connect(kubeconfig=str(cluster.kubeconfig)) as kc:
        applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
        try:
            outcome = wait(kc, spec, generation_of(applied), on_progress=progress.append)
        except kube.RolloutFailed as failed:
            pytest.fail(f"{failed.message}\n{pod_logs(kc, spec)}")
    return Deployed(spec, applied, outcome, progress)


def pod_logs(kc: kube.KubeClient, spec: RenderInput) -> str:
    """Every pod's current and previous log, for failure messages."""
    out = []
    for pod in kube.list_pods(kc, namespace=spec.app.namespace, selector={"app.kubernetes.io/name": spec.app.name}):
        for previous in (False, True):
            try:
                text = kube.pod_logs(kc, namespace=spec.app.namespace, name=pod.name, previous=previous)
            except kube.KubeError as err:
                text = err.message
            out.append(f"--- {pod.name} (previous={previous}, ip {pod.pod_ip}):\n{text}")
    return "\n".join(out)


def test_rollout_succeeds_with_progress(deployed: Deployed, kc: kube.KubeClient) -> None:
    outcome, spec = deployed.outcome, deployed.spec
    assert outcome.replicas == outcome.updated_replicas == outcome.available_replicas == spec.app.replicas == 2
    assert outcome.replica_set == f"{spec.app.name}-{outcome.pod_template_hash}"
    assert outcome.revision == "1"
    assert len(outcome.pods) == 2 and all(p.startswith(outcome.replica_set + "-") for p in outcome.pods)
    pods = kube.list_pods(kc, namespace=spec.app.namespace, selector={"app.kubernetes.io/name": spec.app.name})
    assert sorted(p.name for p in pods if p.ready and not p.terminating) == outcome.pods
    assert all(p.pod_template_hash == outcome.pod_template_hash and p.pod_ip.startswith("127.") for p in pods)
    assert len(deployed.progress) >= 2
    assert deployed.progress[-1].message.startswith("successfully rolled out")
    assert deployed.progress[-1].new_replica_set == outcome.replica_set
    rs = kube.replica_sets_of(kc, namespace=spec.app.namespace, deployment=spec.app.name)
    assert [(r.name, r.revision, r.ready_replicas) for r in rs] == [(outcome.replica_set, "1", 2)]


def test_reapply_is_idempotent(deployed: Deployed, kc: kube.KubeClient) -> None:
    objects = render_manifests(deployed.spec).objects
    first = kube.server_side_apply(kc, objects, field_manager=FIELD_MANAGER)
    second = kube.server_side_apply(kc, objects, field_manager=FIELD_MANAGER)
    assert versions(first) == versions(second)
    assert generation_of(second) == generation_of(deployed.applied)
    managers = {m["manager"] for m in second[-1]["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {FIELD_MANAGER}


def test_dry_run_diff_shows_a_replicas_change_and_stores_nothing(deployed: Deployed, kc: kube.KubeClient) -> None:
    spec = deployed.spec
    before = kube.get_deployment(kc, namespace=spec.app.namespace, name=spec.app.name)
    assert before is not None
    scaled = replace(spec, app=replace(spec.app, replicas=3))
    changes = kube.diff_for_dry_run(kc, render_manifests(scaled).objects, field_manager=FIELD_MANAGER)
    assert [(c.kind, c.action) for c in changes] == [
        ("Namespace", "unchanged"),
        ("ServiceAccount", "unchanged"),
        ("ConfigMap", "unchanged"),
        ("Deployment", "changed"),
    ]
    diff = changes[-1].diff
    assert "-  replicas: 2\n" in diff and "+  replicas: 3\n" in diff, diff
    assert [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-  replicas: 2",
        "+  replicas: 3",
    ]
    after = kube.get_deployment(kc, namespace=spec.app.namespace, name=spec.app.name)
    assert after is not None
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_dry_run_of_a_new_app_reports_everything_created(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    spec = app_input(cluster, image, command=HEALTHY_COMMAND)
    changes = kube.diff_for_dry_run(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    assert [c.action for c in changes] == ["created"] * 4
    assert "+kind: Deployment" in changes[-1].diff
    assert kube.get_object(kc, api_version="v1", kind="Namespace", name=spec.app.namespace) is None


def test_configmap_reads_back(deployed: Deployed, kc: kube.KubeClient) -> None:
    data = kube.get_configmap(kc, namespace=deployed.spec.app.namespace, name=f"{deployed.spec.app.name}-temporal")
    assert data is not None and data["TEMPORAL_TASK_QUEUE"] == deployed.spec.app.task_queue
    assert kube.get_configmap(kc, namespace=deployed.spec.app.namespace, name="absent") is None


def test_kubectl_accepts_the_rendered_yaml(cluster: LocalCluster, image: str) -> None:
    spec = app_input(cluster, image, command=HEALTHY_COMMAND)
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "apply", "--dry-run=client", "-f", "-"],
        input=to_yaml(render_manifests(spec)),
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, KUBECACHEDIR=str(cluster.state_dir.parent / "kubecache")),
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/sample-worker created (dry run)" in result.stdout


# ----- failing fast -----


def test_crash_looping_pods_fail_fast(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    spec = app_input(cluster, image, command=CRASHING_COMMAND)
    assert spec.app.rollout.progress_deadline_seconds == 120
    applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    started = time.monotonic()
    with pytest.raises(kube.RolloutFailed) as caught:
        wait(kc, spec, generation_of(applied), timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"took {elapsed:.1f}s"
    assert caught.value.reason in ("CrashLoopBackOff", "ContainerCrashing")
    assert "boom: no TEMPORAL_ADDRESS" in pod_logs(kc, spec)
    assert not caught.value.retryable
    assert f"Deployment {spec.app.namespace}/sample-worker: pod sample-worker-" in caught.value.message
    assert "logs" in caught.value.message and "--previous" in caught.value.message


def test_an_unpullable_image_fails_fast(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    missing = image.split("@")[0] + "-missing@sha256:" + "0" * 64
    spec = replace(app_input(cluster, image, command=HEALTHY_COMMAND), image=missing)
    applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    started = time.monotonic()
    with pytest.raises(kube.RolloutFailed) as caught:
        wait(kc, spec, generation_of(applied), timeout=60)
    assert time.monotonic() - started < 20
    assert caught.value.reason in ("ErrImagePull", "ImagePullBackOff")
    assert missing in caught.value.message


def test_progress_deadline_exceeded(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    spec = app_input(cluster, image, command=NEVER_READY_COMMAND, rollout={"progress_deadline_seconds": 5})
    applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    progress: list[kube.RolloutProgress] = []
    with pytest.raises(kube.RolloutFailed) as caught:
        wait(kc, spec, generation_of(applied), timeout=60, on_progress=progress.append)
    assert caught.value.reason == "ProgressDeadlineExceeded", caught.value.message
    assert progress and progress[-1].ready == 0


def test_a_failing_readiness_probe_fails_the_rollout_naming_the_probe_and_its_error(
    cluster: LocalCluster, image: str, kc: kube.KubeClient
) -> None:
    """Containers running `unready_seconds` without passing their readiness probe: the probe's last error, from the
    pod's Unhealthy events, and the hint; no wait for the progress deadline."""
    spec = app_input(cluster, image, command=NEVER_READY_COMMAND)  # /readyz answers 404
    applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    with pytest.raises(kube.RolloutFailed) as caught:
        wait(kc, spec, generation_of(applied), timeout=60, unready_seconds=3)
    assert caught.value.reason == "ReadinessProbeFailed", caught.value.message
    message = caught.value.message
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in message, message
    assert "remove health_port" in message and not caught.value.not_polling, message


def test_a_gated_pod_that_never_polls_fails_the_rollout_naming_its_queue(
    cluster: LocalCluster, image: str, kc: kube.KubeClient
) -> None:
    """The readiness gate kept (this stand-in never polls Temporal): NotPolling, with the queue it should poll."""
    spec = app_input(cluster, image, command=HEALTHY_COMMAND)
    applied = kube.server_side_apply(kc, render.render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    with pytest.raises(kube.RolloutFailed) as caught:
        wait(kc, spec, generation_of(applied), timeout=60, unready_seconds=3)
    assert caught.value.reason == "NotPolling", caught.value.message
    assert f"as a poller of task queue '{spec.app.task_queue}' (workflow,activity)" in caught.value.message
    assert caught.value.not_polling and all(p.startswith(spec.app.name) for p in caught.value.not_polling)


def test_timeout_and_cancellation_are_prompt(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    spec = app_input(cluster, image, command=NEVER_READY_COMMAND)
    applied = kube.server_side_apply(kc, render_manifests(spec).objects, field_manager=FIELD_MANAGER)
    started = time.monotonic()
    with pytest.raises(kube.RolloutTimedOut, match="did not finish within 3s"):
        wait(kc, spec, generation_of(applied), timeout=3)
    assert time.monotonic() - started < 7
    calls = iter(range(100))
    started = time.monotonic()
    with pytest.raises(kube.RolloutCancelled):
        wait(kc, spec, generation_of(applied), timeout=60, cancelled=lambda: next(calls) >= 2)
    assert time.monotonic() - started < 7


# ----- errors, translated -----


def test_a_bad_token_is_unauthorized(cluster: LocalCluster, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    with kube.connect(kubeconfig=str(bad)) as kc:
        with pytest.raises(kube.KubeUnauthorized) as caught:
            kube.get_deployment(kc, namespace="default", name="sample-worker")
    assert caught.value.status == 401 and not caught.value.retryable
    assert caught.value.message.startswith("Deployment default/sample-worker: 401")
    assert "credentials" in caught.value.message


def test_an_unreachable_server_is_unavailable_and_retryable(cluster: LocalCluster, tmp_path: Path) -> None:
    from tests.helpers.processes import free_port

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    with kube.connect(kubeconfig=str(dead)) as kc:
        kc.api.configuration.retries = 0
        with pytest.raises(kube.KubeUnavailable) as caught:
            kube.get_configmap(kc, namespace="default", name="x")
    assert caught.value.retryable and caught.value.status is None
    assert caught.value.message.startswith("ConfigMap default/x: cannot reach the API server")


def test_kubeconfig_problems(cluster: LocalCluster, tmp_path: Path) -> None:
    with pytest.raises(kube.KubeConfigError, match="no such file"):
        kube.connect(kubeconfig=str(tmp_path / "absent"))
    garbage = tmp_path / "garbage"
    garbage.write_text("a: [b\n")
    with pytest.raises(kube.KubeConfigError, match="unusable"):
        kube.connect(kubeconfig=str(garbage))
    with pytest.raises(kube.KubeConfigError, match="context nope"):
        kube.connect(kubeconfig=str(cluster.kubeconfig), context="nope")
    assert len(kube.KubeConfigError("x").lines()) == 1


def test_not_found(kc: kube.KubeClient) -> None:
    assert kube.get_deployment(kc, namespace="default", name=unique_name("absent")) is None
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": unique_name("no-such-ns")}}
    with pytest.raises(kube.KubeNotFound) as caught:
        kube.server_side_apply(kc, [cm], field_manager=FIELD_MANAGER)
    assert caught.value.status == 404
    assert caught.value.message.startswith(f"ConfigMap {cm['metadata']['namespace']}/x: 404 NotFound")  # type: ignore[index]
    with pytest.raises(kube.RolloutFailed, match="not found"):
        kube.wait_for_rollout(
            kc, namespace="default", name="absent", generation=1, timeout=5, on_progress=print, cancelled=lambda: False
        )


def test_conflict_without_force(deployed: Deployed, kc: kube.KubeClient) -> None:
    spec = deployed.spec
    cm: dict[str, Any] = copy.deepcopy(render_manifests(spec).objects[2])
    cm["data"]["TEMPORAL_TASK_QUEUE"] = "someone-elses"
    with pytest.raises(kube.KubeConflict) as caught:
        kube.server_side_apply(kc, [cm], field_manager="another-manager", force=False)
    assert caught.value.status == 409 and not caught.value.retryable
    assert caught.value.message.startswith(f"ConfigMap {spec.app.namespace}/sample-worker-temporal: 409 Conflict")
    data = kube.get_configmap(kc, namespace=spec.app.namespace, name="sample-worker-temporal")
    assert data is not None and data["TEMPORAL_TASK_QUEUE"] == spec.app.task_queue


def test_invalid_objects(deployed: Deployed, kc: kube.KubeClient) -> None:
    dep: dict[str, Any] = copy.deepcopy(render_manifests(deployed.spec).objects[3])
    dep["metadata"]["name"] = "broken"
    dep["spec"]["template"]["metadata"]["labels"] = {"other": "labels"}  # does not match the selector
    with pytest.raises(kube.KubeInvalid) as caught:
        kube.server_side_apply(kc, [dep], field_manager=FIELD_MANAGER)
    assert caught.value.status == 422
    assert caught.value.message.startswith(f"Deployment {deployed.spec.app.namespace}/broken: 422 Invalid")
    with pytest.raises(kube.KubeInvalid, match="cannot apply that kind"):
        kube.server_side_apply(kc, [{"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}}], field_manager="x")


def test_a_rolling_update_replaces_every_old_pod(cluster: LocalCluster, image: str, kc: kube.KubeClient) -> None:
    v1 = app_input(cluster, image, command=HEALTHY_COMMAND)
    first = wait(kc, v1, generation_of(kube.server_side_apply(kc, render_manifests(v1).objects, field_manager=FIELD_MANAGER)))
    v2 = replace(v1, build_id="v2")
    applied = kube.server_side_apply(kc, render_manifests(v2).objects, field_manager=FIELD_MANAGER)
    assert generation_of(applied) == 2
    progress: list[kube.RolloutProgress] = []
    second = wait(kc, v2, 2, on_progress=progress.append)
    assert second.revision == "2" and second.replica_set != first.replica_set
    assert set(second.pods).isdisjoint(first.pods)
    # progress was reported mid-way, and maxUnavailable 0 kept two workers available throughout
    assert any(p.new_replica_set == second.replica_set and p.updated < 2 for p in progress), progress
    assert all(p.available >= 2 for p in progress if p.new_replica_set == second.replica_set), progress
    pods = kube.list_pods(kc, namespace=v1.app.namespace, selector={"app.kubernetes.io/name": v1.app.name})
    assert [p.name for p in pods if not p.terminating] == second.pods
    assert all(p.pod_template_hash == first.pod_template_hash for p in pods if p.terminating)
    rs = kube.replica_sets_of(kc, namespace=v1.app.namespace, deployment=v1.app.name)
    assert [(r.name, r.revision) for r in rs] == [(second.replica_set, "2"), (first.replica_set, "1")]


def test_containers_are_labelled_for_cleanup(cluster: LocalCluster, deployed: Deployed, docker_client: Any) -> None:
    """The module's teardown removes containers by this label; make sure the kubelet still sets it."""
    found = docker_client.api.containers(filters={"label": f"io.kubernetes.pod.namespace={deployed.spec.app.namespace}"})
    assert len(found) >= 2
