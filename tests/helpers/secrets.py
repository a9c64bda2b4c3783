"""The secret values the suite made, which no workflow history of the session may contain (issue 7, item 9).

Fixtures register each value with `never_leak` (cluster tokens, the Azure
imitation's client secrets and registry passwords, canary Secrets); when the
session ends, tests/conftest.py searches every history it produced for each
(`secrets_in`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

_NEVER_LEAK: dict[str, str] = {}  # secret value -> what it is
MIN_SECRET_LENGTH = 12  # shorter values would match by chance


def never_leak(what: str, value: str) -> None:
    """Register a secret value the suite made: no workflow history of the session may contain it."""
    if len(value) >= MIN_SECRET_LENGTH:
        _NEVER_LEAK[value] = what


def secrets_in(text: str) -> list[str]:
    """What each registered secret found in `text` is."""
    return [what for value, what in _NEVER_LEAK.items() if value in text]


def kubeconfig_tokens(path: Path) -> list[str]:
    """The bearer tokens of a kubeconfig's users (what the local clusters accept)."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [str(u["user"]["token"]) for u in config.get("users") or [] if (u.get("user") or {}).get("token")]
