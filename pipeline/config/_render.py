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

from pipeline.config._model import AppConfig, Gate, PipelineConfig

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
    top["rollout"]["steps"] = list(config.rollout.steps)
    top["apps"] = {each.name: _app_dict(each) for each in apps}
    return top


DEFAULT_GATE = asdict(Gate(name="", kind=""))


def _app_dict(app: AppConfig) -> Tree:
    data = asdict(app)
    del data["name"]
    data["build_context"] = str(app.build_context)
    data["dockerfile"] = str(app.dockerfile)
    data["command"] = list(app.command)
    data["queue_types"] = list(app.queue_types)
    data["platforms"] = list(app.platforms)
    data["rollout"]["steps"] = list(app.rollout.steps)
    data["replay_modules"] = list(app.replay_modules)
    data["gates"] = [
        {k: v for k, v in asdict(g).items() if v != DEFAULT_GATE.get(k)} | {"name": g.name, "kind": g.kind} for g in app.gates
    ]
    return data


def to_toml(data: Mapping[str, Any], *, notes: Mapping[str, str] | None = None) -> str:
    """A small TOML writer for config-shaped data.

    `notes` ("temporal.address" -> text) become end-of-line comments.
    """
    lines: list[str] = []
    _write_table(lines, (), data, notes or {})
    return "\n".join(lines).strip() + "\n"


def _write_table(lines: list[str], path: tuple[str, ...], data: Mapping[str, Any], notes: Mapping[str, str]) -> None:
    def is_table_array(v: object) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)

    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not is_table_array(v)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if is_table_array(v)}
    if path and (scalars or not tables):
        lines.extend(["", "[" + ".".join(path) + "]"])
    for key, value in scalars.items():
        note = notes.get(".".join(path + (key,)))
        lines.append(f"{key} = {_value(value)}" + (f"  # {note}" if note else ""))
    for key, value in tables.items():
        _write_table(lines, path + (key,), value, notes)
    for key, items in arrays.items():
        for item in items:
            lines.extend(["", "[[" + ".".join(path + (key,)) + "]]"])
            lines.extend(f"{k} = {_value(v)}" for k, v in item.items())


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
