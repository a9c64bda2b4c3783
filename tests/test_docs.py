"""The README and docs/ say what the code does, and keep saying it when the code changes.

- the README stays short (at most 250 lines);
- every relative link (and `#anchor` into a markdown file) of README.md and docs/*.md resolves;
- the configuration reference names every key of every config model, found by walking the
  dataclasses of pipeline/config/ (nested tables included), and every named env override;
- every TOML example in them is valid when copied over the shipped config.toml;
- the README's command table and the CLIs (`pipeline`'s click group, `bootstrap/stack`) list the
  same commands; `bootstrap/stack check` answers one line per prerequisite.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import subprocess
import tomllib
import typing
from collections.abc import Iterator, Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import click
import pytest

from pipeline.config import NAMED_ENV_OVERRIDES, PipelineConfig, load_config, to_toml
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
CONFIG_DOC = DOCS / "configuration.md"
STACK = REPO_ROOT / "bootstrap" / "stack"
MAX_README_LINES = 250

# Files a test writes on request, linked before they exist: (path, how to make it).
GENERATED = {
    DOCS / "images" / "deployment-history.png": "DOCS_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_docs_screenshot.py",
}
# Fields of the config models that are not keys of config.toml, and why.
NOT_KEYS = {
    (PipelineConfig, "source"): "the file name as errors print it",
    (PipelineConfig, "path"): "where the file was read from",
    (PipelineConfig, "env_overrides"): "what the environment changed",
    (PipelineConfig, "apps"): "the [apps.<name>] tables themselves",
}


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# ----- markdown: links and anchors -----

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text without fenced code blocks (their brackets are code, not links)."""
    return _FENCE.sub("", text)


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = anchor_of(match.group(1))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> Iterator[str]:
    for target in _LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            yield target


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            if resolved in GENERATED:
                continue  # checked by test_generated_files_exist
            problems.append(f"{_shown(path)}: {target}: no such file")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{_shown(path)}: {target}: no heading #{fragment} in {resolved.name}")
    return problems


def test_readme_is_at_most_250_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_every_relative_link_resolves() -> None:
    problems = [problem for path in markdown_files() for problem in broken_links(path)]
    assert not problems, "\n".join(problems)


def test_the_link_check_sees_a_broken_link_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A `[section]` here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](other.md#a-section-here) [gone](missing.md) [no anchor](other.md#nowhere)\n```\n[code](not-a-link.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2 and "missing.md" in problems[0] and "#nowhere" in problems[1], problems


def test_generated_files_exist() -> None:
    missing = [f"{path.relative_to(REPO_ROOT)}: make it with `{how}`" for path, how in GENERATED.items() if not path.exists()]
    if missing:
        pytest.skip("not generated yet (needs the local stack): " + "; ".join(missing))


def test_docs_index_lists_every_page() -> None:
    readme = README.read_text(encoding="utf-8")
    unlisted = [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert not unlisted, f"README.md's documentation index does not link {unlisted}"


# ----- the configuration reference -----


def _sections(text: str) -> dict[str, str]:
    """Each heading's text -> its body (up to the next heading)."""
    out: dict[str, str] = {}
    heading = ""
    for line in prose(text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            heading = match.group(1).strip()
            out[heading] = ""
        elif heading:
            out[heading] += line + "\n"
    return out


def config_keys() -> dict[str, list[str]]:
    """Every key config.toml may hold, by the heading of the reference that must name it, from the models."""
    wanted: dict[str, list[str]] = {}

    def walk(model: type, label: str, table: str) -> None:
        hints = typing.get_type_hints(model)
        for field in dataclasses.fields(model):
            if (model, field.name) in NOT_KEYS:
                continue
            kind = hints[field.name]
            origin, args = typing.get_origin(kind), typing.get_args(kind)
            if dataclasses.is_dataclass(kind):
                walk(
                    typing.cast(type, kind),
                    f"`[{table}.{field.name}]`" if table else f"`[{field.name}]`",
                    f"{table}.{field.name}",
                )
                if table:  # a table inside an app is also a key of the app's own table
                    wanted.setdefault(label, []).append(field.name)
            elif origin is tuple and args and dataclasses.is_dataclass(args[0]):
                walk(typing.cast(type, args[0]), f"`[[{table}.{field.name}]]`", f"{table}.{field.name}")
                wanted.setdefault(label, []).append(field.name)
            else:
                wanted.setdefault(label, []).append(field.name)

    walk(PipelineConfig, "top level", "")
    apps = typing.get_type_hints(PipelineConfig)["apps"]
    assert typing.get_origin(apps) is Mapping or typing.get_origin(apps).__name__ == "Mapping", apps
    app_model = typing.get_args(apps)[1]
    walk(app_model, "`[apps.<name>]`", "apps.<name>")
    # The app's own name is its table's name, not a key.
    wanted["`[apps.<name>]`"].remove("name")
    return wanted


def missing_keys(text: str) -> list[str]:
    sections = _sections(text)
    problems = []
    for heading, keys in config_keys().items():
        body = next((b for h, b in sections.items() if h == heading), None)
        if body is None:
            problems.append(f"no heading {heading!r} (for keys {', '.join(keys)})")
            continue
        problems += [f"{heading}: key `{key}` is not named" for key in keys if f"`{key}`" not in body]
    return problems


def test_the_not_keys_are_fields_of_the_models() -> None:
    for model, name in NOT_KEYS:
        assert name in {f.name for f in dataclasses.fields(model)}, f"{model.__name__}.{name} is gone: update NOT_KEYS"


def test_configuration_reference_names_every_key() -> None:
    problems = missing_keys(CONFIG_DOC.read_text(encoding="utf-8"))
    assert not problems, "docs/configuration.md misses keys of pipeline/config/_model.py:\n" + "\n".join(problems)


def test_the_key_check_fails_when_a_key_is_missing() -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    for heading, key in (("`[[apps.<name>.gates]]`", "min_samples"), ("`[temporal]`", "address"), ("top level", "target")):
        assert key in config_keys()[heading]
        body = _sections(text)[heading]
        cut = text.replace(body, body.replace(f"`{key}`", "`gone`"))
        assert f"{heading}: key `{key}` is not named" in missing_keys(cut)


def test_configuration_reference_names_every_env_override() -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    special = ("TEMPORAL_API_KEY", "TEMPORAL_TASK_QUEUE", "KUBECONFIG", "PIPELINE_CONFIG", "PIPELINE__SECTION__KEY")
    missing = [name for name in (*NAMED_ENV_OVERRIDES, *special) if f"`{name}`" not in text]
    assert not missing, f"docs/configuration.md does not name the env overrides {missing} (pipeline/config/_env.py)"


# ----- TOML examples -----


def toml_examples() -> Iterator[tuple[str, str]]:
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        for n, match in enumerate(re.finditer(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL), 1):
            yield f"{path.relative_to(REPO_ROOT)} example {n}", match.group(1)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def test_there_are_toml_examples() -> None:
    assert len(list(toml_examples())) >= 4


@pytest.mark.parametrize(("where", "example"), list(toml_examples()), ids=[w for w, _ in toml_examples()])
def test_every_toml_example_is_valid_over_the_shipped_config(where: str, example: str, tmp_path: Path) -> None:
    """Copied into the shipped config.toml (its tables merged), the example loads without a problem."""
    data = _merge(tomllib.loads((REPO_ROOT / "config.toml").read_text()), tomllib.loads(example))
    shutil.copy(REPO_ROOT / "Dockerfile", tmp_path / "Dockerfile")  # "." is the config's directory: the stages exist
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data))
    load_config(path, env={})  # raises ConfigError with one line per problem


# ----- the command table -----


def readme_commands(prefix: str) -> set[str]:
    """The subcommands in the first column of the README's command table that start with `prefix`."""
    commands = set()
    for line in _sections(README.read_text(encoding="utf-8"))["Commands"].splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match and match.group(1).startswith(prefix + " "):
            words = [w for w in match.group(1).split()[1:] if not w.startswith("-") and w.islower()]
            commands.add(" ".join(words))
    return commands


def click_commands(group: click.Group, prefix: str = "") -> set[str]:
    out = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out |= click_commands(command, f"{prefix}{name} ")
        else:
            out.add(f"{prefix}{name}")
    return out


def stack_commands() -> set[str]:
    script = STACK.read_text(encoding="utf-8")
    found = set(re.findall(r'^\s*\[ "\$cmd" = ([a-z]+) \]', script, re.MULTILINE))
    found |= set(re.findall(r"^  ([a-z]+)\)\s*$", script, re.MULTILINE))
    from bootstrap.__main__ import main  # up, down, status: the stack's own argparse

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    choices = re.search(r"\{([a-z,]+)\}", out.getvalue())
    assert choices, out.getvalue()
    return found | set(choices.group(1).split(","))


def test_readme_command_table_matches_the_pipeline_cli() -> None:
    from pipeline.cli import cli

    assert readme_commands("pipeline") == click_commands(cli)


def test_readme_command_table_matches_bootstrap_stack() -> None:
    assert readme_commands("bootstrap/stack") == stack_commands()


def test_stack_check_prints_one_line_per_prerequisite() -> None:
    """Read-only: it installs and starts nothing."""
    result = subprocess.run([str(STACK), "check"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode in (0, 1), result.stderr
    lines = result.stdout.splitlines()
    names = {line.split()[1] for line in lines}
    assert {"os", "root", "python3", "packages", "kubectl", "disk", "venv"} <= names, result.stdout
    assert all(re.match(r"^(ok|todo|warn|FAIL) +\S+ +\S", line) for line in lines), result.stdout
    assert (result.returncode == 1) == any(line.startswith("FAIL") for line in lines), result.stdout
