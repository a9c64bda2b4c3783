"""Label and field selectors, parsed as the Kubernetes API parses them.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
joined by commas. Field selectors: `path=value`, `path==value`, `path!=value`
over dotted paths of the object (`metadata.name`, `status.phase`,
`involvedObject.uid`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_EXPR = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_EXPR = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


class SelectorError(ValueError):
    """The selector string cannot be parsed; the API answers 400 BadRequest."""


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in (t.strip() for t in terms) if t]


LabelCheck = Callable[[Mapping[str, str]], bool]


def _label_equals(key: str, value: str, *, negate: bool) -> LabelCheck:
    return lambda labels: (labels.get(key) == value) != negate


def _label_in(key: str, values: frozenset[str], *, negate: bool) -> LabelCheck:
    return lambda labels: (labels.get(key) in values) != negate


def _label_exists(key: str, *, negate: bool) -> LabelCheck:
    return lambda labels: (key in labels) != negate


def _field_equals(path: str, value: str, *, negate: bool) -> Matcher:
    return lambda obj: (field_value(obj, path) == value) != negate


def parse_label_selector(selector: str | None) -> Matcher:
    """A predicate over an object's `metadata.labels`."""
    if not selector or not selector.strip():
        return lambda obj: True
    checks: list[LabelCheck] = []
    for term in _split_terms(selector):
        eq = _EQ_EXPR.match(term)
        if eq:
            key, op, value = eq.groups()
            checks.append(_label_equals(key, value, negate=op == "!="))
            continue
        st = _SET_EXPR.match(term)
        if not st:
            raise SelectorError(f"unable to parse requirement: {term!r}")
        negate, key, op, values_raw = st.groups()
        if op:
            if negate:
                raise SelectorError(f"unable to parse requirement: {term!r}")
            values = frozenset(v.strip() for v in values_raw.split(",") if v.strip())
            checks.append(_label_in(key, values, negate=op == "notin"))
        else:
            checks.append(_label_exists(key, negate=bool(negate)))

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return match


def match_label_dict(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Match a structured LabelSelector (matchLabels + matchExpressions) against labels."""
    if not selector:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(selector: str | None) -> Matcher:
    if not selector or not selector.strip():
        return lambda obj: True
    checks: list[Matcher] = []
    for term in _split_terms(selector):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        checks.append(_field_equals(path, value, negate=op == "!="))
    return lambda obj: all(check(obj) for check in checks)
