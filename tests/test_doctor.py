"""`pipeline doctor` against the local stack: one broken thing per test, and the healthy case.

The real CLI runs as a subprocess with a config of the test's own (tests/helpers/cli.py).
Each broken thing must give exactly its check's FAIL line, with every check before
it ok, and exit 1:

    Temporal stopped       [temporal].address is a port nothing listens on
    missing namespace      [temporal].namespace names one the dev server does not have
    registry stopped       [registry].address is a port nothing listens on
    crash-looping pod      a Deployment whose container prints a known line and exits 3:
                           the line must show under the pods check
    worker on wrong queue  the sample worker with TEMPORAL_TASK_QUEUE overridden in its
                           command to another app's queue: doctor must name the queue
                           it was seen on instead

and the healthy app (the sample worker polling its queue) gives ten ok lines, exit 0.

The apps run in a Kubernetes namespace of this module's own (deleted at the end),
from the sample worker image built from this checkout and pushed to the stack's
registry, with manifests from `pipeline.render` applied by server-side apply (no
deployment workflow). [pipeline].task_queue stays the stack's `deployments`, which
the stack's in-cluster pipeline worker polls.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from temporalio.client import Client

from pipeline import kube
from pipeline.config import load_config, to_toml
from pipeline.doctor import NAMES, crash_of
from pipeline.inputs import app_spec, temporal_target
from pipeline.models import RenderInput
from pipeline.references import build_id_of
from pipeline.render import render_manifests
from pipeline.verify import describe_pollers, identity_names_pod
from tests.e2e.support import KUBECONFIG, REGISTRY, SHIPPED_CONFIG, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, UI_URL
from tests.helpers import REPO_ROOT, eventually, poll_until
from tests.helpers.cli import clean_env, run
from tests.helpers.images import BASE_IMAGE, ensure_wheelhouse
from tests.helpers.processes import free_port

pytestmark = pytest.mark.e2e

FIELD_MANAGER = "doctor-test"
SUFFIX = uuid.uuid4().hex[:6]
NAMESPACE = f"doctor-{SUFFIX}"
HEALTHY = f"doctor-ok-{SUFFIX}"
CRASHING = f"doctor-crash-{SUFFIX}"
WRONG_QUEUE = f"doctor-wrongq-{SUFFIX}"
ELSEWHERE = f"elsewhere-{SUFFIX}"
CRASH_LINE = f"doctor-crash-marker-{SUFFIX}: cannot start"
COMMANDS: dict[str, tuple[str, ...]] = {
    HEALTHY: (),
    CRASHING: ("sh", "-c", f"echo '{CRASH_LINE}'; exit 3"),
    WRONG_QUEUE: ("sh", "-c", f"TEMPORAL_TASK_QUEUE={ELSEWHERE} exec python -m sample_worker"),
}


@dataclass(frozen=True)
class Apps:
    """The module's apps, running in NAMESPACE, and where their configs go."""

    directory: Path
    image: str

    def config(self, app: str, *, also: dict[str, str] | None = None, **sections: dict[str, Any]) -> Path:
        """The shipped config.toml with only `app` (polling `<app>-q`), pointed at the stack and NAMESPACE.

        `also`: more apps (name: task queue), never deployed; `sections` override values of those tables.
        """
        data = tomllib.loads(SHIPPED_CONFIG.read_text())
        shipped = data["apps"][data["pipeline"]["default_app"]]
        spec = dict(shipped, task_queue=f"{app}-q", replicas=1, build_context=str(REPO_ROOT), dockerfile="Dockerfile")
        spec["command"] = list(COMMANDS.get(app, ()))
        data["apps"] = {app: spec} | {name: dict(spec, task_queue=queue, command=[]) for name, queue in (also or {}).items()}
        data["pipeline"].update(task_queue="deployments", default_app=app)
        data["kubernetes"].update(namespace=NAMESPACE, kubeconfig=str(KUBECONFIG))
        data["temporal"].update(address=TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE, ui_url=UI_URL)
        data["registry"].update(address=REGISTRY)
        for section, values in sections.items():
            data[section].update(values)
        path = self.directory / f"{app}-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(to_toml(data))
        return path


def doctor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(config.parent, "--config", str(config), "doctor", *args, env=clean_env())
    print(f"$ pipeline doctor  # exit {result.returncode}\n{result.stdout}{result.stderr}")
    assert "Traceback" not in result.stdout + result.stderr
    return result


def check_lines(output: str) -> list[str]:
    """The check lines (not their indented extra lines), one per check, in order."""
    heads = [line for line in output.splitlines() if not line.startswith(" ")]
    assert [h[6:].split("  ", 1)[0] for h in heads] == list(NAMES), output
    return heads


def expect_fail(result: subprocess.CompletedProcess[str], name: str, line: str) -> None:
    """Exactly `line` for check `name`, every check before it ok, exit 1."""
    heads = check_lines(result.stdout)
    index = NAMES.index(name)
    assert all(h.startswith("ok    ") for h in heads[:index]), result.stdout
    assert heads[index] == line, f"expected:\n{line}\ngot:\n{heads[index]}"
    assert result.returncode == 1, result.stdout + result.stderr


def pods_of(app: str) -> list[kube.PodInfo]:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        return [p for p in kube.list_pods(kc, namespace=NAMESPACE, selector={"app.kubernetes.io/name": app}) if not p.terminating]


def running_pod(app: str) -> kube.PodInfo:
    def one() -> kube.PodInfo | None:
        pods = [p for p in pods_of(app) if p.phase == "Running"]
        return pods[0] if len(pods) == 1 else None

    return poll_until(one, timeout=40, interval=0.3, what=f"a running pod of {app}")


@pytest.fixture(scope="module")
def apps(stack: None) -> Iterator[Apps]:
    """The sample worker image built and pushed; the healthy, crashing and wrong-queue apps applied; the namespace deleted after."""
    ensure_wheelhouse()
    engine = docker.from_env()
    repository = f"{REGISTRY}/doctor-sample-{SUFFIX}"
    engine.images.build(
        path=str(REPO_ROOT),
        target="sample-worker",
        tag=f"{repository}:v1",
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        rm=True,
        forcerm=True,
    )
    engine.images.push(repository, tag="v1")
    image = f"{repository}@{engine.images.get_registry_data(f'{repository}:v1').id}"
    made = Apps(directory=Path(tempfile.mkdtemp(prefix=f"{NAMESPACE}-")), image=image)
    try:
        with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
            for app in COMMANDS:
                config = load_config(made.config(app), env={})
                manifests = render_manifests(
                    RenderInput(
                        app=app_spec(config, config.app(None)),
                        temporal=temporal_target(config),
                        image=image,
                        build_id=build_id_of(image),
                    )
                )
                kube.server_side_apply(kc, manifests.objects, field_manager=FIELD_MANAGER)
        yield made
    finally:
        with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
            kube.delete_object(kc, api_version="v1", kind="Namespace", name=NAMESPACE)
        try:
            engine.images.remove(f"{repository}:v1", force=True)
        except docker.errors.DockerException:
            pass
        engine.close()


def test_temporal_stopped(apps: Apps) -> None:
    port = free_port()
    result = doctor(apps.config(HEALTHY, temporal={"address": f"127.0.0.1:{port}"}))
    expect_fail(
        result,
        "temporal",
        f"FAIL  temporal         127.0.0.1:{port}: connection refused — fix: start the local stack (`bootstrap/stack up`), "
        "or point TEMPORAL_ADDRESS / [temporal].address at a running Temporal",
    )


def test_missing_namespace(apps: Apps) -> None:
    missing = f"doctor-missing-{SUFFIX}"
    result = doctor(apps.config(HEALTHY, temporal={"namespace": missing}))
    expect_fail(
        result,
        "namespace",
        f"FAIL  namespace        {missing} does not exist on {TEMPORAL_ADDRESS} — fix: "
        f"`temporal operator namespace create -n {missing} --address {TEMPORAL_ADDRESS}`, or set TEMPORAL_NAMESPACE / "
        "[temporal].namespace to an existing namespace (`temporal operator namespace list`)",
    )


def test_registry_stopped(apps: Apps) -> None:
    port = free_port()
    result = doctor(apps.config(HEALTHY, registry={"address": f"127.0.0.1:{port}"}))
    expect_fail(
        result,
        "registry",
        f"FAIL  registry         http://127.0.0.1:{port}/v2/: connection refused — fix: start the local registry "
        "(`bootstrap/stack up`), or point [registry].address (PIPELINE__REGISTRY__ADDRESS) at a running one",
    )


def test_crash_looping_pod(apps: Apps) -> None:
    def crashed() -> kube.PodInfo | None:
        pods = pods_of(CRASHING)
        return pods[0] if len(pods) == 1 and crash_of(pods[0]) else None

    pod = poll_until(crashed, timeout=40, interval=0.3, what=f"{CRASHING}'s pod crashing")
    result = doctor(apps.config(CRASHING))
    heads = check_lines(result.stdout)
    line = heads[NAMES.index("pods")]
    fix = (
        f" — fix: read why below (`kubectl logs -n {NAMESPACE} <pod> --previous`), fix the worker and "
        f"`pipeline deploy --app {CRASHING}`; `pipeline rollback {CRASHING}` restores the last verified revision"
    )
    # Restarts and the Ready condition's reason move on while it crash-loops: only they are matched loosely.
    pattern = (
        rf"FAIL  pods             1 pod \(1 Running\), ready 0/1 \(not ready: {pod.name}: \w+\), restarts \d+; "
        rf"crashing: {pod.name}{re.escape(fix)}"
    )
    assert re.fullmatch(pattern, line), line
    expect_fail(result, "pods", line)
    assert f"\n      {pod.name}: container worker " in result.stdout, result.stdout
    assert f"\n        | {CRASH_LINE}\n" in result.stdout, result.stdout


async def test_worker_on_the_wrong_queue(apps: Apps, stack_client: Client) -> None:
    pod = running_pod(WRONG_QUEUE)

    async def seen_elsewhere() -> None:
        pollers = await describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=ELSEWHERE)
        assert {p.task_queue_type for p in pollers if identity_names_pod(p.identity, pod.name)} == {"workflow", "activity"}

    await eventually(seen_elsewhere, timeout=40, what=f"{pod.name} polling {ELSEWHERE!r}")
    # The queue it polls is another app's: doctor asks Temporal about every app's queue (ListWorkers, which
    # would find any queue, lists a new worker only after its first heartbeat, up to a minute later).
    result = doctor(apps.config(WRONG_QUEUE, also={f"doctor-other-{SUFFIX}": ELSEWHERE}))
    queue = f"{WRONG_QUEUE}-q"
    expect_fail(
        result,
        "pollers",
        f"FAIL  pollers          {pod.name} running but not polling '{queue}' (namespace {TEMPORAL_NAMESPACE}): "
        f"seen instead on task queue '{ELSEWHERE}' (namespace {TEMPORAL_NAMESPACE}, workflow+activity) — fix: the worker must poll "
        f"[apps.{WRONG_QUEUE}].task_queue ('{queue}'), which its pods get as TEMPORAL_TASK_QUEUE (ConfigMap "
        f"{WRONG_QUEUE}-temporal): read the queue from TEMPORAL_TASK_QUEUE, do not override it ([apps.{WRONG_QUEUE}].command, "
        f"the image), then `pipeline deploy --app {WRONG_QUEUE}`",
    )


async def test_all_ok_on_the_healthy_stack(apps: Apps, stack_client: Client) -> None:
    pod = running_pod(HEALTHY)

    async def polling() -> None:
        pollers = await describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=f"{HEALTHY}-q")
        types = {p.task_queue_type for p in pollers if identity_names_pod(p.identity, pod.name)}
        assert types == {"workflow", "activity"}, pollers

    await eventually(polling, timeout=40, what=f"{pod.name} polling")
    result = doctor(apps.config(HEALTHY))
    heads = check_lines(result.stdout)
    assert all(h.startswith("ok    ") for h in heads), result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"'{HEALTHY}-q' polled by {pod.name} (" in heads[NAMES.index("pollers")]
