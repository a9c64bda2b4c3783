"""The shipped config.toml, and copies of it with edits, for the config, CLI, render and self-deploy tests.

Bad inputs are made by editing the shipped file's text, so the tests follow the
documented example as it changes.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import PipelineConfig, load_config
from tests.helpers import REPO_ROOT

SHIPPED_CONFIG = REPO_ROOT / "config.toml"
SHIPPED_TEXT = SHIPPED_CONFIG.read_text(encoding="utf-8")
DOCKERFILE = "FROM python:3.12-slim AS deps\nFROM deps AS sample-worker\nFROM deps AS pipeline-worker\n"
APP = "apps.sample-worker"


def shipped_config() -> PipelineConfig:
    return load_config(SHIPPED_CONFIG, env={})


def edit(text: str, section: str, key: str, value: str | None) -> str:
    """Set `key = value` (TOML text) in `[section]` ("" = root); None deletes the key."""
    lines = text.splitlines()
    start = 0
    if section:
        start = lines.index(next(line for line in lines if line.split("#")[0].strip() == f"[{section}]")) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    found = [i for i in range(start, end) if re.match(rf"{re.escape(key)}\s*=", lines[i])]
    if value is None:
        assert found, f"{key} not in [{section}]"
        del lines[found[0]]
    elif found:
        lines[found[0]] = f"{key} = {value}"
    else:
        lines.insert(start, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def write_config(directory: Path, *edits: tuple[str, str, str | None], text: str = SHIPPED_TEXT) -> Path:
    """The shipped config with `edits` applied, next to a Dockerfile with the sample stage."""
    for section, key, value in edits:
        text = edit(text, section, key, value)
    (directory / "Dockerfile").write_text(DOCKERFILE)
    path = directory / "config.toml"
    path.write_text(text)
    return path
