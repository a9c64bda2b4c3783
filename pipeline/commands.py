"""What the CLI's commands do, apart from parsing arguments.

Kept out of `pipeline.cli` so that `pipeline config` and `--help` start
without importing the Temporal, Kubernetes and Docker clients. Temporal's own
RPC errors become one-line PipelineErrors here, like every other failure.
"""

from __future__ import annotations

import getpass
import logging
import socket
import urllib.parse
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import click
from temporalio.service import RPCError

from pipeline import deployments, images, kube, render
from pipeline.config import PipelineConfig
from pipeline.contract import WORKFLOW_TYPE
from pipeline.errors import PipelineError
from pipeline.models import DeploymentResult, DeployRequest, RenderInput
from pipeline.requests import deploy_request, temporal_target
from pipeline.temporal_client import connect as temporal_connect
from pipeline.temporal_client import run as run_async

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_ROLLED_BACK = 3


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return run_async(coro)
    except RPCError as error:  # Temporal answered with an error we did not expect
        raise PipelineError(f"Temporal refused the request ({error.status.name}): {error.message}") from error


def who() -> str:
    """Who asked, for the deployment's details in the Web UI."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def prepare(
    config: PipelineConfig, app_name: str | None, *, image: str = "", tag: str = "", no_build: bool = False
) -> DeployRequest:
    """Validate the arguments and pin the image to its digest before anything starts.

    `no_build`: the image already built from the current source (what a deploy
    would reuse), or ImageNotFound; the workflow then skips its build step.
    """
    request = deploy_request(config, app_name, image=image, tag=tag, requested_by=who(), no_build=no_build)
    if no_build:
        request = replace(request, image=images.image_for_preview(request)[0], tag="")
    elif request.image:
        request = replace(request, image=images.resolve_digest(request.image))
    if request.cluster.aks is None:
        # A kubeconfig that cannot be read or names an unknown context is bad input: say so
        # here, in one line, before a workflow starts (the worker would only find out later).
        kube.connect(kubeconfig=request.cluster.kubeconfig, context=request.cluster.context).close()
    return request


def deploy(config: PipelineConfig, request: DeployRequest, *, follow: bool, detach: bool) -> int:
    return run(_deploy(config, request, follow=follow, detach=detach))


async def _deploy(config: PipelineConfig, request: DeployRequest, *, follow: bool, detach: bool) -> int:
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.start(client, request, task_queue=config.pipeline.task_queue)
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, handle.result_run_id)
    click.echo(f"Deploying {request.app.name} to {request.environment}: workflow {handle.id}")
    click.echo(f"Web UI: {url}")
    if detach:
        return 0
    if follow:
        result = await deployments.follow(client, handle, say=click.echo)
    else:
        result = await deployments.result_of(handle)
    return report(result, url)


def report(result: DeploymentResult, url: str) -> int:
    if result.outcome == "succeeded":
        identities = sorted({p.identity for p in result.pollers})
        click.echo(f"Deployed {result.image}: verified; polling: {', '.join(identities) or '-'}")
    elif result.outcome == "rolled_back":
        click.echo(f"Rolled back to {result.restored_image}: {result.reason}", err=True)
    else:
        click.echo(f"Deployment failed: {result.reason}", err=True)
    click.echo(f"Web UI: {url}")
    return {"succeeded": 0, "rolled_back": EXIT_ROLLED_BACK}.get(result.outcome, EXIT_FAILED)


def dry_run(config: PipelineConfig, request: DeployRequest) -> None:
    image, build_id = images.image_for_preview(request)
    manifests = render.render_manifests(RenderInput(app=request.app, temporal=request.temporal, image=image, build_id=build_id))
    with kube.connect(kubeconfig=request.cluster.kubeconfig, context=request.cluster.context) as kc:
        changes = kube.diff_for_dry_run(kc, manifests.objects, field_manager=kube.FIELD_MANAGER)
    for change in changes:
        click.echo(f"{change.kind} {change.namespace + '/' if change.namespace else ''}{change.name}: {change.action}")
        if change.diff:
            click.echo(change.diff.rstrip())
    click.echo(f"(dry run of {image} against {request.cluster.kubeconfig or 'the default kubeconfig'}: nothing was changed)")


def status(config: PipelineConfig, app: str) -> None:
    run(_status(config, app))


async def _status(config: PipelineConfig, app: str) -> None:
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.latest(client, environment=config.target, app=app)
    description = await handle.describe()
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, description.run_id)
    progress = await deployments.observe(client, handle)
    st = progress.status
    click.echo(
        f"{app} ({config.target}): workflow {handle.id} is {description.status.name.lower() if description.status else '?'}"
    )
    click.echo(f"  step:     {st.step}{' - ' + st.detail if st.detail else ''}")
    click.echo(f"  image:    {st.image or '-'}")
    click.echo(f"  previous: {st.previous_image or '-'}")
    if progress.activity:
        click.echo(f"  activity: {progress.activity} {deployments.format_detail(progress)}".rstrip())
    if st.replicas:
        click.echo(f"  replicas: {st.ready_replicas}/{st.replicas} ready, {st.available_replicas} available")
    click.echo(f"  pollers:  {', '.join(st.pollers) or '-'}")
    if st.rollback_requested:
        click.echo(f"  rollback requested: {st.rollback_reason or '(no reason given)'}")
    click.echo(f"Web UI: {url}")


def rollback(config: PipelineConfig, app: str, reason: str, *, detach: bool) -> int:
    return run(_rollback(config, app, reason, detach=detach))


async def _rollback(config: PipelineConfig, app: str, reason: str, *, detach: bool) -> int:
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.request_rollback(client, environment=config.target, app=app, reason=reason, requested_by=who())
    description = await handle.describe()
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, description.run_id)
    click.echo(f"Rollback of {app} requested (workflow {handle.id})")
    click.echo(f"Web UI: {url}")
    if detach:
        return 0
    result = await deployments.result_of(handle)
    code = report(result, url)
    return 0 if result.outcome == "rolled_back" else code


def history(config: PipelineConfig, app: str | None, limit: int) -> list[deployments.HistoryRow]:
    return run(_history(config, app, limit))


async def _history(config: PipelineConfig, app: str | None, limit: int) -> list[deployments.HistoryRow]:
    client = await temporal_connect(temporal_target(config))
    return await deployments.history(client, app=app, environment=config.target, limit=limit)


def history_url(config: PipelineConfig, app: str | None) -> str:
    """The Web UI's workflow list, filtered like `pipeline history`."""
    query = f"WorkflowType='{WORKFLOW_TYPE}' AND DeploymentEnvironment='{config.target}'"
    if app:
        query += f" AND DeploymentApp='{app}'"
    base = config.temporal.ui_url.rstrip("/")
    return f"{base}/namespaces/{urllib.parse.quote(config.temporal.namespace)}/workflows?query={urllib.parse.quote(query)}"


def render_yaml(config: PipelineConfig, app_name: str | None, image: str) -> str:
    request = prepare(config, app_name, image=image)
    ref, build_id = images.image_for_preview(request)
    manifests = render.render_manifests(RenderInput(app=request.app, temporal=request.temporal, image=ref, build_id=build_id))
    return render.to_yaml(manifests)


def worker(config: PipelineConfig) -> None:
    # Imported here: the worker module brings every activity's client library, which the
    # other commands do not need (see pipeline/contract.py).
    from pipeline.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(run_worker(temporal_target(config), task_queue=config.pipeline.task_queue))
