"""Deployments at once (issue 7, item 6): same app twice refused in one line; 5 apps in parallel, no interference.

One config with five app tables (replicas 1, one namespace, one pipeline
worker); six `pipeline deploy` processes are started together: two of the first
app, one of each other. Exactly one of the first app's runs deploys, the other
is refused in one line; all five apps end verified, each Deployment with its
own image, and each task queue polled only by that app's pods with its build id.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from bootstrap.process import stop_child
from pipeline import kube
from pipeline.config import to_toml
from tests.e2e.support import KUBECONFIG, E2eApp, Run, deployed, pollers_of, start_pipeline_worker
from tests.helpers.faults import delete_namespace, new_app

pytestmark = pytest.mark.e2e

APPS = 5


@dataclass
class Fleet:
    suite: E2eApp  # names the namespace, the pipeline task queue and the config's directory
    names: list[str]
    config: Path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet(stack_client: Client):  # type: ignore[no-untyped-def]
    suite = new_app("f-conc")
    data = tomllib.loads(suite.config(replicas=1).read_text())
    (template,) = data["apps"].values()
    names = [f"{suite.name}-a{i}" for i in range(APPS)]
    data["apps"] = {name: {**template, "task_queue": f"{name}-q"} for name in names}
    data["pipeline"]["default_app"] = names[0]
    config = suite.directory / "five-apps.toml"
    config.write_text(to_toml(data))
    worker = await start_pipeline_worker(suite, config, stack_client)
    try:
        yield Fleet(suite, names, config)
    finally:
        stop_child(worker, grace=30)
        delete_namespace(suite.namespace)


async def test_same_app_twice_and_five_apps_at_once_do_not_interfere(fleet: Fleet, stack_client: Client) -> None:
    suite = fleet.suite
    argv = [("deploy", "--app", fleet.names[0])] + [("deploy", "--app", name) for name in fleet.names]
    started = time.monotonic()
    processes = await asyncio.gather(*(suite.start(*args, config=fleet.config) for args in argv))
    runs: list[Run] = list(
        await asyncio.gather(
            *(suite.finish(p, args, started=started, timeout=240) for p, args in zip(processes, argv, strict=True))
        )
    )
    print(f"{APPS} apps deployed at once in {time.monotonic() - started:.1f}s")

    # The first app: one run deployed, the other refused in one line, naming the running workflow.
    first = sorted(runs[:2], key=lambda r: r.code)
    refused = first[1]
    assert refused.code != 0 and "Traceback" not in refused.output, refused.output
    (line,) = refused.stderr.strip().splitlines()
    workflow_id = f"deploy-local-{fleet.names[0]}"
    assert "already running" in line and workflow_id in line and f"pipeline rollback {fleet.names[0]}" in line, line
    results = [first[0], *runs[2:]]

    # Every app verified, with its own image; its queue polled only by its own pods, with its build id.
    versions = {name: deployed(run, suite) for name, run in zip(fleet.names, results, strict=True)}
    assert len({v.image for v in versions.values()}) == APPS, "each app has its own repository and image"
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        for name, version in versions.items():
            deployment = kube.get_deployment(kc, namespace=suite.namespace, name=name)
            assert deployment is not None
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == version.image
            pods = kube.list_pods(kc, namespace=suite.namespace, selector={"app.kubernetes.io/name": name})
            live = {p.name for p in pods if not p.terminating}
            assert len(live) == 1, f"{name}: expected one live pod, got {sorted(live)}"
            for queue_type in ("workflow", "activity"):
                pollers = await pollers_of(stack_client, f"{name}-q", queue_type)
                identities = {p.identity.split("@", 1)[0]: p.worker_version_capabilities.build_id for p in pollers}
                assert live <= set(identities), f"{name}: pod {live} not polling its {queue_type} queue: {identities}"
                others = [pod for pod in identities if not pod.startswith(f"{name}-")]
                assert not others, f"pods of other apps poll {name}-q: {others}"
                for pod in live:
                    assert identities[pod] == version.build_id, f"{pod} polls {name}-q with {identities[pod]}"
    count = await stack_client.count_workflows(f"WorkflowType='DeploymentWorkflow' AND DeploymentApp='{fleet.names[0]}'")
    assert count.count == 1, f"{count.count} DeploymentWorkflows of {fleet.names[0]}: the refused run started one"
