"""Each benchmark writes its own result file: docs/benchmarks/<name>.md.

    from benchmarks.report import write_report
    write_report("cluster_bench", result)      # at the end of main(), after the usual stdout

The file holds a markdown table of the figures (nested objects flattened to dotted names), the
date (UTC), the machine the run had (CPU model and count from /proc/cpuinfo, memory from
/proc/meminfo, kernel, Python) and the exact command that produced it. The README and docs/ cite
these files instead of repeating numbers, so a figure always says where and when it was measured.

Writing the file never changes a benchmark's stdout and never fails it: a write that fails is
one line on stderr.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = REPO_ROOT / "docs" / "benchmarks"
# Raw samples are in the JSON a benchmark prints; the table keeps the summaries.
SKIPPED_KEYS = ("raw", "raw_ms")
LONGEST_CELL = 300


def machine() -> dict[str, str]:
    """CPU model and count, memory, kernel and Python of this machine, as plain strings."""
    models: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                models.append(value.strip())
    except OSError:
        pass
    cpus = len(models) or os.cpu_count() or 0
    model = models[0] if models else (platform.processor() or "unknown")
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{model} × {cpus}",
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def command() -> str:
    """The command line that started this process, as it was typed (interpreter included)."""
    argv = getattr(sys, "orig_argv", None) or [Path(sys.executable).name, *sys.argv]
    return shlex.join(argv)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ", ".join(_cell(item) for item in value)
    elif isinstance(value, Mapping):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= LONGEST_CELL else text[: LONGEST_CELL - 1] + "…"


def rows(figures: Mapping[str, Any], prefix: str = "", skip: Iterable[str] = SKIPPED_KEYS) -> list[tuple[str, str]]:
    """(name, value) per figure; nested objects become dotted names, lists one cell."""
    skipped = set(skip)
    out: list[tuple[str, str]] = []
    for key, value in figures.items():
        if key in skipped:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(rows(value, f"{name}.", skipped))
        else:
            out.append((name, _cell(value)))
    return out


def render(name: str, figures: Mapping[str, Any], *, when: datetime, cmd: str, host: Mapping[str, str], notes: str = "") -> str:
    """The markdown text of docs/benchmarks/<name>.md."""
    lines = [
        f"# {name}",
        "",
        f"Written by `benchmarks/{name}.py` itself (benchmarks/report.py) at the end of its run; the next run replaces it.",
        "",
        f"- date (UTC): {when:%Y-%m-%d %H:%M}",
        f"- command: `{cmd}`",
        f"- machine: {host['cpu']}, {host['memory']} memory, {host['kernel']}, Python {host['python']}",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| `{key}` | {value} |" for key, value in rows(figures)]
    return "\n".join(lines) + "\n"


def write_report(name: str, figures: Mapping[str, Any], *, notes: str = "", directory: Path | None = None) -> Path | None:
    """Write docs/benchmarks/<name>.md (or `directory`/<name>.md); the path, or None when it could not be written."""
    target = (directory or DOCS_DIR) / f"{name}.md"
    try:
        text = render(name, figures, when=datetime.now(UTC), cmd=command(), host=machine(), notes=notes)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"[{name}] could not write {target}: {error}", file=sys.stderr)
        return None
    print(f"[{name}] figures written to {target}", file=sys.stderr)
    return target
