"""Reading one TOML table while collecting every problem, each as one English line.

The schema asks a `Table` for typed values; a bad value becomes a line like
`config.toml: [temporal].address: must be host:port, got "nope"` and the
reader hands back the default so checking can go on and report everything at
once. Lines name where the value came from: the file, or the env var that
overrode it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Path_ = tuple[str, ...]
_PERCENT = re.compile(r"(\d{1,3})%")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: the file (`env_name` None) or an env var and its text."""

    label: str
    env_name: str | None = None
    raw: str | None = None

    @classmethod
    def env(cls, name: str, text: str) -> Origin:
        return cls(f"env {name}", name, text)


@dataclass(frozen=True, slots=True)
class Rule:
    """A string check: `describe` finishes "must be ...", `test` says whether it holds.

    `echo` False keeps the offending value out of the message (it may be a secret).
    """

    describe: str
    test: Callable[[str], bool]
    echo: bool = True


def where(path: Path_, *, table: bool = False) -> str:
    """`("apps", "w", "replicas")` -> `[apps.w].replicas`; a root key stays bare."""
    if table:
        return "[" + ".".join(path) + "]"
    if len(path) == 1:
        return path[0]
    return "[" + ".".join(path[:-1]) + "]." + path[-1]


def show(value: object) -> str:
    """A value as TOML would spell it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


class Problems:
    """The growing list of problem lines, plus which paths failed.

    Cross-field checks ask `failed_under` first so one bad value does not
    produce a second, confusing complaint about its neighbour.
    """

    def __init__(self, file_label: str) -> None:
        self.file = Origin(file_label)
        self.origins: dict[Path_, Origin] = {}  # filled by the env overrides
        self.lines: list[str] = []
        self._failed: set[Path_] = set()

    def origin(self, path: Path_) -> Origin:
        """The env var that set `path` (or something under it), else the file."""
        if path in self.origins:
            return self.origins[path]
        for overridden, origin in self.origins.items():
            if overridden[: len(path)] == path:
                return origin
        return self.file

    def add(self, path: Path_, reason: str, *, table: bool = False) -> None:
        self._failed.add(path)
        self.lines.append(f"{self.origin(path).label}: {where(path, table=table)}: {reason}")

    def add_line(self, line: str) -> None:
        """A problem that is not about one key (a malformed env var name)."""
        self.lines.append(line)

    def failed_under(self, *prefixes: Path_) -> bool:
        return any(f[: len(p)] == p for f in self._failed for p in prefixes)


class Table:
    """Typed, checked access to one TOML table; `finish()` reports unknown keys."""

    def __init__(self, problems: Problems, path: Path_, data: Mapping[str, object]) -> None:
        self.problems = problems
        self.path = path
        self.data = data
        self._known: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.data

    def names(self) -> list[str]:
        """The keys present, for tables whose keys are names (like [apps])."""
        return list(self.data)

    def _fetch(self, key: str) -> tuple[Path_, object, bool]:
        self._known.append(key)
        return self.path + (key,), self.data.get(key), key in self.data

    def _bad(self, path: Path_, describe: str, value: object, echo: bool = True) -> None:
        got = f", got {show(value)}" if echo else ""
        self.problems.add(path, f"must be {describe}{got}")

    def string(self, key: str, default: str | None, rule: Rule | None = None) -> str:
        """A string; `default` None makes the key required. Env text counts as a string."""
        path, value, present = self._fetch(key)
        if not present:
            if default is None:
                self.problems.add(path, "missing; this key is required")
                return ""
            return default
        raw = self.problems.origin(path).raw
        if not isinstance(value, str) and raw is not None:
            value = raw  # TEMPORAL_NAMESPACE=123 means the string "123"
        describe = rule.describe if rule else "a string"
        if not isinstance(value, str) or (rule is not None and not rule.test(value)):
            self._bad(path, describe, value, echo=rule.echo if rule else True)
            return default or ""
        return value

    def boolean(self, key: str, default: bool) -> bool:
        path, value, present = self._fetch(key)
        if present and not isinstance(value, bool):
            self._bad(path, "true or false", value)
            return default
        return value if isinstance(value, bool) else default

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        """An integer in [low, high]; TOML booleans and floats are refused."""
        path, value, present = self._fetch(key)
        if not present:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high):
            return value
        self._bad(path, _int_rule(low, high), value)
        return default

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        listed = ", ".join(f'"{c}"' for c in choices)
        return self.string(key, default, Rule(f"one of {listed}", lambda v: v in choices))

    def count_or_percent(self, key: str, default: int | str) -> int | str:
        """A Deployment surge/unavailable value: an integer >= 0 or "0%" to "100%"."""
        path, value, present = self._fetch(key)
        if not present:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
        if match is not None and int(match[1]) <= 100:
            return f"{int(match[1])}%"
        self._bad(path, 'a non-negative integer or a percentage like "25%"', value)
        return default

    def string_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        path, value, present = self._fetch(key)
        if not present:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._bad(path, "an array of strings", value)
            return default
        return tuple(value)

    def integer_list(self, key: str, default: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
        """An array of integers in [low, high], strictly increasing (ramp steps)."""
        path, value, present = self._fetch(key)
        if not present:
            return default
        items: list[int] = []
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            items = [int(v) for v in value]
        ok = isinstance(value, list) and len(items) == len(value)
        if not ok or not all(low <= v <= high for v in items) or any(a >= b for a, b in zip(items, items[1:], strict=False)):
            self._bad(path, f"an increasing array of integers from {low} to {high}", value)
            return default
        return tuple(items)

    def string_table(self, key: str) -> dict[str, str]:
        """A table of string values (like build arguments)."""
        path, value, present = self._fetch(key)
        if not present:
            return {}
        if not isinstance(value, dict):
            self._bad(path, "a table of strings", value)
            return {}
        bad = {k: v for k, v in value.items() if not isinstance(v, str)}
        for name, item in bad.items():
            self._bad(path + (str(name),), "a string", item)
        return {} if bad else {str(k): v for k, v in value.items()}

    def tables(self, key: str) -> list[Table]:
        """An array of tables (`[[key]]`); a missing one is empty, anything else is reported."""
        path, value, present = self._fetch(key)
        if not present:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self._bad(path, "an array of tables ([[...]])", value)
            return []
        return [Table(self.problems, path + (str(i),), v) for i, v in enumerate(value)]

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A number (integer or float) in [low, high]."""
        path, value, present = self._fetch(key)
        if not present:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
            return float(value)
        self._bad(path, f"a number from {low:g} to {high:g}", value)
        return default

    def table(self, key: str) -> Table:
        """A sub-table; a missing one is empty, a non-table is reported and treated as empty."""
        path, value, present = self._fetch(key)
        if present and not isinstance(value, dict):
            self._bad(path, "a table", value)
        return Table(self.problems, path, value if isinstance(value, dict) else {})

    def finish(self) -> None:
        """Report every key nobody asked for, with a "did you mean" for typos."""
        for key, value in self.data.items():
            if key in self._known:
                continue
            kind = "section" if isinstance(value, dict) else "key"
            hint = difflib.get_close_matches(key, self._known, n=1, cutoff=0.8)
            reason = f"unknown {kind}" + (f' (did you mean "{hint[0]}"?)' if hint else "")
            self.problems.add(self.path + (key,), reason, table=isinstance(value, dict))


def _int_rule(low: int, high: int | None) -> str:
    if high is not None:
        return f"an integer from {low} to {high}"
    return "a positive integer" if low == 1 else f"an integer of at least {low}"
