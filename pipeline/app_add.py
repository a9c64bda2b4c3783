"""`pipeline app add`: add an [apps.NAME] table to config.toml, keeping the rest of the file byte for byte.

    guess_task_queue(directory)          -> [(value, file, line)]: task queue literals in the sources
    add_app(config_text, name, ...)      -> the new config text (tomlkit: comments, blank lines, key order kept)
    add_to_config(config, name, ...)     -> what was added: validated with load_config, then written atomically

The new table goes right after the last line of the last [apps.*] table (sub-tables included),
before any comment or blank lines that lead into the next table, with a comment above it.
It declares no health_port: the worker serves no HTTP health endpoint that the pipeline knows of.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import Comment, Item, Table, Whitespace

from pipeline.config import PipelineConfig, load_config
from pipeline.config._rules import DNS_LABEL, is_dns_label
from pipeline.errors import BadRequest, ConfigError

COMMENT = "# Added by `pipeline app add`"
DEFAULT_DOCKERFILE = "Dockerfile"
MAX_FILES = 2000
MAX_FILE_BYTES = 1_000_000
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        "target",
        "out",
        "vendor",
        "site-packages",
    }
)

# ----- guessing the task queue from the sources -----

_STR = r"""(?P<q>["'])(?P<v>[^"'\\\n]+)(?P=q)"""  # a plain one-line string literal (no escapes, no f/r prefix)
_JS_STR = r"""(?P<q>["'`])(?P<v>[^"'`\\\n$]+)(?P=q)"""  # template literals only without ${...}
_GO_STR = r'"(?P<v>[^"\\\n]+)"'
_ENV_NAME = r"""["'][A-Za-z0-9_]*TASK_QUEUE["']"""

_PYTHON = [
    # task_queue="x" (keyword), task_queue = 'x', TASK_QUEUE = "x", self.task_queue: str = "x", TASK_QUEUE_NAME = "x"
    re.compile(rf"(?i)(?<![\w])\w*task_queue(?:_name)?\s*(?::[^=\n]*)?=\s*{_STR}"),
    # os.environ.get("TEMPORAL_TASK_QUEUE", "x"), os.getenv("TASK_QUEUE", default="x")
    re.compile(rf"(?:\.get|getenv)\(\s*{_ENV_NAME}\s*,\s*(?:default\s*=\s*)?{_STR}"),
]
_JS = [
    re.compile(rf"(?<![\w$])taskQueue\s*[:=]\s*{_JS_STR}"),  # { taskQueue: 'x' }, const taskQueue = 'x'
    re.compile(rf"(?<![\w$])\w*TASK_QUEUE(?:_NAME)?\s*=\s*{_JS_STR}"),  # const TASK_QUEUE = 'x'
    re.compile(rf"process\.env\.\w*TASK_QUEUE\s*(?:\?\?|\|\|)\s*{_JS_STR}"),  # process.env.TASK_QUEUE ?? 'x'
    re.compile(rf"process\.env\[{_ENV_NAME}\]\s*(?:\?\?|\|\|)\s*{_JS_STR}"),
]
_GO = [
    re.compile(rf"(?<!\w)TaskQueue\s*:\s*{_GO_STR}"),  # client.StartWorkflowOptions{TaskQueue: "x"}
    re.compile(rf"(?<!\w)worker\.New\(\s*[^,()]+,\s*{_GO_STR}"),  # worker.New(c, "x", worker.Options{})
    re.compile(rf"(?<![\w.])\w*(?:TaskQueue|TASK_QUEUE)(?:Name|_NAME)?\s*(?:string\s*)?=\s*{_GO_STR}"),  # const TaskQueue = "x"
]
_JAVA = [
    re.compile(rf"\bnewWorker\(\s*{_GO_STR}"),  # factory.newWorker("x")
    re.compile(rf"\bsetTaskQueue\(\s*{_GO_STR}"),  # WorkflowOptions.newBuilder().setTaskQueue("x")
    re.compile(rf"(?<![\w.])\w*TASK_QUEUE(?:_NAME)?\s*=\s*{_GO_STR}"),  # static final String TASK_QUEUE = "x";
]
PATTERNS: dict[str, list[re.Pattern[str]]] = {
    ".py": _PYTHON,
    **dict.fromkeys((".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs"), _JS),
    ".go": _GO,
    **dict.fromkeys((".java", ".kt", ".kts"), _JAVA),
}


@dataclass(frozen=True, slots=True)
class Found:
    """A task queue literal in the sources: its value and where (`file` is under the scanned directory)."""

    value: str
    file: Path
    line: int

    def where(self) -> str:
        return f"{self.file.as_posix()}:{self.line}"


def source_files(directory: Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_FILE_BYTES) -> Iterator[Path]:
    """The source files under `directory` that could name a task queue, in a stable order, at most `max_files`.

    Dependency, virtualenv, VCS and build directories (and any hidden one) are skipped; symlinked
    directories are not followed; a file over `max_bytes` is skipped.
    """
    count = 0
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root, name)
            if path.suffix not in PATTERNS or name.endswith(".d.ts"):
                continue
            try:
                if not path.is_file() or path.stat().st_size > max_bytes:
                    continue
            except OSError:
                continue
            yield path
            count += 1
            if count >= max_files:
                return


def scan_text(text: str, suffix: str) -> Iterator[tuple[str, int]]:
    """Each (task queue, line number) that `text`, a source file of kind `suffix`, assigns as a literal.

    Matches in a line comment are skipped, and so are values that cannot be a task queue name
    (whitespace, a template's braces, a "..." placeholder).
    """
    marker = "#" if suffix == ".py" else "//"
    for pattern in PATTERNS.get(suffix, ()):
        for match in pattern.finditer(text):
            value = match["v"]
            line_start = text.rfind("\n", 0, match.start()) + 1
            prefix = text[line_start : match.start()]
            if _in_comment(prefix, marker) or not _plausible(value):
                continue
            yield value, text.count("\n", 0, match.start("v")) + 1


def _in_comment(prefix: str, marker: str) -> bool:
    """Whether a match preceded on its line by `prefix` is in a comment (a block comment's "*" lines too)."""
    if prefix.lstrip().startswith(("/*", "*")) and marker == "//":
        return True
    quote = ""
    for i, char in enumerate(prefix):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif prefix.startswith(marker, i):
            return True
    return False


def _plausible(value: str) -> bool:
    return not any(c.isspace() or c in "{}<>" for c in value) and value.strip(".") != ""


def guess_task_queue(directory: Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_FILE_BYTES) -> list[Found]:
    """Every place the sources under `directory` assign a task queue literal, by file and line.

    Python `task_queue="x"` / `TASK_QUEUE = 'x'` / `os.environ.get("TEMPORAL_TASK_QUEUE", "x")`,
    TypeScript/JavaScript `taskQueue: 'x'`, Go `TaskQueue: "x"` / `worker.New(c, "x", ...)`,
    Java `newWorker("x")` and their constants. Each file is named as `directory / relative path`.
    """
    found: list[Found] = []
    for path in source_files(directory, max_files=max_files, max_bytes=max_bytes):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        hits = sorted(set(scan_text(text, path.suffix)), key=lambda hit: (hit[1], hit[0]))
        found.extend(Found(value, path, line) for value, line in hits)
    return found


def pick_task_queue(found: list[Found], directory: str) -> Found:
    """The one task queue the sources name, or a BadRequest asking for --task-queue."""
    first: dict[str, Found] = {}
    for hit in found:
        first.setdefault(hit.value, hit)
    if len(first) == 1:
        return next(iter(first.values()))
    if not first:
        raise BadRequest(
            f"no task queue found in the sources under {directory} (looked for task_queue=/taskQueue:/TaskQueue:/newWorker "
            "string literals); pass --task-queue"
        )
    listed = ", ".join(f'"{value}" ({hit.where()})' for value, hit in first.items())
    raise BadRequest(f"several task queues found under {directory}: {listed}; pass --task-queue to pick one")


# ----- editing the config text -----


def check_name(data: dict[str, Any], name: str, label: str) -> None:
    """`name` can name a new app: a DNS-1123 label not already an [apps.*] table."""
    if not is_dns_label(name):
        raise BadRequest(f'app name must be {DNS_LABEL.describe}, got "{name}"')
    apps = data.get("apps")
    if isinstance(apps, dict) and name in apps:
        raise BadRequest(f'{label}: an app named "{name}" already exists ([apps.{name}]); pick another name')


def new_table(task_queue: str, build_context: str, dockerfile: str = DEFAULT_DOCKERFILE, replicas: int | None = None) -> Table:
    """The new app's table: task_queue, build_context, then dockerfile and replicas only when not the default."""
    table = tomlkit.table()
    table.add("task_queue", task_queue)
    table.add("build_context", build_context)
    if dockerfile != DEFAULT_DOCKERFILE:
        table.add("dockerfile", dockerfile)
    if replicas is not None:
        table.add("replicas", replicas)
    return table


def show_table(name: str, table: Table) -> str:
    """The table as it is written into the file: the comment, the header, the keys."""
    return f"{COMMENT}\n[apps.{name}]\n{table.as_string()}"


def add_app(
    config_text: str,
    name: str,
    *,
    task_queue: str,
    build_context: str,
    dockerfile: str = DEFAULT_DOCKERFILE,
    replicas: int | None = None,
    label: str = "config.toml",
) -> str:
    """`config_text` with an [apps.`name`] table added after the last [apps.*] table; nothing else changes.

    Raises BadRequest for a bad or taken name, ConfigError when the text cannot take the table
    without other lines changing ([apps] written inline or as dotted keys).
    """
    try:
        data = tomllib.loads(config_text)
        doc = tomlkit.parse(config_text)
    except (tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError) as error:
        raise ConfigError([f"{label}: invalid TOML: {error}"]) from None
    check_name(data, name, label)
    table = new_table(task_queue, build_context, dockerfile, replicas)
    apps = _last_apps_table(doc, label)
    trailing: list[Item] = []
    if apps is None:  # no [apps] yet: at the end of the file
        apps = tomlkit.table(is_super_table=True)
        doc.append("apps", apps)
        apps.trivia.indent = ""
        before = tomlkit.dumps(doc)
    else:
        last = _last_rendered(apps)
        trailing = _pop_trailing_trivia(last)
        before = last.value.as_string() or last.trivia.trail or "[header]"  # "": the file ends right after a header
    # a blank line first (and the newline the file may lack at its end), unless the file is empty
    lead = "" if not before else "\n" if before.endswith("\n") else "\n\n"
    table.trivia.indent = lead + COMMENT + "\n"
    apps.append(name, table)
    followed = bool(trailing) or doc.body[-1][1] is not apps
    if followed and not (trailing and isinstance(trailing[0], Whitespace)):
        trailing.insert(0, tomlkit.nl())  # a blank line between the new table and what comes next
    for item in trailing:  # the comments and blank lines that led into the next table still do
        table.value.body.append((None, item))
    new_text = tomlkit.dumps(doc)
    if "\r\n" in config_text and "\n" not in config_text.replace("\r\n", ""):  # CRLF throughout: the new lines too
        start = len(os.path.commonprefix([config_text, new_text]))
        block = new_text[start : start + len(new_text) - len(config_text)]
        new_text = config_text[:start] + re.sub(r"(?<!\r)\n", "\r\n", block) + config_text[start:]
    _check_only_added(config_text, new_text, data, name, table, label)
    return new_text


def _last_apps_table(doc: tomlkit.TOMLDocument, label: str) -> Table | None:
    """The last top-level `apps` table of the document (a file may split [apps.*] tables around others)."""
    found: Table | None = None
    for key, item in doc.body:
        if key is None or key.key != "apps":
            continue
        if not isinstance(item, Table) or key.is_dotted() or not _has_header(item):
            raise ConfigError(
                [
                    f"{label}: [apps] is written as an inline table or dotted keys; write it as [apps.<name>] tables to use `app add`"
                ]
            )
        found = item
    return found


def _has_header(table: Table) -> bool:
    """Whether the table's apps are [apps.<name>] / [apps] tables, not `apps.x.key = ...` dotted keys."""
    return not table.is_super_table() or all(isinstance(item, Table) and _has_header(item) for _, item in table.value.body)


def _last_rendered(table: Table) -> Table:
    """The table whose lines come last under `table`: itself, or its last sub-table's, recursively."""
    node = table
    while tables := [item for key, item in node.value.body if key is not None and isinstance(item, Table)]:
        node = tables[-1]
    return node


def _pop_trailing_trivia(table: Table) -> list[Item]:
    """Remove and return the comments and blank lines that end `table`'s body."""
    body = table.value.body
    count = 0
    while (
        count < len(body)
        and body[len(body) - 1 - count][0] is None
        and isinstance(body[len(body) - 1 - count][1], Whitespace | Comment)
    ):
        count += 1
    if not count:
        return []
    items = [item for _, item in body[len(body) - count :]]
    del body[len(body) - count :]
    return items


def _check_only_added(old: str, new: str, data: dict[str, Any], name: str, table: Table, label: str) -> None:
    """The new text is the old one with one block inserted, and parses to the old data plus the new app."""
    expected = dict(data)
    expected["apps"] = {**data.get("apps", {}), name: table.unwrap()}
    prefix = len(os.path.commonprefix([old, new]))
    grown = len(new) - len(old)
    ok = grown > 0 and new[prefix + grown :] == old[prefix:]
    try:
        ok = ok and tomllib.loads(new) == expected
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise ConfigError(
            [f"{label}: cannot add [apps.{name}] without changing other lines (an unusual layout); add the table by hand"]
        )


# ----- the command's work: check, validate, write -----


@dataclass(frozen=True, slots=True)
class Added:
    """What `add_to_config` wrote: the table as TOML, and where its task queue came from (None = --task-queue)."""

    name: str
    task_queue: str
    table_toml: str
    guessed_from: Found | None


def relative_posix(directory: Path, base: Path) -> str:
    """`directory` relative to `base` (both real paths), POSIX style; absolute if there is no relative path."""
    target = os.path.realpath(directory)
    try:
        return PurePath(os.path.relpath(target, os.path.realpath(base))).as_posix()
    except ValueError:  # another drive (Windows)
        return PurePath(target).as_posix()


def add_to_config(
    config: PipelineConfig,
    name: str,
    context: Path,
    *,
    task_queue: str | None = None,
    dockerfile: str = DEFAULT_DOCKERFILE,
    replicas: int | None = None,
) -> Added:
    """Add [apps.`name`] to the file `config` was loaded from, or change nothing and raise a PipelineError.

    The new text is loaded with load_config (the environment applied, as every command does) from a
    temporary file next to the config before it replaces the file (os.replace, the file's mode kept).
    """
    label = config.source
    path = config.path
    try:
        old_text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{label}: cannot be read: {error}"]) from None
    try:
        check_name(tomllib.loads(old_text), name, label)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{label}: invalid TOML: {error}"]) from None
    if name in config.apps:
        raise BadRequest(f'{label}: an app named "{name}" already exists ([apps.{name}]); pick another name')
    if not context.exists():
        raise BadRequest(f"--context {context}: no such directory")
    if not context.is_dir():
        raise BadRequest(f"--context {context}: not a directory")
    dockerfile = PurePath(dockerfile).as_posix()
    if not (context / dockerfile).is_file():
        hint = (
            "add one or pass --dockerfile" if dockerfile == DEFAULT_DOCKERFILE else "check --dockerfile (relative to --context)"
        )
        raise BadRequest(f"--context {context}: no {dockerfile} in it (looked for {(context / dockerfile).as_posix()}); {hint}")
    guessed: Found | None = None
    if task_queue is None:
        guessed = pick_task_queue(guess_task_queue(context), context.as_posix())
        task_queue = guessed.value
    _check_queue_free(config, task_queue, label, guessed)
    new_text = add_app(
        old_text,
        name,
        task_queue=task_queue,
        build_context=relative_posix(context, path.parent),
        dockerfile=PurePath(dockerfile).as_posix(),
        replicas=replicas,
        label=label,
    )
    _replace_validated(path, new_text, label)
    table = new_table(task_queue, relative_posix(context, path.parent), dockerfile, replicas)
    return Added(name=name, task_queue=task_queue, table_toml=show_table(name, table), guessed_from=guessed)


def _check_queue_free(config: PipelineConfig, task_queue: str, label: str, guessed: Found | None) -> None:
    """Two workers polling one task queue would take each other's tasks."""
    origin = f" (found at {guessed.where()})" if guessed else ""
    if task_queue == config.pipeline.task_queue:
        raise BadRequest(
            f'{label}: task queue "{task_queue}"{origin} is [pipeline].task_queue, the pipeline\'s own; '
            "pass another with --task-queue"
        )
    for app in config.apps.values():
        if app.task_queue == task_queue:
            raise BadRequest(
                f'{label}: task queue "{task_queue}"{origin} is already [apps.{app.name}].task_queue; pass another with --task-queue'
            )


def _replace_validated(path: Path, text: str, label: str) -> None:
    """Write `text` to a temporary file beside `path`, load it as the config, then move it over `path`."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".app-add.tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        try:
            load_config(temp)
        except ConfigError as error:
            raise ConfigError([_relabel(line, str(temp), label) for line in error.problems]) from None
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _relabel(line: str, temp: str, label: str) -> str:
    """A loader line about the temporary file, as one about the config file."""
    return label + line[len(temp) :] if line.startswith(temp + ":") else line
