"""Starter: ``python -m sample_worker.client [--count N] [--delay-seconds S] [--wait]``.

Starts N OrderWorkflows on the configured task queue (same TEMPORAL_* variables
as the worker) and, with --wait, prints one line per result and exits 1 if any
failed: the smoke test the pipeline runs after a rollout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from temporalio.client import Client, WorkflowHandle

from sample_worker.settings import Settings, connect, load_or_exit
from sample_worker.workflows import OrderInput, OrderResult, OrderWorkflow


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sample_worker.client", description="Start OrderWorkflows on the configured task queue."
    )
    parser.add_argument("--count", type=_positive_int, default=1, help="workflows to start (default 1)")
    parser.add_argument("--delay-seconds", type=float, default=0.0, help="how long the charge activity takes")
    parser.add_argument("--wait", action="store_true", help="wait for every result; exit 1 if any failed")
    return parser.parse_args(argv)


async def start_orders(
    client: Client, settings: Settings, *, count: int, delay_seconds: float
) -> list[WorkflowHandle[OrderWorkflow, OrderResult]]:
    """Start `count` orders with ids no earlier run used."""
    batch = uuid.uuid4().hex[:8]
    return [
        await client.start_workflow(
            OrderWorkflow.run,
            OrderInput(order_id=f"{batch}-{i}", delay_seconds=delay_seconds),
            id=f"order-{batch}-{i}",
            task_queue=settings.task_queue,
        )
        for i in range(count)
    ]


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_or_exit()
    try:
        client = await connect(settings)
    except RuntimeError as err:  # the SDK's error for every connect failure
        print(f"could not connect to Temporal at {settings.temporal_address}: {err}", file=sys.stderr)
        return 1
    handles = await start_orders(client, settings, count=args.count, delay_seconds=args.delay_seconds)
    if not args.wait:
        for handle in handles:
            print(f"{handle.id} started")
        return 0
    failed = 0
    for handle in handles:
        try:
            result = await handle.result()
        except Exception as err:  # WorkflowFailureError, or the RPC failing: report and go on
            failed += 1
            print(f"{handle.id} failed: {err}")
        else:
            print(f"{handle.id} completed: {result.tracking_id}")
    return 1 if failed else 0


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":
    from sample_worker.leave import leave

    leave(asyncio.run(main()))
