"""`pipeline bootstrap`: the pipeline's first deployment of itself, then the hand-over.

    code = asyncio.run(selfdeploy.bootstrap(config, say=print))

The pipeline's own worker is an app of config.toml (`role = "pipeline"`,
`[apps.pipeline-worker]`), deployed by the same DeploymentWorkflow as every
app. The first time, nothing in the cluster can run that workflow, so:

1. If the pipeline app is already deployed and verified polling (its
   Deployment exists, its newest ReplicaSet is available, and every pod of it
   polls `[pipeline].task_queue`, workflow and activity queues, with the build
   id of the Deployment's pod template, since the pod started), say so and
   change nothing (exit 0).
2. Else run a temporary pipeline worker in this process on `[pipeline].task_queue`
   (identity `<host>@<build id or dev>`), start the DeploymentWorkflow for the
   pipeline app (or, when one is already running, e.g. an interrupted
   bootstrap, follow that one), follow it to its end, check again that the
   in-cluster pods are verified polling, then stop the local worker
   gracefully: the in-cluster worker now serves the queue ("hand-over").

Before either, the manual steps (`prerequisites`): the Kubernetes Secrets of
[temporal].api_key_secret and [temporal].tls_secret are written from the
variable, profile or files the config names (pipeline/client_secrets.py), and
the search attributes are made sure of (pipeline/search_attributes.py: added
where the server allows it; on Temporal Cloud checked, with the `tcld` command
printed when missing; exit 2).

Exit codes are `pipeline deploy`'s: 0 verified, 1 failed, 3 rolled back,
2 bad input. The local stack's own `pipeline` service (a `pipeline worker` on
the same queue, see bootstrap/services.py) is not touched: with it running,
both poll the queue until `bootstrap/stack down` stops it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from pipeline import client_secrets, deployments, kube, search_attributes
from pipeline.commands import prepare, report, ship
from pipeline.config import AppConfig, PipelineConfig
from pipeline.contract import deployment_workflow_id
from pipeline.errors import (
    NoPipelineApp,  # noqa: F401  (re-exported: the tree lives in pipeline/errors.py)
    PipelineError,
)
from pipeline.inputs import temporal_target
from pipeline.models import ClusterRef, DeploymentResult, DeployRequest
from pipeline.render import BUILD_ID_ANNOTATION
from pipeline.temporal_client import connect as temporal_connect
from pipeline.verify import describe_pollers, judge, pod_state
from pipeline.worker import run_worker

EXIT_BAD_INPUT = 2  # `pipeline deploy`'s code for what a person must fix first
# How long the hand-over check waits for the in-cluster pods after a verified deployment.
HANDOVER_TIMEOUT = 60.0
LOCAL_WORKER_GRACE = 10.0


@dataclass(frozen=True)
class PipelineState:
    """Whether the pipeline app runs in the cluster and polls its queue, as Temporal sees it."""

    ok: bool
    detail: str
    pods: list[str]


def pipeline_app(config: PipelineConfig) -> AppConfig:
    for app in config.apps.values():
        if app.role == "pipeline":
            return app
    raise NoPipelineApp(
        f'{config.source}: no app has role = "pipeline"; add [apps.pipeline-worker] with role = "pipeline" '
        "(see the shipped config.toml)"
    )


async def pipeline_state(client: Client, request: DeployRequest, *, task_queue: str) -> PipelineState:
    """Deployment present and available, and every pod of its newest ReplicaSet polling with its build id."""
    app = request.app
    cluster = request.cluster

    def read() -> tuple[dict[str, Any] | None, list[kube.ReplicaSetInfo], list[kube.PodInfo]]:
        with _connect(cluster) as kc:
            dep = kube.get_deployment(kc, namespace=app.namespace, name=app.name)
            if dep is None:
                return None, [], []
            sets = kube.replica_sets_of(kc, namespace=app.namespace, deployment=app.name)
            pods = kube.list_pods(kc, namespace=app.namespace, selector={"app.kubernetes.io/name": app.name})
            return dep, sets, pods

    dep, sets, pods = await asyncio.to_thread(read)
    where = f"Deployment {app.namespace}/{app.name}"
    if dep is None:
        return PipelineState(False, f"{where} does not exist", [])
    annotations = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    build_id = str(annotations.get(BUILD_ID_ANNOTATION) or "")
    if not sets or not build_id:
        return PipelineState(False, f"{where} has no ReplicaSet or build id yet", [])
    newest = sets[0]
    wanted = int((dep.get("spec") or {}).get("replicas") or 1)
    if newest.available_replicas < wanted:
        return PipelineState(False, f"{where}: {newest.available_replicas}/{wanted} pods of {newest.name} available", [])
    pollers = await describe_pollers(
        client, namespace=request.temporal.namespace, task_queue=task_queue, partitions=request.temporal.task_queue_partitions
    )
    verdict = judge(pods=[pod_state(p) for p in pods], pollers=pollers, new_hash=newest.pod_template_hash, build_id=build_id)
    return PipelineState(verdict.ok, f"{where}: {verdict.detail}", verdict.polling_pods)


def _connect(cluster: ClusterRef) -> kube.KubeClient:
    """The cluster as the activities reach it: for target aks a kubeconfig from the AKS API (pipeline/azure)."""
    if cluster.aks is not None:
        from pipeline.azure import aks  # only target aks needs the Azure SDKs

        return aks.connect(cluster.aks, context=cluster.context)
    return kube.connect(kubeconfig=cluster.kubeconfig, context=cluster.context)


async def bootstrap(config: PipelineConfig, *, say: Callable[[str], None]) -> int:
    """Deploy the pipeline app with a temporary local worker unless it already runs; the exit code."""
    app = pipeline_app(config)
    queue = config.pipeline.task_queue
    request = prepare(config, app.name)
    client = await temporal_connect(temporal_target(config))
    if not await prerequisites(config, client, cluster=request.cluster, say=say):
        return EXIT_BAD_INPUT
    state = await pipeline_state(client, request, task_queue=queue)
    if state.ok:
        say(
            f"{app.name} is already deployed to {config.target} and polling task queue {queue!r} "
            f"({', '.join(state.pods)}): nothing to do"
        )
        return 0
    say(f"{app.name} is not serving task queue {queue!r} yet ({state.detail})")
    request = ship(config, request, say=say)  # its build context travels as an upload, like `deploy`'s
    say(f"Starting a temporary pipeline worker here on task queue {queue!r} to deploy it")
    stop = asyncio.Event()
    local = asyncio.create_task(
        run_worker(temporal_target(config), task_queue=queue, grace_seconds=LOCAL_WORKER_GRACE, stop=stop)
    )
    try:
        handle = await _start_or_attach(client, request, task_queue=queue, say=say)
        description = await handle.describe()
        url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, description.run_id)
        say(f"Web UI: {url}")
        result = await _follow(client, handle, local, say=say)
        code = report(result, url)
        if code != 0:
            return code
        state = await _eventually_serving(client, request, task_queue=queue)
        if not state.ok:
            say(f"Deployed, but the hand-over check failed: {state.detail}")
            return 1
    finally:
        stop.set()
        await asyncio.gather(local, return_exceptions=True)
    say(f"Handed over: the temporary local worker stopped; {', '.join(state.pods)} serve task queue {queue!r}")
    return 0


async def prerequisites(config: PipelineConfig, client: Client, *, cluster: ClusterRef, say: Callable[[str], None]) -> bool:
    """The steps a person did by hand before: the credentials' Secrets for the pods, and the search attributes.

    Both are idempotent, and run even when the pipeline app already serves its queue. False (after
    saying what is missing and the exact command that makes it) when something could not be done here.
    """

    def secrets() -> bool:
        if not (config.temporal.api_key_secret or config.temporal.tls_secret):
            return True  # nothing named: no cluster call
        with _connect(cluster) as kc:
            return client_secrets.ensure(kc, config, env=os.environ, say=say)

    ok = await asyncio.to_thread(secrets)
    t = config.temporal
    try:
        outcome = await search_attributes.ensure(client, namespace=t.namespace, address=t.address)
    except RPCError as error:
        raise PipelineError(
            f"cannot check the search attributes of namespace {t.namespace} on {t.address}: {error.status.name}: {error.message}"
        ) from None
    for line in (*outcome.lines, *outcome.commands):
        say(line)
    return ok and outcome.ok


async def _start_or_attach(
    client: Client, request: DeployRequest, *, task_queue: str, say: Callable[[str], None]
) -> WorkflowHandle[Any, DeploymentResult]:
    try:
        handle = await deployments.start(client, request, task_queue=task_queue)
        say(f"Deploying {request.app.name} to {request.environment}: workflow {handle.id}")
        return handle
    except deployments.DeploymentAlreadyRunning:
        workflow_id = deployment_workflow_id(request.environment, request.app.name)
        say(f"A deployment of {request.app.name} is already running (workflow {workflow_id}): following it")
        return client.get_workflow_handle(workflow_id, result_type=DeploymentResult)


async def _follow(
    client: Client, handle: WorkflowHandle[Any, DeploymentResult], local: asyncio.Task[None], *, say: Callable[[str], None]
) -> DeploymentResult:
    """Follow the deployment; fail at once if the local worker dies (nothing else may run the workflow)."""
    following = asyncio.ensure_future(deployments.follow(client, handle, say=say))
    await asyncio.wait({following, local}, return_when=asyncio.FIRST_COMPLETED)
    if not following.done():
        following.cancel()
        error = local.exception() if not local.cancelled() else None
        raise PipelineError(
            f"the temporary local pipeline worker stopped: {error or 'cancelled'}; run `pipeline bootstrap` again"
        )
    return following.result()


async def _eventually_serving(client: Client, request: DeployRequest, *, task_queue: str) -> PipelineState:
    deadline = asyncio.get_running_loop().time() + HANDOVER_TIMEOUT
    while True:
        state = await pipeline_state(client, request, task_queue=task_queue)
        if state.ok or asyncio.get_running_loop().time() > deadline:
            return state
        await asyncio.sleep(0.5)
