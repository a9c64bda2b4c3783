"""`python -m bootstrap.azure_arm serve --state-dir DIR [--port N] [--registry HOST:PORT] [--kubeconfig PATH] [--empty]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bootstrap.azure_arm.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bootstrap.azure_arm", description="A local imitation of Azure Resource Manager."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve Entra ID + ARM + blob endpoints on 127.0.0.1 until SIGTERM")
    serve_cmd.add_argument("--state-dir", type=Path, required=True, help="seed.json, ca.pem, env, runs and blobs live here")
    serve_cmd.add_argument(
        "--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (default: a free one, written to DIR/endpoint)"
    )
    serve_cmd.add_argument(
        "--registry", default="127.0.0.1:5000", help="the local registry the ACR registry's loginServer maps to"
    )
    serve_cmd.add_argument(
        "--kubeconfig", type=Path, help="the local cluster's kubeconfig, handed out by listClusterUserCredential"
    )
    serve_cmd.add_argument(
        "--empty",
        action="store_true",
        help="at the first start of DIR, seed no resource group, registry or cluster (`pipeline bootstrap --azure` creates them)",
    )
    serve_cmd.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(
        serve(state_dir=args.state_dir, port=args.port, registry=args.registry, kubeconfig=args.kubeconfig, empty=args.empty)
    )


if __name__ == "__main__":
    main()
