"""`bootstrap/stack` is safe to repeat and says what runs where.

The shared stack (the one CI brought up) is only ever brought *up* again here;
bringing a stack down is tested on a second stack with its own state directory
and ports, so the rest of the suite keeps its services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from pipeline import kube
from pipeline.verify import describe_pollers
from tests.helpers import REPO_ROOT
from tests.helpers.processes import free_port


def run_bootstrap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )


def status_rows(env: dict[str, str] | None = None, only: str | None = None) -> dict[str, dict[str, object]]:
    args = ["status", "--json"] + (["--only", only] if only else [])
    result = run_bootstrap(*args, env=env)
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_up_twice_on_the_running_stack_is_harmless() -> None:
    before = status_rows()
    first = run_bootstrap("up")
    second = run_bootstrap("up")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    for name in ("docker", "registry", "temporal", "cluster", "pipeline"):
        assert f"{name}: already running" in second.stdout
    after = status_rows()
    for name in ("docker", "registry", "temporal", "cluster", "pipeline"):
        assert after[name]["state"] == before[name]["state"]
        assert after[name]["pid"] == before[name]["pid"], f"{name} was restarted"
    assert "wheelhouse: up to date" in second.stdout
    assert "base-image: pipeline-base:bookworm exists" in second.stdout


def test_status_reports_each_service_with_address_and_log() -> None:
    result = run_bootstrap("status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"docker", "registry", "temporal", "cluster", "pipeline", "base-image", "wheelhouse"}
    assert "unix:///var/run/docker.sock" in lines["docker"]
    assert "http://127.0.0.1:5000/v2/" in lines["registry"]
    assert "grpc 127.0.0.1:7233" in lines["temporal"] and "Web UI http://127.0.0.1:8233" in lines["temporal"]
    assert f"https://127.0.0.1:6443, kubeconfig {REPO_ROOT / '.stack' / 'cluster' / 'kubeconfig'}" in lines["cluster"]
    assert "task queue 'deployments' on 127.0.0.1:7233, served by the pipeline-worker pods in the cluster" in lines["pipeline"]
    assert " pid " not in lines["pipeline"], "the pipeline must not run as a local process"
    for name in ("docker", "registry", "temporal", "cluster", "pipeline"):
        assert "running" in lines[name]
    for name in ("registry", "temporal", "cluster", "pipeline"):
        assert f"log {REPO_ROOT / '.stack' / 'logs' / name}.log" in lines[name] or "not started by bootstrap" in lines[name]


def test_second_stack_comes_up_once_and_goes_down(tmp_path: Path) -> None:
    env = {
        "STACK_DIR": str(tmp_path / "stack"),
        "STACK_TEMPORAL_PORT": str(free_port()),
        "STACK_TEMPORAL_UI_PORT": str(free_port()),
        "STACK_REGISTRY_PORT": str(free_port()),
    }
    only = "registry,temporal"
    try:
        first = run_bootstrap("up", "--only", only, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "registry: starting" in first.stdout and "temporal: starting" in first.stdout
        running = status_rows(env, only)
        assert {n: r["state"] for n, r in running.items()} == {"registry": "running", "temporal": "running"}

        second = run_bootstrap("up", "--only", only, env=env)
        assert second.returncode == 0, second.stderr
        assert "registry: already running" in second.stdout and "temporal: already running" in second.stdout
        again = status_rows(env, only)
        assert {n: r["pid"] for n, r in again.items()} == {n: r["pid"] for n, r in running.items()}
        assert (tmp_path / "stack" / "temporal" / "temporal.db").exists()
    finally:
        down = run_bootstrap("down", "--only", only, env=env)
    assert down.returncode == 0, down.stderr
    assert "registry: stopped" in down.stdout and "temporal: stopped" in down.stdout
    stopped = run_bootstrap("status", "--only", only, env=env)
    assert stopped.returncode == 3
    assert {line.split()[1] for line in stopped.stdout.splitlines()} == {"stopped"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STACK_TEMPORAL_PORT": "abc"}, "bootstrap status: STACK_TEMPORAL_PORT: must be a port number, got 'abc'"),
        ({"STACK_REGISTRY_PORT": "70000"}, "bootstrap status: STACK_REGISTRY_PORT: must be a port from 1 to 65535, got 70000"),
    ],
)
def test_bad_stack_settings_are_one_line(env: dict[str, str], message: str) -> None:
    result = run_bootstrap("status", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == message


def test_unknown_part_is_one_line() -> None:
    result = run_bootstrap("status", "--only", "kafka")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "bootstrap status: --only: unknown part kafka; known: docker, registry, temporal, cluster, pipeline, base-image, wheelhouse"
    )


async def test_the_stacks_pipeline_worker_is_the_self_deployed_one_in_the_cluster(stack_client: Client) -> None:
    """After `up`, every poller of the pipeline's task queue is a pipeline-worker pod (`<pod>@<build id>`)."""
    pollers = await describe_pollers(stack_client, namespace="default", task_queue="deployments")
    recent = [p for p in pollers if p.task_queue_type == "workflow"]
    assert recent, "nothing polls the pipeline's task queue"
    with kube.connect(kubeconfig=str(REPO_ROOT / ".stack" / "cluster" / "kubeconfig")) as kc:
        pods = kube.list_pods(kc, namespace="temporal-workers", selector={"app.kubernetes.io/name": "pipeline-worker"})
    live = {p.name for p in pods if p.phase == "Running" and not p.terminating}
    assert live, "no pipeline-worker pod runs in the cluster"
    identities = {p.identity.split("@", 1)[0] for p in recent}
    assert live <= identities, f"pods {sorted(live - identities)} do not poll 'deployments' ({sorted(identities)})"


def test_another_checkouts_cluster_on_the_port_is_refused_not_adopted(tmp_path: Path) -> None:
    """A second stack whose cluster port is the shared stack's: that cluster answers, but with another CA."""
    env = {"STACK_DIR": str(tmp_path / "stack"), "STACK_CLUSTER_PORT": "6443"}
    status = status_rows(env, "cluster")
    assert status["cluster"]["state"] == "stopped", status
    up = run_bootstrap("up", "--only", "cluster", env=env)
    assert up.returncode == 1
    assert up.stderr.strip() == (
        "bootstrap up: cluster: https://127.0.0.1:6443 is served by another cluster (its certificate is not signed by "
        f"{tmp_path / 'stack' / 'cluster' / 'pki' / 'ca.crt'}); stop it (`bootstrap/stack down` in its checkout) "
        "or move this stack with STACK_CLUSTER_PORT"
    )
    assert not (tmp_path / "stack" / "run" / "cluster.pid").exists()
