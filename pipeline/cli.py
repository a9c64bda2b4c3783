"""The `pipeline` command line: one click group, one shared way to load config and fail.

Every command gets the loaded configuration through `load(ctx)`. Any
`PipelineError` raised by a command becomes its lines on stderr and exit code
2, never a traceback; click's own usage errors keep click's exit code 2 and
one-line message. Later commands (deploy, status, rollback, render, history,
worker) are added with `@main.command()` and need nothing else.
"""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    main(prog_name="pipeline")
