"""What the CLI's commands do, apart from parsing arguments.

Kept out of `pipeline.cli` so that `pipeline config` and `--help` start
without importing the Temporal, Kubernetes and Docker clients. Temporal's own
RPC errors become one-line PipelineErrors here, like every other failure.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from pipeline import clusters, deployments, images, kube, render, revisions, source
from pipeline.config import PipelineConfig
from pipeline.contract import WORKFLOW_TYPE
from pipeline.errors import BadRequest, PipelineError
from pipeline.inputs import cluster_ref, deploy_request, temporal_target
from pipeline.models import DeploymentResult, DeployRequest, PlatformImage, RenderInput, WorkloadIdentity
from pipeline.temporal_client import connect as temporal_connect, run as run_async

T = TypeVar("T")

# The CLI's exit codes (README "Exit codes"); 2 is bad input (pipeline.cli).
EXIT_FAILED = 1
EXIT_ROLLED_BACK = 3
EXIT_CANCELED = 4  # a cancellation request ended the deployment (after restoring the previous revision)
EXIT_TERMINATED = 5  # terminated or timed out: no rollback ran; the drift line says what runs


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return run_async(coro)
    except RPCError as error:  # Temporal answered with an error we did not expect
        raise PipelineError(f"Temporal refused the request ({error.status.name}): {error.message}") from error


def who() -> str:
    """Who asked, for the deployment's details in the Web UI."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def prepare(
    config: PipelineConfig,
    app_name: str | None,
    *,
    image: str = "",
    tag: str = "",
    no_build: bool = False,
    check_cluster: bool = True,
    context: Path | None = None,
) -> DeployRequest:
    """Validate the arguments and pin the image to its digest before anything starts.

    `no_build`: the image already built from the current source (what a deploy
    would reuse), or ImageNotFound; the workflow then skips its build step.
    `check_cluster`: also check the kubeconfig (not for `render`, which touches no cluster).
    `context`: build from this directory instead of the app's build_context (`deploy --context`).
    The source hash is computed here, nothing is uploaded: `ship` does that before a start.
    """
    request = deploy_request(config, app_name, image=image, tag=tag, requested_by=who(), no_build=no_build)
    if request.app.build is not None and not request.image:
        directory = build_directory(config, request.app.name, context)
        source.check_dockerfile(
            directory, request.app.build.dockerfile, app=request.app.name, option="--context" if context else ""
        )
        request = source.with_source(request, source.local_source(directory, request.app.build))
    if no_build:
        request = replace(request, image=images.image_for_preview(request)[0], tag="")
    elif request.image:
        request = replace(request, image=images.resolve_digest(request.image))
    request = with_workload_identity(config, request)
    if check_cluster and request.cluster.aks is None:
        # A kubeconfig that cannot be read or names an unknown context is bad input: say so
        # here, in one line, before a workflow starts (the worker would only find out later).
        kube.connect(kubeconfig=request.cluster.kubeconfig, context=request.cluster.context).close()
    return request


def with_workload_identity(config: PipelineConfig, request: DeployRequest) -> DeployRequest:
    """Target aks, the pipeline's own app: its pods' workload identity, read from Azure ([azure].identity).

    Public ids only (client and tenant id, the authority, a CA bundle's certificates): the pods
    exchange a projected ServiceAccount token for the identity's Entra ID token themselves.
    """
    role = request.app.pipeline_role
    if role is None or config.target != "aks":
        return request
    from pipeline.azure import identities  # only target aks needs the Azure SDKs

    ids = identities.lookup(
        subscription_id=config.azure.subscription_id,
        resource_group=config.azure.resource_group,
        name=config.azure.identity,
        endpoint=config.azure.endpoint,
    )
    ca_pem = ""
    if config.azure.ca_bundle is not None:
        try:
            ca_pem = config.azure.ca_bundle.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise BadRequest(f"[azure].ca_bundle: cannot read {config.azure.ca_bundle}: {error}") from error
        if "-----BEGIN CERTIFICATE-----" not in ca_pem or "PRIVATE KEY" in ca_pem:
            raise BadRequest(f"[azure].ca_bundle: {config.azure.ca_bundle} must hold PEM certificates only (no private key)")
    identity = WorkloadIdentity(
        client_id=ids.client_id, tenant_id=ids.tenant_id, authority_host=config.azure.authority_host, ca_bundle_pem=ca_pem
    )
    app = replace(request.app, pipeline_role=replace(role, workload_identity=identity))
    return replace(request, app=app)


def build_directory(config: PipelineConfig, app: str, context: Path | None = None) -> Path:
    """Where this deploy's build context is on this machine: `--context DIR`, else the app's build_context."""
    return context.expanduser().resolve() if context is not None else config.app(app).build_context


def ship(
    config: PipelineConfig, request: DeployRequest, *, context: Path | None = None, say: Callable[[str], None] = click.echo
) -> DeployRequest:
    """Pack and upload the build context where the build runs (pipeline/source.py); the request carrying its SourceRef."""
    if request.app.build is None or request.image or request.restore:
        return request
    directory = build_directory(config, request.app.name, context)
    return source.ship(request, directory, max_mb=config.pipeline.max_source_mb, say=say)


def skipping(request: DeployRequest, names: Sequence[str], reason: str) -> DeployRequest:
    """`--skip-gate NAME ... --reason TEXT`: each name one of the app's gates; a reason is required."""
    from pipeline.models import SkippedGate

    if not names:
        if reason:
            raise BadRequest("--reason: only with --skip-gate (it says why a gate is skipped)")
        return request
    known = [g.name for g in request.app.gates]
    for name in names:
        if name not in known:
            listed = ", ".join(known) or "none"
            raise BadRequest(f"--skip-gate {name}: {request.app.name} has no such gate (its gates: {listed})")
    if not reason.strip():
        raise BadRequest("--skip-gate needs --reason TEXT: who skipped which gate, and why, is recorded in the history")
    return replace(request, skip_gates=tuple(SkippedGate(n, reason.strip(), who()) for n in dict.fromkeys(names)))


def deploy(config: PipelineConfig, request: DeployRequest, *, follow: bool, detach: bool) -> int:
    return run(_deploy(config, request, follow=follow, detach=detach))


async def _deploy(config: PipelineConfig, request: DeployRequest, *, follow: bool, detach: bool) -> int:
    client = await temporal_connect(temporal_target(config))
    # Looked at before the start (after it, this deployment's own apply would be the difference),
    # said after it (a deployment that is refused as already running is no drift).
    drift = drift_line(config, request.app.name)
    result = await _start_and_watch(config, client, request, follow=follow, detach=detach, drift=drift)
    return 0 if result is None else report(*result, config=config)


async def _start_and_watch(
    config: PipelineConfig, client: Any, request: DeployRequest, *, follow: bool, detach: bool, drift: str = ""
) -> tuple[DeploymentResult, str] | None:
    """Start the deployment workflow, print its Web UI link, and (unless detached) wait for its result."""
    handle = await deployments.start(client, request, task_queue=config.pipeline.task_queue)
    if drift:
        click.echo(f"{drift} (found before this deployment, which replaces it)", err=True)
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, handle.result_run_id)
    verb = f"Rolling back {request.app.name} in" if request.restore else f"Deploying {request.app.name} to"
    click.echo(f"{verb} {request.environment}: workflow {handle.id}")
    click.echo(f"Web UI: {url}")
    if detach:
        return None
    if follow:
        return await deployments.follow(client, handle, say=click.echo), url
    return await deployments.result_of(handle), url


def report(result: DeploymentResult, url: str, *, config: PipelineConfig | None = None) -> int:
    """Print the outcome in one line (and, when no rollback ran after a termination, the drift); return the exit code."""
    if result.outcome == "succeeded":
        identities = sorted({p.identity for p in result.pollers})
        index = f"; an index of {', '.join(p.platform for p in result.platforms)}" if result.platforms else ""
        click.echo(f"Deployed {result.image}: verified; polling: {', '.join(identities) or '-'}{index}")
    elif result.outcome == "rolled_back":
        click.echo(f"Rolled back to {result.restored_image}: {result.reason}", err=True)
    elif result.outcome == "canceled":
        click.echo(f"Canceled: {result.reason.removeprefix('canceled: ')}", err=True)
    elif result.outcome in ("terminated", "timed_out"):
        click.echo(f"Deployment {result.outcome.replace('_', ' ')}: {result.reason}", err=True)
        if config is not None and (line := drift_line(config, result.app)):
            click.echo(line, err=True)
    else:
        click.echo(f"Deployment failed: {result.reason}", err=True)
    if config is not None and result.app in config.apps and config.apps[result.app].rollout.strategy == "versioned":
        from pipeline.versioning import web_ui_url

        deployment = f"{config.kubernetes.namespace}/{result.app}"
        click.echo(f"Worker Deployment: {web_ui_url(config.temporal.ui_url, config.temporal.namespace, deployment)}")
    click.echo(f"Web UI: {url}")
    if result.outcome == "failed" and "AcrTasksNotAllowed:" in result.reason:
        return 2  # the subscription refuses ACR Tasks: nothing will work until that changes (README, Azure)
    codes = {"succeeded": 0, "rolled_back": EXIT_ROLLED_BACK, "canceled": EXIT_CANCELED}
    return codes.get(result.outcome, EXIT_TERMINATED if result.outcome in ("terminated", "timed_out") else EXIT_FAILED)


def drift_line(config: PipelineConfig, app: str) -> str:
    """One line when the cluster does not run the app's last verified revision ("" when it does, or cannot tell)."""
    try:
        with clusters.connect(cluster_ref(config), patient=True) as kc:
            return revisions.check_drift(kc, app=app, namespace=config.kubernetes.namespace)
    except PipelineError as error:
        return f"drift: not checked, the cluster did not answer: {error.message.splitlines()[0]}"


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
    for line in platform_lines(st.platforms):
        click.echo(line)
    click.echo(f"  previous: {st.previous_image or '-'}")
    if progress.activity:
        click.echo(f"  activity: {progress.activity} {deployments.format_detail(progress)}".rstrip())
    if st.replicas:
        click.echo(f"  replicas: {st.ready_replicas}/{st.replicas} ready, {st.available_replicas} available")
    click.echo(f"  pollers:  {', '.join(st.pollers) or '-'}")
    if st.rollback_requested:
        click.echo(f"  rollback requested: {st.rollback_reason or '(no reason given)'}")
    if description.status != WorkflowExecutionStatus.RUNNING:
        line = drift_line(config, app)
        click.echo(line or "  cluster:  runs the last verified revision")
    click.echo(f"Web UI: {url}")


def platform_lines(platforms: Sequence[PlatformImage]) -> list[str]:
    """A multi-platform image: the index (`image:` above) and each platform's digest, one line each."""
    if not platforms:
        return []
    lines = [f"  index of {len(platforms)} platforms:"]
    width = max(len(p.platform) for p in platforms)
    lines.extend(f"    {p.platform:<{width}}  {p.digest}" for p in platforms)
    return lines


def rollback(config: PipelineConfig, app: str, reason: str, *, to: str = "", follow: bool = False, detach: bool) -> int:
    return run(_rollback(config, app, reason, to=to, follow=follow, detach=detach))


async def _rollback(config: PipelineConfig, app: str, reason: str, *, to: str, follow: bool, detach: bool) -> int:
    """A running deployment: the rollback update. None running: a deployment workflow that restores a verified revision."""
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.running(client, environment=config.target, app=app)
    if handle is None:
        return await _restore(config, client, app, reason, to=to, follow=follow, detach=detach)
    if to:
        raise PipelineError(
            f"--to: a deployment of {app} is running (workflow {handle.id}); roll it back first "
            f"(`pipeline rollback {app}`), then choose an older revision"
        )
    answer = await deployments.request_rollback(handle, app=app, reason=reason, requested_by=who())
    description = await handle.describe()
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, description.run_id)
    click.echo(
        f"Rollback of {app} accepted: restoring {answer.restoring} (it was at step {answer.interrupted_step!r}; workflow {handle.id})"
    )
    click.echo(f"Web UI: {url}")
    if detach:
        return 0
    result = await (deployments.follow(client, handle, say=click.echo) if follow else deployments.result_of(handle))
    code = report(result, url, config=config)
    return 0 if result.outcome == "rolled_back" else code


async def _restore(config: PipelineConfig, client: Any, app: str, reason: str, *, to: str, follow: bool, detach: bool) -> int:
    request = deploy_request(config, app, requested_by=who())
    with clusters.connect(request.cluster, patient=True) as kc:
        log = revisions.read(kc, app=app, namespace=request.app.namespace)
    target = revisions.pick(log, to or revisions.PREVIOUS)
    if target is None:
        known = ", ".join(r.image for r in log.history) or "none"
        if to:
            raise PipelineError(f"--to {to}: not a verified revision of {app} (verified, newest first: {known})")
        raise PipelineError(
            f"nothing to roll back to: {app} has {len(log.history) or 'no'} verified revision{'s' if len(log.history) != 1 else ''} "
            f"({known}); `pipeline history {app}` lists its deployments"
        )
    request = replace(request, restore=target.image, reason=reason, image="", tag="")
    started = await _start_and_watch(config, client, request, follow=follow, detach=detach)
    if started is None:
        return 0
    result, url = started
    code = report(result, url, config=config)
    return 0 if result.outcome == "rolled_back" and result.restored_image == target.image else code


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
    request = prepare(config, app_name, image=image, check_cluster=False)
    ref, build_id = images.image_for_preview(request)
    manifests = render.render_manifests(RenderInput(app=request.app, temporal=request.temporal, image=ref, build_id=build_id))
    return render.to_yaml(manifests)


def worker(config: PipelineConfig) -> None:
    # Imported here: the worker module brings every activity's client library, which the
    # other commands do not need (see pipeline/contract.py).
    from pipeline.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The readiness gate's namespace: in a pod its own (where its Role lets it patch pods), else the config's.
    namespace = os.environ.get("POD_NAMESPACE") or config.kubernetes.namespace
    run(run_worker(temporal_target(config), task_queue=config.pipeline.task_queue, gate=(cluster_ref(config), namespace)))


# ----- versioned apps: operator verbs and the versions table -----


def version_verb(config: PipelineConfig, app: str, verb: str, *, full: bool = False) -> int:
    return run(_version_verb(config, app, verb, full=full))


async def _version_verb(config: PipelineConfig, app: str, verb: str, *, full: bool) -> int:
    """`pipeline promote|pause|resume APP`: the running deployment's update; its new state, or why not."""
    from temporalio.client import WorkflowUpdateFailedError

    from pipeline.contract import PAUSE_UPDATE, PROMOTE_UPDATE, RESUME_UPDATE
    from pipeline.errors import VersionRefused
    from pipeline.models import DeploymentStatus

    spec = config.app(app)
    if spec.rollout.strategy != "versioned":
        raise VersionRefused(
            f'{verb}: {app} is not a versioned app ([apps.{app}.rollout].strategy is "{spec.rollout.strategy}"); '
            "its deployments roll out in place"
        )
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.running(client, environment=config.target, app=app)
    if handle is None:
        raise VersionRefused(
            f"{verb}: no deployment of {app} to {config.target} is running; `pipeline versions {app}` shows its versions"
        )
    name = {"promote": PROMOTE_UPDATE, "pause": PAUSE_UPDATE, "resume": RESUME_UPDATE}[verb]
    args = [full] if verb == "promote" else []
    try:
        st: DeploymentStatus = await handle.execute_update(name, args=args, result_type=DeploymentStatus)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise VersionRefused(f"{verb} of {app} refused: {getattr(cause, 'message', None) or cause}") from exc
    except RPCError as exc:
        raise VersionRefused(f"{verb} of {app} refused: {exc.message}") from exc
    state = "paused" if st.paused else ("promoting" if verb == "promote" else "ramping")
    click.echo(
        f"{app}: {verb} accepted; step {st.step!r}, new version at {st.ramp_percentage:g}% ({state}); workflow {handle.id}"
    )
    return 0


def versions(config: PipelineConfig, app: str) -> int:
    return run(_versions(config, app))


async def _versions(config: PipelineConfig, app: str) -> int:
    """`pipeline versions APP`: every version, from Temporal and the cluster, one line each."""
    import datetime as dt

    from pipeline.models import VersionsInput
    from pipeline.version_activities import survey
    from pipeline.versioning import web_ui_url

    request = deploy_request(config, app, requested_by=who())
    if not request.app.rollout.versioned:
        raise BadRequest(
            f'versions: {app} is not a versioned app ([apps.{app}.rollout].strategy is "{request.app.rollout.strategy}")'
        )
    report = await survey(
        VersionsInput(app=request.app, environment=config.target, temporal=request.temporal, cluster=request.cluster)
    )
    routing = report.routing
    click.echo(
        f"Worker Deployment {report.deployment_name}: current {routing.current or 'unversioned'}"
        + (f", ramping {routing.ramping} at {routing.percentage:g}%" if routing.ramping else "")
        + ("" if report.routing_completed else " (propagating)")
        + f"; manager {report.manager or '-'}"
    )
    click.echo(f"{'BUILD':<14} {'STATUS':<10} {'RAMP':>5} {'PINNED':>6} {'PODS':>5}  {'CREATED (UTC)':<19}  DEPLOYMENT / IMAGE")
    for row in report.versions:
        status = row.status or "unknown"
        if row.deploying:
            status += "*"
        created = dt.datetime.fromtimestamp(row.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if row.created_at else "-"
        pods = f"{row.ready_replicas}/{row.replicas}" if row.deployment else "-"
        ramp = f"{row.ramp_percentage:g}%" if row.status == "ramping" else ("100%" if row.status == "current" else "-")
        click.echo(
            f"{row.build_id.replace('sha256:', '')[:12]:<14} {status:<10} {ramp:>5} {row.open_pinned:>6} {pods:>5}  {created:<19}  "
            f"{row.deployment or '(deleted)'} {row.image}"
        )
    if any(r.deploying for r in report.versions):
        click.echo("* being rolled out by the running deployment")
    click.echo(f"Web UI: {web_ui_url(config.temporal.ui_url, config.temporal.namespace, report.deployment_name)}")
    return 0
