"""Any directory deploys through the stack's own in-cluster pipeline worker, with no redeploy of it (issue 15).

The worker pods mount no build context: the CLI packs the directory and
uploads it to the registry as a content-addressed blob, and the build
activity in the pod builds that archive. So a directory created after the
pipeline worker was deployed deploys at once:

    v1     a fresh directory (a tiny SDK worker, tests/fixtures/sdk_worker) added with `pipeline app add`:
           `pipeline deploy --app X --follow` exits 0; the CLI says it uploaded the source
    again  the same source: "0 bytes uploaded", and the build is reused
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from temporalio.client import Client

from pipeline.config import to_toml
from tests.e2e.support import KUBECONFIG, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, UI_URL, E2eApp, deployed, pollers_of
from tests.helpers import REPO_ROOT
from tests.helpers.cluster import kubectl
from tests.helpers.config import SHIPPED_CONFIG
from tests.helpers.images import sdk_base_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "sdk_worker"
STACK_QUEUE = "deployments"  # the stack's in-cluster pipeline worker (Deployment pipeline-worker)
STACK_NAMESPACE = "temporal-workers"


@dataclass
class AnyDirApp:
    e2e: E2eApp
    name: str
    source: Path
    config: Path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def any_dir_app(stack_client: Client) -> AsyncIterator[AnyDirApp]:
    if not await pollers_of(stack_client, STACK_QUEUE, "activity"):
        pytest.skip(f"the stack's pipeline worker does not poll {STACK_QUEUE!r} (bootstrap/stack up)")
    name = f"anydir-{uuid.uuid4().hex[:6]}"
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    source = directory / "worker-src"  # created now: no pipeline worker was ever deployed knowing it
    shutil.copytree(FIXTURE, source)
    queue = f"{name}-greetings"
    (source / "worker.py").write_text((FIXTURE / "worker.py").read_text().replace('"sdk-greetings"', f'"{queue}"'))
    data = tomllib.loads(SHIPPED_CONFIG.read_text())
    data["kubernetes"].update(namespace=STACK_NAMESPACE, kubeconfig=str(KUBECONFIG))
    data["temporal"].update(address=TEMPORAL_ADDRESS, namespace=TEMPORAL_NAMESPACE, ui_url=UI_URL)
    data["pipeline"].update(task_queue=STACK_QUEUE)
    for shipped in data["apps"].values():  # the shipped apps stay (unused here), their context made absolute
        shipped["build_context"] = str(REPO_ROOT)
    config = directory / "config.toml"
    config.write_text(to_toml(data))
    client = docker.from_env()
    try:
        base = sdk_base_image(client)
    finally:
        client.close()
    e2e = E2eApp(name=name, directory=directory, worker_log=directory / "no-local-worker.log")
    run = await e2e.cli("app", "add", name, "--context", str(source), "--replicas", "1", config=config)
    assert run.code == 0, run.output
    with config.open("a") as out:
        out.write(f'build_args = {{ BASE_IMAGE = "{base}" }}\ntermination_grace_period_seconds = 5\n')
    try:
        yield AnyDirApp(e2e=e2e, name=name, source=source, config=config)
    finally:
        selector = f"app.kubernetes.io/name={name}"
        kubectl(KUBECONFIG, "-n", STACK_NAMESPACE, "delete", "deployment,configmap", "-l", selector, "--wait=false", check=False)
        kubectl(KUBECONFIG, "-n", STACK_NAMESPACE, "delete", "configmap", f"{name}-revisions", "--wait=false", check=False)
        print(f"{name}: its Deployment and ConfigMaps in {STACK_NAMESPACE} deleted; source was {source}")


async def test_a_new_directory_deploys_through_the_in_cluster_pipeline_worker(any_dir_app: AnyDirApp) -> None:
    run = await any_dir_app.e2e.cli("deploy", "--app", any_dir_app.name, "--follow", config=any_dir_app.config, timeout=420)
    assert run.code == 0, run.output
    assert "does not exist" not in run.output
    [line] = [line for line in run.stdout.splitlines() if line.startswith("source sha256:")]
    assert ": uploaded " in line or "0 bytes uploaded" in line, line
    version = deployed(run, any_dir_app.e2e)
    assert version.image.startswith(f"127.0.0.1:5000/{any_dir_app.name}@sha256:")
    pods = kubectl(
        KUBECONFIG, "-n", STACK_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=pipeline-worker", "-o", "json"
    ).stdout
    assert str(any_dir_app.source) not in pods, "the pipeline worker mounts the new directory: it was redeployed"


async def test_the_same_source_again_uploads_nothing_and_reuses_the_build(any_dir_app: AnyDirApp) -> None:
    run = await any_dir_app.e2e.cli("deploy", "--app", any_dir_app.name, "--follow", config=any_dir_app.config, timeout=300)
    assert run.code == 0, run.output
    [line] = [line for line in run.stdout.splitlines() if line.startswith("source sha256:")]
    assert line.endswith("already in the registry, 0 bytes uploaded"), line
