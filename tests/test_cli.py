"""The `pipeline` console script, run for real in a subprocess.

Checks what a person sees: exit codes, exact stderr lines, and never a
traceback, for good config, bad config, unknown apps and usage mistakes.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.config import load_config, to_dict
from tests.helpers.cli import clean_env, run
from tests.helpers.config import APP, SHIPPED_TEXT, write_config

pytestmark = pytest.mark.unit

SCRIPT = Path(sys.executable).parent / "pipeline"


def test_config_prints_the_effective_config_as_loadable_toml(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = run(tmp_path, "config")
    assert (result.returncode, result.stderr) == (0, "")
    expected = to_dict(load_config(tmp_path / "config.toml", env={}))
    assert tomllib.loads(result.stdout) == expected
    assert result.stdout.startswith(f"# {tmp_path.resolve() / 'config.toml'}\n")


def test_config_marks_env_overrides_and_json_shows_them(tmp_path: Path) -> None:
    write_config(tmp_path)
    env = clean_env(TEMPORAL_ADDRESS="temporal.prod:7233", PIPELINE__APPS__SAMPLE_WORKER__REPLICAS="4")
    toml_out = run(tmp_path, "config", env=env)
    assert toml_out.returncode == 0
    assert 'address = "temporal.prod:7233"  # from env TEMPORAL_ADDRESS\n' in toml_out.stdout
    assert "replicas = 4  # from env PIPELINE__APPS__SAMPLE_WORKER__REPLICAS\n" in toml_out.stdout
    json_out = run(tmp_path, "config", "--json", env=env)
    data = json.loads(json_out.stdout)
    assert (data["temporal"]["address"], data["apps"]["sample-worker"]["replicas"]) == ("temporal.prod:7233", 4)
    assert data["apps"]["sample-worker"]["resources"]["cpu_limit"] == "500m"


def test_config_app_shows_one_app(tmp_path: Path) -> None:
    write_config(tmp_path, text=SHIPPED_TEXT + '\n[apps.other]\ntask_queue = "other"\n')
    result = run(tmp_path, "config", "--json", "--app", "other")
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["apps"]) == ["other"]


def test_bad_config_exits_2_with_exactly_the_problem_lines(tmp_path: Path) -> None:
    write_config(tmp_path, ("temporal", "tls", '"no"'), (APP, "replicas", "0"))
    result = run(tmp_path, "config", env=clean_env(TEMPORAL_ADDRESS="nope"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        'env TEMPORAL_ADDRESS: [temporal].address: must be host:port, got "nope"',
        'config.toml: [temporal].tls: must be true or false, got "no"',
        f"config.toml: [{APP}].replicas: must be an integer from 1 to 100, got 0",
    ]
    assert "Traceback" not in result.stderr


def test_unknown_app_is_one_line(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = run(tmp_path, "config", "--app", "unknown")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == 'config.toml: no app named "unknown"; known apps: "sample-worker", "pipeline-worker"\n'


def test_config_option_and_env_var_pick_the_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    write_config(tmp_path / "elsewhere", (APP, "replicas", "7"))
    by_option = run(tmp_path, "--config", "elsewhere/config.toml", "config", "--json")
    by_env = run(tmp_path, "config", "--json", env=clean_env(PIPELINE_CONFIG="elsewhere/config.toml"))
    for result in (by_option, by_env):
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["apps"]["sample-worker"]["replicas"] == 7


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "--config", "missing.toml", "config")
    assert result.returncode == 2
    assert result.stderr == (
        f"missing.toml: file not found (looked for {tmp_path.resolve()}/missing.toml; pass --config or set PIPELINE_CONFIG)\n"
    )


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('target = "local"\n\n[temporal\n')
    result = run(tmp_path, "config")
    assert result.returncode == 2
    assert result.stderr == "config.toml: line 3: expected ']' at the end of a table declaration (column 10)\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("bogus",), ("No such command", "bogus")),
        (("config", "--bogus"), ("No such option", "--bogus")),
        (("config", "--app"), ("--app", "requires an argument")),
    ],
)
def test_usage_errors_keep_clicks_exit_code_and_message(tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]) -> None:
    """Click's own one-line error (its wording varies by click version), after its usage line."""
    write_config(tmp_path)
    result = run(tmp_path, *args)
    assert (result.returncode, result.stdout) == (2, "")
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and all(word in last for word in words)
    assert "python -m" not in result.stderr  # the usage line names the `pipeline` command
    assert "Traceback" not in result.stderr


def test_installed_console_script_version_and_help(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        pytest.skip("the pipeline console script is not installed: pip install -e .")
    version = run(tmp_path, "--version", command=(str(SCRIPT),))
    assert (version.returncode, version.stdout) == (0, "pipeline, version 0.1.0\n")
    help_text = run(tmp_path, "--help", command=(str(SCRIPT),))
    assert help_text.returncode == 0 and "config" in help_text.stdout and "--config PATH" in help_text.stdout
    write_config(tmp_path)
    assert run(tmp_path, "config", command=(str(SCRIPT),)).returncode == 0
