"""`python -m bootstrap.cluster serve --state-dir DIR [--port 6443]`: run the local cluster in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bootstrap.cluster.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bootstrap.cluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the Kubernetes API and run the cluster until SIGTERM")
    serve_cmd.add_argument("--state-dir", type=Path, required=True, help="objects, credentials and kubeconfig live here")
    serve_cmd.add_argument("--port", type=int, default=6443, help="HTTPS port on 127.0.0.1 (default 6443)")
    serve_cmd.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.state_dir, port=args.port))


if __name__ == "__main__":
    main()
