"""`python -m bootstrap {up,down,status}`: the local stack's command line.

`bootstrap/stack` is the entry point people type: it installs missing apt and
pip packages first, then runs this module inside the project's virtualenv.
"""

from __future__ import annotations

import argparse
import sys

from bootstrap import stack
from bootstrap.base_image import BaseImageError
from bootstrap.process import ProcessError
from bootstrap.settings import SettingsError, StackSettings
from bootstrap.wheelhouse import WheelhouseError

PARTS = stack.SERVICE_NAMES + stack.ARTIFACT_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bootstrap/stack", description="The local stack: Docker, registry, Temporal dev server."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(PARTS)}")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument(
        "--purge",
        action="store_true",
        help="down: then remove the state directory (.stack: cluster state, registry data, Temporal's database, logs)",
    )
    args = parser.parse_args(argv)
    try:
        settings = StackSettings.from_env()
        only = _parse_only(args.only)
        if args.command == "up":
            stack.up(settings, only=only)
            _print_status(settings, only, as_json=False)
            return 0 if all(r.state not in ("stopped", "missing") for r in stack.status(settings, only=only)) else 1
        if args.purge and (args.command != "down" or only is not None):
            raise ValueError("--purge goes with `down` and the whole stack (no --only)")
        if args.command == "down":
            stack.down(settings, only=only)
            if args.purge:
                stack.purge(settings)
            return 0
        rows = stack.status(settings, only=only)
        _print_status(settings, only, as_json=args.json, rows=rows)
        return 0 if all(r.state.startswith(("running", "present")) for r in rows) else 3
    except (SettingsError, ProcessError, BaseImageError, WheelhouseError, ValueError) as exc:  # PurgeRefused too
        print(f"bootstrap {args.command}: {exc}", file=sys.stderr)
        return 1


def _parse_only(raw: str | None) -> frozenset[str] | None:
    if not raw:
        return None
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(PARTS))
    if unknown:
        raise ValueError(f"--only: unknown part {', '.join(unknown)}; known: {', '.join(PARTS)}")
    return names


def _print_status(settings: StackSettings, only: frozenset[str] | None, *, as_json: bool, rows: list | None = None) -> None:  # type: ignore[type-arg]
    rows = stack.status(settings, only=only) if rows is None else rows
    if as_json:
        print(stack.status_json(rows))
        return
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    sys.exit(main())
