"""The `pipeline` command line: one click group, one shared way to load config and fail.

Every command gets the loaded configuration through `load(ctx)`. Any
`PipelineError` raised by a command becomes its lines on stderr and exit code
2, never a traceback; click's own usage errors keep click's exit code 2 and
one-line message. Later commands (deploy, status, rollback, render, history,
worker) are added with `@cli.command()` and need nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from pipeline.config import PipelineConfig, load_config, to_dict, to_toml
from pipeline.errors import PipelineError

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
    assert state is not None, "cli() puts a CliState in ctx.obj"
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
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Build, deploy and watch Temporal workers on Kubernetes, orchestrated by Temporal."""
    ctx.obj = CliState(config_path=config_path)


@cli.command("config")
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
    notes = {
        key: f"from {name}" if name.startswith("profile ") else f"from env {name}" for key, name in config.env_overrides.items()
    }
    click.echo(f"# {config.path}\n" + to_toml(data, notes=notes), nl=False)


@cli.group("app")
def app_group() -> None:
    """Add apps to the configuration file."""


@app_group.command("add")
@click.argument("name")
@click.option(
    "--context", "context", required=True, metavar="DIR", type=click.Path(path_type=Path), help="The app's build context."
)
@click.option("--task-queue", metavar="Q", help="Its Temporal task queue [default: the one its sources under DIR name].")
@click.option("--dockerfile", default="Dockerfile", show_default=True, metavar="F", help="Dockerfile, relative to DIR.")
@click.option("--replicas", type=int, metavar="N", help="Pods to run, 1 to 100 [default: 1].")
@click.pass_context
def app_add_command(
    ctx: click.Context, name: str, context: Path, task_queue: str | None, dockerfile: str, replicas: int | None
) -> None:
    """Add an [apps.NAME] table for the worker built from DIR to the config file.

    The rest of the file is kept byte for byte; the new table goes after the
    last [apps.*] table, and the file is replaced only once the result
    validates. Without --task-queue, the sources under DIR must name exactly
    one task queue (task_queue="...", taskQueue: '...', TaskQueue: "...",
    worker.New(c, "..."), newWorker("...")).
    """
    import shlex

    from pipeline import app_add

    config = load(ctx)
    added = app_add.add_to_config(config, name, context, task_queue=task_queue, dockerfile=dockerfile, replicas=replicas)
    found = f'; task queue "{added.task_queue}" found at {added.guessed_from.where()}' if added.guessed_from else ""
    click.echo(f"{config.source}: added [apps.{name}]{found}\n\n{added.table_toml}")
    root = ctx.find_root()
    state = root.find_object(CliState)
    given = root.get_parameter_source("config_path") == click.core.ParameterSource.COMMANDLINE
    option = f"--config {shlex.quote(str(state.config_path))} " if given and state and state.config_path else ""
    click.echo(f"Next: pipeline {option}deploy --app {name} --follow")


# ----- deployments (behaviour in pipeline.commands, imported when a command runs) -----


@cli.command()
@click.option("--app", "app_name", metavar="NAME", help="App to deploy [default: [pipeline].default_app].")
@click.option("--tag", help="Tag for the built image [default: derived from the build context's content].")
@click.option("--image", metavar="REF", help="Deploy this existing image instead of building.")
@click.option(
    "--no-build",
    is_flag=True,
    help="Deploy the image already built from the current source (by its source hash); fail instead of building.",
)
@click.option("--follow", is_flag=True, help="Show each step and its progress live.")
@click.option("--detach", is_flag=True, help="Return once the deployment has started.")
@click.option("--dry-run", is_flag=True, help="Show what would change in the cluster (server-side dry run); start nothing.")
@click.option(
    "--context",
    "context",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Build this deploy from DIR instead of the app's build_context (its Dockerfile at the same relative path).",
)
@click.option(
    "--skip-gate",
    "skip_gates",
    multiple=True,
    metavar="NAME",
    help="Do not run this gate of the app (repeatable); needs --reason. Recorded in the history with who skipped it.",
)
@click.option("--reason", default="", help="Why the gates named by --skip-gate are skipped.")
@click.pass_context
def deploy(
    ctx: click.Context,
    app_name: str | None,
    tag: str | None,
    image: str | None,
    no_build: bool,
    follow: bool,
    detach: bool,
    dry_run: bool,
    context: Path | None,
    skip_gates: tuple[str, ...],
    reason: str,
) -> None:
    """Deploy an app: build, push, apply, roll out, verify polling; roll back on failure.

    Exits 0 when the new version is verified, 1 when the deployment failed,
    3 when it ended rolled back, 4 when it was canceled (after restoring the
    previous verified revision), 5 when it was terminated or timed out (no
    rollback ran; the drift between cluster and record is printed), 2 on bad input.

    The build context is packed (.dockerignore honoured) and uploaded before the
    deployment starts (one line says what travelled; an unchanged source uploads nothing).
    """
    from pipeline import commands

    config = load(ctx)
    if context is not None and image:
        raise PipelineError("--context and --image exclude each other: --image names an image that is not built")
    request = commands.prepare(config, app_name, image=image or "", tag=tag or "", no_build=no_build, context=context)
    request = commands.skipping(request, skip_gates, reason)
    if dry_run:
        commands.dry_run(config, request)
        return
    if not no_build:
        request = commands.ship(config, request, context=context)
    ctx.exit(commands.deploy(config, request, follow=follow, detach=detach))


@cli.command()
@click.argument("app", required=False)
@click.pass_context
def status(ctx: click.Context, app: str | None) -> None:
    """Where the latest deployment of APP is: step, image, replicas, pollers."""
    from pipeline import commands

    config = load(ctx)
    commands.status(config, config.app(app).name)


@cli.command()
@click.argument("app")
@click.option("--reason", default="", help="Why; recorded in the workflow's history.")
@click.option(
    "--to",
    "to",
    metavar="IMAGE",
    default="",
    help="With no deployment running: restore this verified revision (image, digest or a 12+ character digest prefix) "
    "instead of the one before the current.",
)
@click.option("--follow", is_flag=True, help="Show each step and its progress live.")
@click.option("--detach", is_flag=True, help="Return once the rollback is accepted (or its workflow started).")
@click.pass_context
def rollback(ctx: click.Context, app: str, reason: str, to: str, follow: bool, detach: bool) -> None:
    """Roll APP back to a verified revision, and verify it.

    While a deployment of APP runs: it stops and restores the previous verified
    revision (the `rollback` update, which answers with the image it restores).
    When none runs: a deployment workflow restores the verified revision before
    the current one (like `kubectl rollout undo`), or the one named by --to,
    without building: apply, roll out, verify polling, record.

    Exits 0 when that revision runs verified, 1 when the rollback failed, 3 when
    a restore failed and the current revision was put back, 2 on bad input.
    """
    from pipeline import commands

    config = load(ctx)
    ctx.exit(commands.rollback(config, config.app(app).name, reason, to=to, follow=follow, detach=detach))


@cli.command()
@click.argument("app")
@click.option("--full", is_flag=True, help="Skip the remaining ramp steps: make the new version current now.")
@click.pass_context
def promote(ctx: click.Context, app: str, full: bool) -> None:
    """Ramp APP's new version to its next step now (a versioned app's running deployment)."""
    from pipeline import commands

    config = load(ctx)
    ctx.exit(commands.version_verb(config, config.app(app).name, "promote", full=full))


@cli.command()
@click.argument("app")
@click.pass_context
def pause(ctx: click.Context, app: str) -> None:
    """Hold APP's ramp at its current step until `pipeline resume` (or promote, or rollback)."""
    from pipeline import commands

    config = load(ctx)
    ctx.exit(commands.version_verb(config, config.app(app).name, "pause"))


@cli.command()
@click.argument("app")
@click.pass_context
def resume(ctx: click.Context, app: str) -> None:
    """Go on with APP's paused ramp."""
    from pipeline import commands

    config = load(ctx)
    ctx.exit(commands.version_verb(config, config.app(app).name, "resume"))


@cli.command()
@click.argument("app", required=False)
@click.pass_context
def versions(ctx: click.Context, app: str | None) -> None:
    """A versioned app's versions: build, status (current, ramping %, draining, drained), pinned workflows, pods."""
    from pipeline import commands

    config = load(ctx)
    ctx.exit(commands.versions(config, config.app(app).name))


@cli.command()
@click.argument("app", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="At most this many.")
@click.pass_context
def history(ctx: click.Context, app: str | None, limit: int) -> None:
    """Past deployments (of APP, or all apps) from Temporal visibility: when, image, outcome, duration."""
    from pipeline import commands, deployments

    config = load(ctx)
    rows = commands.history(config, config.app(app).name if app else None, limit)
    if not rows:
        click.echo("no deployments found")
        return
    click.echo(f"{'STARTED (UTC)':<20} {'APP':<18} {'OUTCOME':<12} {'DURATION':>9}  IMAGE")
    for row in rows:
        duration = f"{row.duration.total_seconds():.1f}s" if row.duration else "running"
        click.echo(f"{row.started:%Y-%m-%d %H:%M:%S} {row.app:<18} {row.shown_outcome:<12} {duration:>9}  {row.image or '-'}")
    newest: dict[str, deployments.HistoryRow] = {}
    for row in rows:
        newest.setdefault(row.app, row)
    for name, row in newest.items():  # a running deployment differs from the record by design: not drift
        if name in config.apps and row.closed is not None and (line := commands.drift_line(config, name)):
            click.echo(line, err=True)
    click.echo(f"Web UI: {commands.history_url(config, config.app(app).name if app else None)}")


@cli.command("render")
@click.option("--app", "app_name", metavar="NAME", help="App to render [default: [pipeline].default_app].")
@click.option("--image", metavar="REF", help="Image to render [default: the registry's build of the current source].")
@click.pass_context
def render_command(ctx: click.Context, app_name: str | None, image: str | None) -> None:
    """Print the Kubernetes manifests a deployment would apply, as YAML (like `helm template`)."""
    from pipeline import commands

    click.echo(commands.render_yaml(load(ctx), app_name, image or ""), nl=False)


@cli.command("bootstrap")
@click.option(
    "--azure",
    is_flag=True,
    help="First ensure the resource group, ACR registry and AKS cluster (OIDC issuer, workload identity, "
    'AcrPull for its kubelet identity) exist; needs target = "aks".',
)
@click.option(
    "--no-role-assignments",
    is_flag=True,
    help="With --azure: create everything but role assignments (for an identity that may create resources but not "
    "assign roles, e.g. Contributor); the missing ones are printed and written to --role-assignments-file as "
    "`az role assignment create` commands for an administrator.",
)
@click.option(
    "--role-assignments-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where --no-role-assignments writes the commands [default: azure-role-assignments.sh beside the config].",
)
@click.pass_context
def bootstrap_command(ctx: click.Context, azure: bool, no_role_assignments: bool, role_assignments_file: Path | None) -> None:
    """Deploy the pipeline's own worker into the cluster (the first time with a temporary local worker).

    Already deployed and polling [pipeline].task_queue: says so and changes nothing.
    Every time, first: the Secrets of [temporal].api_key_secret and tls_secret
    are written from the variable, profile or files the config names (values
    never shown), and the search attributes are added to the namespace where
    the server allows it; where not (Temporal Cloud) the missing ones are
    printed with the `tcld` command that adds them (exit 2).
    With --azure, the Azure resources are ensured first, one line each
    ("created" or "exists"); an existing one with incompatible settings is
    reported and left alone (exit 2), a failed Azure operation exits 1.
    Before creating anything it asks Azure what the caller may do and whether
    the registry name is free; a missing action or a taken name creates
    nothing (exit 2). With --no-role-assignments, role assignments still
    missing are printed as `az role assignment create` commands and written
    to a file (exit 2); once an administrator made them, run it again.
    Exit codes as `deploy`: 0 verified, 1 failed, 3 rolled back, 2 bad input.
    """
    import logging

    from pipeline import commands, selfdeploy

    config = load(ctx)
    if azure:
        if config.target != "aks":
            raise PipelineError(
                f'{config.source}: `pipeline bootstrap --azure` needs target = "aks" (it is "{config.target}"); '
                "set it and the [azure], [acr] and [aks] settings, or run `pipeline bootstrap` without --azure"
            )
        from pipeline.azure import base_image, provision, role_grants

        try:
            outcomes = provision.provision(provision.plan_for(config), say=click.echo, assign_roles=not no_role_assignments)
            base_image.publish_for(config, say=click.echo)  # host-only base images where ACR Tasks runs can pull them
        except provision.AzureOperationFailed as error:
            click.echo(error.message, err=True)
            raise click.exceptions.Exit(1) from None
        if pending := provision.pending_grants(outcomes):  # --no-role-assignments: left to an administrator
            path = role_assignments_file or config.path.parent / "azure-role-assignments.sh"
            path.write_text(role_grants.script(pending))
            click.echo(
                f"{len(pending)} role assignment(s) are missing; an administrator (Owner, User Access Administrator "
                "or Role Based Access Control Administrator) must make them:",
                err=True,
            )
            for grant in pending:
                click.echo(grant.command(), err=True)
            click.echo(
                f"written to {path}; once they exist, run `pipeline bootstrap --azure --no-role-assignments` again "
                "(`pipeline doctor` shows them)",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_PIPELINE_ERROR)
    elif no_role_assignments or role_assignments_file:
        raise PipelineError("--no-role-assignments and --role-assignments-file go with --azure")
    # Warnings only: the temporary worker's INFO lines would drown the deployment's progress.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise click.exceptions.Exit(commands.run(selfdeploy.bootstrap(config, say=click.echo)))


@cli.command("teardown")
@click.option(
    "--azure",
    is_flag=True,
    help="Also delete the Azure resources `bootstrap --azure` created (tagged created-by: temporal-deploy-pipeline) "
    'and its role assignments; needs target = "aks".',
)
@click.option("--yes", is_flag=True, help="Delete without asking (needed when stdin is not a terminal).")
@click.pass_context
def teardown_command(ctx: click.Context, azure: bool, yes: bool) -> None:
    """Remove what `pipeline bootstrap` created, and only that; list what is left because it existed before.

    Kubernetes: every object in [kubernetes].namespace labelled app.kubernetes.io/managed-by=temporal-deploy-pipeline
    (the pipeline worker and the apps it deployed), then the namespace if the pipeline created it. With --azure:
    the role assignments, federated credential, managed identity, AKS cluster, registry and resource group that
    bootstrap --azure created, each long-running delete waited for. Prints the plan, then asks unless --yes.
    Exits 0 when done (or nothing is left), 1 when declined or an Azure delete failed, 2 on errors.
    """
    from pipeline import teardown
    from pipeline.errors import AzureOperationFailed

    config = load(ctx)
    try:
        code = teardown.run(
            config,
            azure=azure,
            yes=yes,
            interactive=sys.stdin.isatty(),
            confirm=lambda question: click.confirm(question, default=False),
            say=click.echo,
        )
    except AzureOperationFailed as error:  # as `bootstrap --azure`: a failed Azure operation exits 1
        click.echo(error.message, err=True)
        code = 1
    ctx.exit(code)


@cli.command("worker")
@click.pass_context
def worker_command(ctx: click.Context) -> None:
    """Run the pipeline's own worker (the deployment workflow and its activities).

    Without --config/PIPELINE_CONFIG and with no ./config.toml (the pipeline-worker
    image ships none), the settings are the defaults plus the environment:
    TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS, TEMPORAL_API_KEY_ENV,
    PIPELINE__PIPELINE__TASK_QUEUE, any PIPELINE__SECTION__KEY.
    """
    from pipeline import commands

    state = ctx.find_object(CliState)
    assert state is not None
    commands.worker(load_config(state.config_path, worker=True))


@cli.command("doctor")
@click.argument("app", required=False)
@click.pass_context
def doctor_command(ctx: click.Context, app: str | None) -> None:
    """Check what a deployment of APP needs, one line each: ok, FAIL (with the fix) or skip.

    In order: the config, Temporal reachable, its namespace, the TLS/API key
    setting, the registry, the cluster and the pipeline's verbs there, the
    pipeline worker polling its queue, APP's pods (a crashing pod's last log
    lines), APP's task queue pollers (and where else Temporal saw a pod that does
    not poll it), the queue's backlog. Exits 1 if any check FAILs, else 0.
    APP defaults to [pipeline].default_app.
    """
    from pipeline import doctor
    from pipeline.errors import ConfigError

    state = ctx.find_object(CliState)
    assert state is not None
    try:
        config: PipelineConfig | ConfigError = state.config()
    except ConfigError as error:
        config = error
    checks = doctor.run(config, app)
    for check in checks:
        for line in doctor.format_check(check):
            click.echo(line)
    ctx.exit(1 if doctor.failed(checks) else 0)


def main() -> None:
    """The `pipeline` console script: run the command, then leave without interpreter finalization.

    temporalio's native bridge can call back into Python while the interpreter
    finalizes and abort the process ("Fatal Python error: PyGILState_Release",
    exit 134) after the command already succeeded (temporalio/sdk-python#300).
    Output is flushed and the exit code is kept; only the teardown is skipped.
    """
    code = 0
    try:
        cli.main(prog_name="pipeline")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
