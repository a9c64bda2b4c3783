"""The `pipeline` command line: one click group, one shared way to load config and fail.

Every command gets the loaded configuration through `load(ctx)`. Any
`PipelineError` raised by a command becomes its lines on stderr and exit code
2, never a traceback; click's own usage errors keep click's exit code 2 and
one-line message. Later commands (deploy, status, rollback, render, history,
worker) are added with `@main.command()` and need nothing else.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline import deployments, images, render
from pipeline.activities import FIELD_MANAGER
from pipeline.config import PipelineConfig, load_config, to_dict, to_toml
from pipeline.errors import PipelineError
from pipeline.kube import apply as kube_apply
from pipeline.kube.client import connect as kube_connect
from pipeline.models import DeploymentResult, DeployRequest, RenderInput
from pipeline.requests import deploy_request, temporal_target
from pipeline.temporal_client import connect as temporal_connect
from pipeline.worker import run_worker

T = TypeVar("T")

EXIT_PIPELINE_ERROR = 2


@dataclass
class CliState:
    """What the group's options decided, shared with every command via `ctx.obj`."""

    config_path: Path | None
    _config: PipelineConfig | None = field(default=None, repr=False)

    def config(self) -> PipelineConfig:
        """Load (once) and validate the configuration; raises ConfigError."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


class PipelineGroup(click.Group):
    """A group that turns PipelineError from any command into stderr lines and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as error:
            for line in error.lines():
                click.echo(line, err=True)
            raise click.exceptions.Exit(EXIT_PIPELINE_ERROR) from None


def load(ctx: click.Context) -> PipelineConfig:
    """The validated configuration for the running command."""
    state = ctx.find_object(CliState)
    assert state is not None, "main() puts a CliState in ctx.obj"
    return state.config()


@click.group(cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="temporal-deploy-pipeline", prog_name="pipeline")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PIPELINE_CONFIG",
    default=None,
    help="Configuration file [env PIPELINE_CONFIG; default ./config.toml].",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Build, deploy and watch Temporal workers on Kubernetes, orchestrated by Temporal."""
    ctx.obj = CliState(config_path=config_path)


@main.command("config")
@click.option("--app", "app_name", metavar="NAME", help="Show only this app.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@click.pass_context
def config_command(ctx: click.Context, app_name: str | None, as_json: bool) -> None:
    """Validate the configuration and print it as the pipeline sees it.

    Defaults are filled in, env overrides applied (marked with the env var
    that set them) and paths made absolute: the output is a valid config.toml.
    """
    config = load(ctx)
    data = to_dict(config, app=app_name)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    notes = {key: f"from env {name}" for key, name in config.env_overrides.items()}
    click.echo(f"# {config.path}\n" + to_toml(data, notes=notes), nl=False)


# ----- deployments -----

EXIT_FAILED = 1
EXIT_ROLLED_BACK = 3


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@main.command()
@click.option("--app", "app_name", metavar="NAME", help="App to deploy [default: [pipeline].default_app].")
@click.option("--tag", help="Tag for the built image [default: derived from the build context's content].")
@click.option("--image", metavar="REF", help="Deploy this existing image instead of building.")
@click.option("--follow", is_flag=True, help="Show each step and its progress live.")
@click.option("--detach", is_flag=True, help="Return once the deployment has started.")
@click.option("--dry-run", is_flag=True, help="Show what would change in the cluster (server-side dry run); start nothing.")
@click.pass_context
def deploy(
    ctx: click.Context, app_name: str | None, tag: str | None, image: str | None, follow: bool, detach: bool, dry_run: bool
) -> None:
    """Deploy an app: build, push, apply, roll out, verify polling; roll back on failure.

    Exits 0 when the new version is verified, 1 when the deployment failed,
    3 when it ended rolled back.
    """
    config = load(ctx)
    request = deploy_request(config, app_name, image=image or "", tag=tag or "", requested_by=_who())
    if request.image:
        request = replace(request, image=images.resolve_digest(request.image))
    if dry_run:
        _dry_run(config, request)
        return
    ctx.exit(_run(_deploy(config, request, follow=follow, detach=detach)))


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
    return _report(result, url)


def _report(result: DeploymentResult, url: str) -> int:
    if result.outcome == "succeeded":
        click.echo(f"Deployed {result.image}: verified, polling: {', '.join(p.identity for p in result.pollers) or '-'}")
    elif result.outcome == "rolled_back":
        click.echo(f"Rolled back to {result.restored_image}: {result.reason}", err=True)
    else:
        click.echo(f"Deployment failed: {result.reason}", err=True)
    click.echo(f"Web UI: {url}")
    return {"succeeded": 0, "rolled_back": EXIT_ROLLED_BACK}.get(result.outcome, EXIT_FAILED)


def _dry_run(config: PipelineConfig, request: DeployRequest) -> None:
    image, build_id = images.image_for_preview(request)
    manifests = render.render_manifests(RenderInput(app=request.app, temporal=request.temporal, image=image, build_id=build_id))
    kube = kube_connect(kubeconfig=request.cluster.kubeconfig, context=request.cluster.context)
    changes = kube_apply.diff_for_dry_run(kube, manifests.objects, field_manager=FIELD_MANAGER)
    for change in changes:
        click.echo(f"{change.kind} {change.namespace + '/' if change.namespace else ''}{change.name}: {change.action}")
        if change.diff:
            click.echo(change.diff.rstrip())
    click.echo(f"(dry run of {image} against {request.cluster.kubeconfig or 'the default kubeconfig'}: nothing was changed)")


@main.command()
@click.argument("app", required=False)
@click.pass_context
def status(ctx: click.Context, app: str | None) -> None:
    """Where the latest deployment of APP is: step, image, replicas, pollers."""
    config = load(ctx)
    app_name = config.app(app).name
    _run(_status(config, app_name))


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
        click.echo(f"  activity: {progress.activity}{deployments.format_progress(progress).split(':', 1)[1]}")
    click.echo(f"  pollers:  {', '.join(st.pollers) or '-'}")
    if st.rollback_requested:
        click.echo(f"  rollback requested: {st.rollback_reason or '(no reason given)'}")
    click.echo(f"Web UI: {url}")


@main.command()
@click.argument("app")
@click.option("--reason", default="", help="Why; recorded in the workflow's history.")
@click.option("--detach", is_flag=True, help="Return once the signal is sent.")
@click.pass_context
def rollback(ctx: click.Context, app: str, reason: str, detach: bool) -> None:
    """Stop the running deployment of APP and restore the previous verified revision."""
    config = load(ctx)
    app_name = config.app(app).name
    ctx.exit(_run(_rollback(config, app_name, reason, detach=detach)))


async def _rollback(config: PipelineConfig, app: str, reason: str, *, detach: bool) -> int:
    client = await temporal_connect(temporal_target(config))
    handle = await deployments.request_rollback(client, environment=config.target, app=app, reason=reason, requested_by=_who())
    description = await handle.describe()
    url = deployments.workflow_url(config.temporal.ui_url, config.temporal.namespace, handle.id, description.run_id)
    click.echo(f"Rollback of {app} requested (workflow {handle.id})")
    click.echo(f"Web UI: {url}")
    if detach:
        return 0
    result = await deployments.result_of(handle)
    code = _report(result, url)
    return 0 if result.outcome == "rolled_back" else code


@main.command()
@click.argument("app", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="At most this many.")
@click.pass_context
def history(ctx: click.Context, app: str | None, limit: int) -> None:
    """Past deployments (of APP, or all apps) from Temporal visibility: when, image, outcome, duration."""
    config = load(ctx)
    app_name = config.app(app).name if app else None
    rows = _run(_history(config, app_name, limit))
    if not rows:
        click.echo("no deployments found")
        return
    click.echo(f"{'STARTED (UTC)':<20} {'APP':<18} {'OUTCOME':<12} {'DURATION':>9}  IMAGE")
    for row in rows:
        duration = f"{row.duration.total_seconds():.1f}s" if row.duration else "running"
        click.echo(
            f"{row.started:%Y-%m-%d %H:%M:%S} {row.app:<18} {row.outcome or row.status:<12} {duration:>9}  {row.image or '-'}"
        )


async def _history(config: PipelineConfig, app: str | None, limit: int) -> list[deployments.HistoryRow]:
    client = await temporal_connect(temporal_target(config))
    return await deployments.history(client, app=app, environment=config.target, limit=limit)


@main.command("render")
@click.option("--app", "app_name", metavar="NAME", help="App to render [default: [pipeline].default_app].")
@click.option("--image", metavar="REF", help="Image to render [default: the registry's build of the current source].")
@click.pass_context
def render_command(ctx: click.Context, app_name: str | None, image: str | None) -> None:
    """Print the Kubernetes manifests a deployment would apply, as YAML (like `helm template`)."""
    config = load(ctx)
    request = deploy_request(config, app_name, image=image or "")
    if request.image:
        request = replace(request, image=images.resolve_digest(request.image))
    ref, build_id = images.image_for_preview(request)
    manifests = render.render_manifests(RenderInput(app=request.app, temporal=request.temporal, image=ref, build_id=build_id))
    click.echo(render.to_yaml(manifests), nl=False)


@main.command("worker")
@click.pass_context
def worker_command(ctx: click.Context) -> None:
    """Run the pipeline's own worker (the deployment workflow and its activities)."""
    config = load(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _run(run_worker(temporal_target(config), task_queue=config.pipeline.task_queue))


if __name__ == "__main__":
    main(prog_name="pipeline")
