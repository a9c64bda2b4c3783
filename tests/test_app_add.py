"""`pipeline app add`: the table it writes, the file it keeps, the task queue it guesses, the mistakes it refuses.

The CLI runs for real in a subprocess on a copy of the shipped config.toml; the
guessing and the text edit are also checked directly (pipeline/app_add.py).
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from pipeline import app_add
from pipeline.config import load_config
from tests.helpers.cli import clean_env, run
from tests.helpers.config import SHIPPED_TEXT, write_config

pytestmark = pytest.mark.unit

ADDED = '\n# Added by `pipeline app add`\n[apps.orders]\ntask_queue = "orders"\nbuild_context = "orders"\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped config, and an app in orders/ whose worker names its task queue once."""
    write_config(tmp_path)
    orders = tmp_path / "orders"
    orders.mkdir()
    (orders / "Dockerfile").write_text("FROM python:3.12-slim\n")
    (orders / "worker.py").write_text('from temporalio.worker import Worker\n\nworker = Worker(client, task_queue="orders")\n')
    return tmp_path


def added_lines(old: str, new: str) -> list[str]:
    """The diff's lines, asserting that it only adds."""
    diff = [line for line in difflib.ndiff(old.splitlines(keepends=True), new.splitlines(keepends=True)) if line[:2] != "  "]
    assert all(line.startswith("+ ") for line in diff), diff
    return [line[2:] for line in diff]


def no_temp_files(directory: Path) -> bool:
    return not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


# ----- success -----


def test_adds_the_table_after_the_last_app_and_keeps_every_other_byte(project: Path) -> None:
    result = run(project, "app", "add", "orders", "--context", "orders")
    assert (result.returncode, result.stderr) == (0, "")
    new = (project / "config.toml").read_text()
    assert new == SHIPPED_TEXT + ADDED  # [apps.pipeline-worker.rollout] is the last table of the shipped file
    assert added_lines(SHIPPED_TEXT, new) == ADDED.splitlines(keepends=True)
    assert "health_port" not in new[len(SHIPPED_TEXT) :]
    assert result.stdout == (
        'config.toml: added [apps.orders]; task queue "orders" found at orders/worker.py:3\n\n'
        + ADDED.lstrip("\n")
        + "\nNext: pipeline deploy --app orders --follow\n"
    )
    assert tomllib.loads(result.stdout.split("\n\n")[1]) == {
        "apps": {"orders": {"task_queue": "orders", "build_context": "orders"}}
    }


def test_the_new_app_validates_and_pipeline_config_shows_it(project: Path) -> None:
    result = run(project, "app", "add", "orders", "--context", "orders", "--replicas", "3", "--dockerfile", "worker.Dockerfile")
    assert "no worker.Dockerfile in it" in result.stderr  # refused first: the file is not there
    (project / "orders" / "worker.Dockerfile").write_text("FROM python:3.12-slim\n")
    result = run(project, "app", "add", "orders", "--context", "orders", "--replicas", "3", "--dockerfile", "worker.Dockerfile")
    assert (result.returncode, result.stderr) == (0, "")
    app = load_config(project / "config.toml", env={}).app("orders")
    assert (app.task_queue, app.replicas) == ("orders", 3)
    assert (app.build_context, app.dockerfile) == (project.resolve() / "orders", project.resolve() / "orders/worker.Dockerfile")
    shown = run(project, "config", "--json", "--app", "orders")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)["apps"]
    assert list(data) == ["orders"] and data["orders"]["task_queue"] == "orders" and data["orders"]["replicas"] == 3
    text = (project / "config.toml").read_text()
    assert text.endswith('build_context = "orders"\ndockerfile = "worker.Dockerfile"\nreplicas = 3\n')


def test_build_context_is_relative_to_the_config_files_directory(tmp_path: Path) -> None:
    """--context is read from the working directory and written relative to the config file, POSIX style."""
    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf")
    (tmp_path / "src" / "orders").mkdir(parents=True)
    (tmp_path / "src" / "orders" / "Dockerfile").write_text("FROM scratch\n")
    result = run(
        tmp_path, "--config", "conf/config.toml", "app", "add", "orders", "--context", "src/orders", "--task-queue", "q1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("Next: pipeline --config conf/config.toml deploy --app orders --follow\n")
    data = tomllib.loads((tmp_path / "conf" / "config.toml").read_text())
    assert data["apps"]["orders"] == {"task_queue": "q1", "build_context": "../src/orders"}
    # the config's own directory is "."; PIPELINE_CONFIG picks the file too (no --config in the next step then)
    env = clean_env(PIPELINE_CONFIG="conf/config.toml")
    result = run(tmp_path, "app", "add", "here", "--context", "conf", "--task-queue", "q2", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("Next: pipeline deploy --app here --follow\n")
    assert tomllib.loads((tmp_path / "conf" / "config.toml").read_text())["apps"]["here"]["build_context"] == "."


def test_the_files_mode_is_kept_and_no_temporary_file_is_left(project: Path) -> None:
    os.chmod(project / "config.toml", 0o640)
    result = run(project, "app", "add", "orders", "--context", "orders")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((project / "config.toml").stat().st_mode) == 0o640
    assert no_temp_files(project)


# ----- the text edit -----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(  # comments leading into the next table stay right above it
            '[apps.a]\ntask_queue = "a"\n\n[apps.a.rollout]\nmax_surge = 1\n\n# the registry\n[registry]\naddress = "r:1"\n',
            '[apps.a]\ntask_queue = "a"\n\n[apps.a.rollout]\nmax_surge = 1\n'
            + ADDED
            + '\n# the registry\n[registry]\naddress = "r:1"\n',
            id="before-the-next-table",
        ),
        pytest.param(  # [apps.*] tables split around another table: after the last one
            '[apps.a]\ntask_queue = "a"\n[registry]\naddress = "r:1"\n[apps.b]\ntask_queue = "b"\n[rollout]\nmax_surge = 1\n',
            '[apps.a]\ntask_queue = "a"\n[registry]\naddress = "r:1"\n[apps.b]\ntask_queue = "b"\n'
            + ADDED
            + "\n[rollout]\nmax_surge = 1\n",
            id="split-apps",
        ),
        pytest.param('[apps.a]\ntask_queue = "a"', '[apps.a]\ntask_queue = "a"\n' + ADDED, id="no-final-newline"),
        pytest.param('[apps]\na = { task_queue = "a" }\n', '[apps]\na = { task_queue = "a" }\n' + ADDED, id="apps-header"),
        pytest.param(
            '[apps.a]\r\ntask_queue = "a"\r\n\r\n[registry]\r\naddress = "r:1"\r\n',
            '[apps.a]\r\ntask_queue = "a"\r\n' + ADDED.replace("\n", "\r\n") + '\r\n[registry]\r\naddress = "r:1"\r\n',
            id="crlf",
        ),
    ],
)
def test_add_app_inserts_one_block_and_changes_nothing_else(text: str, expected: str) -> None:
    assert app_add.add_app(text, "orders", task_queue="orders", build_context="orders") == expected


@pytest.mark.parametrize("text", ['apps = { a = { task_queue = "a" } }\n', 'apps.a.task_queue = "a"\n'])
def test_add_app_refuses_apps_it_cannot_extend_with_a_table(text: str) -> None:
    with pytest.raises(app_add.ConfigError, match=r"\[apps\] is written as an inline table or dotted keys"):
        app_add.add_app(text, "orders", task_queue="orders", build_context="orders")


# ----- guessing the task queue -----


@pytest.mark.parametrize(
    ("name", "source", "line"),
    [
        ("worker.py", 'w = Worker(\n    client,\n    task_queue="orders",\n)\n', 3),
        ("worker.py", "task_queue = 'orders'\n", 1),
        ("settings.py", 'TASK_QUEUE = "orders"\n', 1),
        ("settings.py", '@dataclass\nclass S:\n    task_queue: str = "orders"\n', 3),
        ("settings.py", 'import os\nQUEUE = os.environ.get("TEMPORAL_TASK_QUEUE", "orders")\n', 2),
        ("settings.py", 'QUEUE = os.getenv("TASK_QUEUE", default="orders")\n', 1),
        ("worker.ts", "await Worker.create({\n  workflowsPath,\n  taskQueue: 'orders',\n});\n", 3),
        ("worker.js", "const queue = process.env.TEMPORAL_TASK_QUEUE ?? 'orders';\n", 1),
        ("main.go", 'opts := client.StartWorkflowOptions{ID: "x", TaskQueue: "orders"}\n', 1),
        ("main.go", 'w := worker.New(c, "orders", worker.Options{})\n', 1),
        ("Main.java", 'Worker worker = factory.newWorker("orders");\n', 1),
    ],
)
def test_each_pattern_is_guessed_with_its_file_and_line(tmp_path: Path, name: str, source: str, line: int) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_text(source)
    assert app_add.guess_task_queue(tmp_path) == [app_add.Found("orders", tmp_path / "src" / name, line)]


def test_the_sample_worker_is_guessed(tmp_path: Path) -> None:
    from tests.helpers import REPO_ROOT

    assert {found.value for found in app_add.guess_task_queue(REPO_ROOT / "sample_worker")} == {"sample-worker"}


def test_guessing_skips_dependencies_comments_templates_and_big_files(tmp_path: Path) -> None:
    for skipped in (".git", ".venv", "venv", "node_modules/temporalio", "__pycache__", "build", "dist"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "w.py").write_text('task_queue = "elsewhere"\n')
    (tmp_path / "notes.py").write_text('# task_queue = "old"\nx = 1  # TASK_QUEUE = "old"\nq = f"{p}"\ntask_queue = "{name}"\n')
    (tmp_path / "big.py").write_text('task_queue = "big"\n' + "#" * 100)
    (tmp_path / "w.ts").write_text("// taskQueue: 'old'\n/*\n * taskQueue: 'old'\n */\nconst t = { taskQueue: `q-${n}` };\n")
    (tmp_path / "z.py").write_text('task_queue = "late"\n')
    assert [found.value for found in app_add.guess_task_queue(tmp_path)] == ["big", "late"]
    assert [found.value for found in app_add.guess_task_queue(tmp_path, max_bytes=100)] == ["late"]
    assert [found.value for found in app_add.guess_task_queue(tmp_path, max_files=3)] == ["big"]  # z.py is the 4th


def test_one_queue_named_twice_is_one_guess(project: Path) -> None:
    (project / "orders" / "starter.py").write_text('TASK_QUEUE = "orders"\n')
    result = run(project, "app", "add", "orders", "--context", "orders")
    assert result.returncode == 0, result.stderr
    assert 'task queue "orders" found at orders/starter.py:1' in result.stdout


# ----- refusals: one line, exit 2, the file unchanged -----


def refused(project: Path, *args: str) -> str:
    """Run `pipeline app add ARGS`, check it refused cleanly, and return its one stderr line."""
    before = (project / "config.toml").read_bytes()
    result = run(project, "app", "add", *args)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert (project / "config.toml").read_bytes() == before
    assert no_temp_files(project)
    return result.stderr.rstrip("\n")


def test_several_task_queues_are_listed_with_where(project: Path) -> None:
    (project / "orders" / "billing.go").write_text('package main\n\nconst TaskQueue = "billing"\n')
    assert refused(project, "orders", "--context", "orders") == (
        'several task queues found under orders: "billing" (orders/billing.go:3), "orders" (orders/worker.py:3); '
        "pass --task-queue to pick one"
    )


def test_no_task_queue_found(project: Path) -> None:
    (project / "orders" / "worker.py").write_text("worker = Worker(client, task_queue=settings.queue)\n")
    line = refused(project, "orders", "--context", "orders")
    assert line.startswith("no task queue found in the sources under orders") and line.endswith("pass --task-queue")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("Orders_1", "--context", "orders"),
            'app name must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, '
            'at most 63 characters), got "Orders_1"',
        ),
        (
            ("sample-worker", "--context", "orders"),
            'config.toml: an app named "sample-worker" already exists ([apps.sample-worker]); pick another name',
        ),
        (("orders", "--context", "nowhere"), "--context nowhere: no such directory"),
        (("orders", "--context", "config.toml"), "--context config.toml: not a directory"),
        (
            ("orders", "--context", "empty"),
            "--context empty: no Dockerfile in it (looked for empty/Dockerfile); add one or pass --dockerfile",
        ),
        (
            ("orders", "--context", "orders", "--dockerfile", "prod.Dockerfile"),
            "--context orders: no prod.Dockerfile in it (looked for orders/prod.Dockerfile); check --dockerfile (relative to --context)",
        ),
        (
            ("orders", "--context", "orders", "--task-queue", "deployments"),
            'config.toml: task queue "deployments" is [pipeline].task_queue, the pipeline\'s own; pass another with --task-queue',
        ),
        (
            ("orders", "--context", "orders", "--task-queue", "sample-worker"),
            'config.toml: task queue "sample-worker" is already [apps.sample-worker].task_queue; pass another with --task-queue',
        ),
        (  # found by the loader in the new text, before anything is written
            ("orders", "--context", "orders", "--replicas", "0"),
            "config.toml: [apps.orders].replicas: must be an integer from 1 to 100, got 0",
        ),
    ],
)
def test_refusals_are_one_line_and_leave_the_file_alone(project: Path, args: tuple[str, ...], line: str) -> None:
    (project / "empty").mkdir()
    assert refused(project, *args) == line


def test_a_guessed_queue_that_clashes_says_where_it_was_found(project: Path) -> None:
    (project / "orders" / "worker.py").write_text('TASK_QUEUE = "sample-worker"\n')
    assert refused(project, "orders", "--context", "orders") == (
        'config.toml: task queue "sample-worker" (found at orders/worker.py:1) is already [apps.sample-worker].task_queue; '
        "pass another with --task-queue"
    )


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "Dockerfile").write_text("FROM scratch\n")
    result = run(tmp_path, "app", "add", "orders", "--context", "orders", "--task-queue", "orders")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"config.toml: file not found (looked for {tmp_path.resolve()}/config.toml; pass --config or set PIPELINE_CONFIG)\n"
    )
    assert not (tmp_path / "config.toml").exists()
