"""The effective configuration written back in config.toml's own schema.

`pipeline config` prints this so people can see what defaults and env
overrides produced; because it is the same schema, the output is itself a
valid config.toml (paths come out absolute).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pipeline.config._model import AppConfig, PipelineConfig

Tree = dict[str, Any]
_SECTIONS = (
    "temporal",
    "pipeline",
    "azure",
    "acr",
    "aks",
    "kubernetes",
    "registry",
    "resources",
    "rollout",
)


def to_dict(config: PipelineConfig, *, app: str | None = None) -> Tree:
    """config.toml-shaped data; with `app`, only that app (unknown names raise ConfigError)."""
    apps = [config.app(app)] if app is not None else list(config.apps.values())
    top: Tree = {"target": config.target}
    for section in _SECTIONS:
        top[section] = asdict(getattr(config, section))
    top["azure"]["ca_bundle"] = str(config.azure.ca_bundle or "")
    top["apps"] = {each.name: _app_dict(each) for each in apps}
    return top


def _app_dict(app: AppConfig) -> Tree:
    data = asdict(app)
    del data["name"]
    data["build_context"] = str(app.build_context)
    data["dockerfile"] = str(app.dockerfile)
    data["command"] = list(app.command)
    data["queue_types"] = list(app.queue_types)
    data["platforms"] = list(app.platforms)
    return data


def to_toml(data: Mapping[str, Any], *, notes: Mapping[str, str] | None = None) -> str:
    """A small TOML writer for config-shaped data.

    `notes` ("temporal.address" -> text) become end-of-line comments.
    """
    lines: list[str] = []
    _write_table(lines, (), data, notes or {})
    return "\n".join(lines).strip() + "\n"


def _write_table(lines: list[str], path: tuple[str, ...], data: Mapping[str, Any], notes: Mapping[str, str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.extend(["", "[" + ".".join(path) + "]"])
    for key, value in scalars.items():
        note = notes.get(".".join(path + (key,)))
        lines.append(f"{key} = {_value(value)}" + (f"  # {note}" if note else ""))
    for key, value in tables.items():
        _write_table(lines, path + (key,), value, notes)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
