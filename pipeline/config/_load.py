"""Finding, reading and parsing config.toml, then applying env overrides and the schema."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pipeline.config._env import apply_env
from pipeline.config._model import PipelineConfig
from pipeline.config._profile import apply_profile
from pipeline.config._reader import Problems
from pipeline.config._schema import build
from pipeline.errors import ConfigError

DEFAULT_PATH = Path("config.toml")
_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None, *, worker: bool = False) -> PipelineConfig:
    """The validated configuration from `path` (default `$PIPELINE_CONFIG` or ./config.toml).

    `env` (default `os.environ`) overrides the file. Raises ConfigError listing
    every problem, one line each, so the file can be fixed in one pass.

    `worker=True` is what `pipeline worker` loads: it needs only [temporal] and
    [pipeline], so when no path was asked for (neither `path` nor
    PIPELINE_CONFIG) and ./config.toml does not exist, it is the built-in
    defaults plus the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
    PIPELINE__PIPELINE__TASK_QUEUE, ...), and no [apps] table is required. That
    is how the pipeline-worker image runs: it holds no config file.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    defaults_only = False
    if path is None:
        path = Path(environ.get("PIPELINE_CONFIG") or DEFAULT_PATH)
        defaults_only = worker and not environ.get("PIPELINE_CONFIG") and not path.expanduser().exists()
    problems = Problems(str(path) if not defaults_only else "(no config file: defaults and environment)")
    data: dict[str, object] = {} if defaults_only else _read_toml(path, problems.file.label)
    apply_env(data, environ, problems)
    apply_profile(data, environ, problems)  # after the env, so that env overrides win (see _profile.py)
    config = build(data, problems, path=path.expanduser().resolve(), require_apps=not worker)
    if problems.lines:
        raise ConfigError(problems.lines)
    return config


def _read_toml(path: Path, label: str) -> dict[str, object]:
    """The parsed file, or a one-line ConfigError saying what is wrong with it."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        where = path.expanduser().absolute()
        problem = f"file not found (looked for {where}; pass --config or set PIPELINE_CONFIG)"
    except IsADirectoryError:
        problem = "is a directory, expected a TOML file"
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except OSError as error:
        problem = f"cannot be read: {error.strerror}"
    except ValueError:
        problem = "cannot be read: its name contains a NUL character"
    except RuntimeError:  # Path.expanduser: no home directory for "~" or "~user"
        problem = f'cannot be read: no home directory for "{path.parts[0]}"'
    else:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            problem = _syntax_error(str(error))
    raise ConfigError([f"{label}: {problem}"])


def _syntax_error(message: str) -> str:
    """tomllib's "Msg (at line 3, column 5)" as "line 3: msg (column 5)"."""
    match = _POSITION.search(message)
    if match is None:
        return f"invalid TOML: {message}"
    reason = message[: match.start()]
    reason = reason[:1].lower() + reason[1:]
    if match[1] is None:
        return f"end of file: {reason}"
    return f"line {match[1]}: {reason} (column {match[2]})"
