"""Path values the OS refuses (too long, a NUL, a symlink loop, an unknown "~user") are config lines.

Each is one `config.toml: [section].key: reason` line (or `env NAME: ...` when the
environment set it), collected with every other problem, never an OSError
traceback from the first command that touches the path.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TEXT = (REPO_ROOT / "config.toml").read_text(encoding="utf-8")
DOCKERFILE = "FROM python:3.12-slim AS deps\nFROM deps AS sample-worker\nFROM deps AS pipeline-worker\n"
APP = "[apps.sample-worker]"
TOO_LONG = os.strerror(errno.ENAMETOOLONG)  # "File name too long"
LOOP = os.strerror(errno.ELOOP)  # "Too many levels of symbolic links"
NO_USER = "~no-such-user-for-pipeline-tests"
LONG_ENV = "PIPELINE__APPS__SAMPLE_WORKER__BUILD_CONTEXT"


def shown(text: str) -> str:
    """A value as the problem lines quote it: JSON, cut to 60 characters."""
    return '"' + (text if len(text) <= 60 else text[:57] + "...") + '"'


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped config.toml and a Dockerfile with its stages, in the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "config.toml").write_text(SHIPPED_TEXT)
    return tmp_path


def app_key(workdir: Path, key: str, value: str, app: str = "sample-worker") -> None:
    """Set `key = value` (TOML text) at the top of [apps.<app>] in ./config.toml, replacing the key's line."""
    path = workdir / "config.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.split("#")[0].strip() == f"[apps.{app}]")) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [line for line in lines[start:end] if line.split("=")[0].strip() != key]
    path.write_text("\n".join([*lines[:start], f"{key} = {value}", *body, *lines[end:]]) + "\n")


def problems(env: dict[str, str] | None = None, path: str = "config.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(Path(path), env=env or {})
    return info.value.problems


def test_a_5000_character_build_context_from_env_is_one_line(workdir: Path) -> None:
    value = "a" * 5000
    assert problems({LONG_ENV: value}) == [
        f"env {LONG_ENV}: {APP}.build_context: not a usable path ({TOO_LONG}), got {shown(value)}"
    ]


def test_a_component_longer_than_name_max_in_the_file_is_one_line(workdir: Path) -> None:
    value = "sub/" + "b" * 300  # a whole path well under PATH_MAX; one name over NAME_MAX
    (workdir / "sub").mkdir()
    app_key(workdir, "build_context", f'"{value}"')
    assert problems() == [f"config.toml: {APP}.build_context: not a usable path ({TOO_LONG}), got {shown(value)}"]


def test_a_nul_character_is_one_line_without_the_nul(workdir: Path) -> None:
    app_key(workdir, "build_context", '"a\\u0000b"')
    found = problems()
    assert found == [f'config.toml: {APP}.build_context: not a usable path (it contains a NUL character), got "a\\u0000b"']
    assert "\0" not in found[0]


def test_a_symlink_loop_is_one_line(workdir: Path) -> None:
    (workdir / "loop-a").symlink_to("loop-b")
    (workdir / "loop-b").symlink_to("loop-a")
    app_key(workdir, "dockerfile", '"loop-a"')
    assert problems() == [f'config.toml: {APP}.dockerfile: not a usable path ({LOOP}), got "loop-a"']


def test_an_unknown_home_directory_is_one_line(workdir: Path) -> None:
    app_key(workdir, "build_context", f'"{NO_USER}/src"')
    assert problems() == [
        f'config.toml: {APP}.build_context: not a usable path (no home directory for "{NO_USER}"), got "{NO_USER}/src"'
    ]


def test_a_dockerfile_name_too_long_is_one_line(workdir: Path) -> None:
    value = "d" * 300
    env = {"PIPELINE__APPS__SAMPLE_WORKER__DOCKERFILE": value}
    assert problems(env) == [
        f"env PIPELINE__APPS__SAMPLE_WORKER__DOCKERFILE: {APP}.dockerfile: not a usable path ({TOO_LONG}), got {shown(value)}"
    ]


def test_kubeconfig_entries_must_be_usable_paths_but_need_not_exist(workdir: Path) -> None:
    value = "k" * 5000
    found = problems({"KUBECONFIG": f"/missing/config{os.pathsep}{value}{os.pathsep}{NO_USER}/config"})
    assert found == [f"env KUBECONFIG: [kubernetes].kubeconfig: not a usable path ({TOO_LONG}), got {shown(value)}"]
    config = load_config(Path("config.toml"), env={"KUBECONFIG": f"/missing/config{os.pathsep}kube/config"})
    assert config.kubernetes.kubeconfig == f"/missing/config{os.pathsep}{workdir}/kube/config"


def test_path_problems_are_collected_with_every_other_problem(workdir: Path) -> None:
    app_key(workdir, "replicas", "0")
    app_key(workdir, "dockerfile", '"c\\u0000"', app="pipeline-worker")
    value = "a" * 5000
    assert problems({LONG_ENV: value, "TEMPORAL_ADDRESS": "nope"}) == [
        'env TEMPORAL_ADDRESS: [temporal].address: must be host:port, got "nope"',
        f"config.toml: {APP}.replicas: must be an integer from 1 to 100, got 0",
        f"env {LONG_ENV}: {APP}.build_context: not a usable path ({TOO_LONG}), got {shown(value)}",
        'config.toml: [apps.pipeline-worker].dockerfile: not a usable path (it contains a NUL character), got "c\\u0000"',
    ]


def test_usable_paths_still_resolve_and_missing_ones_say_so(workdir: Path) -> None:
    (workdir / "src").mkdir()
    (workdir / "src" / "Dockerfile").write_text(DOCKERFILE)
    (workdir / "link").symlink_to("src")
    app_key(workdir, "build_context", '"link"')
    assert load_config(Path("config.toml"), env={}).app().build_context == (workdir / "src").resolve()
    app_key(workdir, "build_context", '"Dockerfile/sub"')  # under a file: missing, not unusable
    assert problems() == [
        f"config.toml: {APP}.build_context: must be an existing directory, got {workdir.resolve()}/Dockerfile/sub"
    ]


def test_a_config_path_with_an_unknown_home_is_one_line(workdir: Path) -> None:
    assert problems(path=f"{NO_USER}/config.toml") == [
        f'{NO_USER}/config.toml: cannot be read: no home directory for "{NO_USER}"'
    ]


# --- the command line: exit 2 and the one line, before anything else is tried -----------------


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything that would override config.toml."""
    prefixes = ("PIPELINE", "TEMPORAL_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | extra


@pytest.mark.parametrize("args", [("config",), ("render",), ("deploy", "--dry-run")], ids=" ".join)
def test_cli_reports_the_long_build_context_as_one_line_and_exits_2(workdir: Path, args: tuple[str, ...]) -> None:
    value = "a" * 5000
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=workdir,
        env=clean_env(**{LONG_ENV: value}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"env {LONG_ENV}: {APP}.build_context: not a usable path ({TOO_LONG}), got {shown(value)}"
    ]
