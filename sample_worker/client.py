"""Starter: ``python -m sample_worker.client [--count N] [--delay-seconds S] [--wait]``, and the long-running workflows.

Without a subcommand it starts N OrderWorkflows on the configured task queue
(same TEMPORAL_* variables as the worker) and, with --wait, prints one line per
result and exits 1 if any failed: the smoke test the pipeline runs after a
rollout. The subcommands drive the versioning demo (sample_worker/workflows.py):

    start-pinned [--id ID]     start a PinnedWorkflow; prints "ID started"
    start-auto [--id ID]       start an AutoUpgradeWorkflow; prints "ID started"
    finish [--wait] ID [ID...] signal `finish` to each; prints "ID finished", and
                               with --wait "ID completed: started on B1, finished on B2"

Without --id an id no earlier run used is generated. A failure prints one line
per workflow and the command exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sample_worker.settings import Settings, connect, load_or_exit
from sample_worker.workflows import (
    FINISH_SIGNAL,
    AutoUpgradeWorkflow,
    OrderInput,
    OrderResult,
    OrderWorkflow,
    PinnedWorkflow,
    RunReport,
)

# Subcommand → the workflow it starts, and the prefix of generated ids.
_STARTS: dict[str, tuple[type[PinnedWorkflow] | type[AutoUpgradeWorkflow], str]] = {
    "start-pinned": (PinnedWorkflow, "pinned"),
    "start-auto": (AutoUpgradeWorkflow, "auto"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sample_worker.client",
        description="Start OrderWorkflows on the configured task queue, or drive the long-running workflows.",
    )
    parser.add_argument("--count", type=_positive_int, default=1, help="workflows to start (default 1)")
    parser.add_argument("--delay-seconds", type=float, default=0.0, help="how long the charge activity takes")
    parser.add_argument("--wait", action="store_true", help="wait for every result; exit 1 if any failed")
    commands = parser.add_subparsers(dest="command", metavar="{start-pinned,start-auto,finish}")
    for name, (workflow_class, _) in _STARTS.items():
        start = commands.add_parser(name, help=f"start one {workflow_class.__name__} and print its id")
        start.add_argument("--id", dest="workflow_id", type=_workflow_id, help="workflow id (default: generated)")
    finish = commands.add_parser("finish", help=f"signal {FINISH_SIGNAL!r} to long-running workflows")
    finish.add_argument("workflow_ids", metavar="ID", nargs="+", type=_workflow_id, help="workflow id")
    finish.add_argument("--wait", dest="finish_wait", action="store_true", help="wait for each result; exit 1 if any failed")
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


async def start_long_running(client: Client, settings: Settings, command: str, workflow_id: str | None) -> str:
    """Start the subcommand's workflow; return its id."""
    workflow_class, prefix = _STARTS[command]
    workflow_id = workflow_id or f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(workflow_class.run, id=workflow_id, task_queue=settings.task_queue)
    return workflow_id


async def finish(client: Client, workflow_ids: Sequence[str], *, wait: bool) -> int:
    """Signal `finish` to each workflow (and with `wait`, report its result); 1 if any failed."""
    failed = 0
    for workflow_id in workflow_ids:
        handle: WorkflowHandle[object, RunReport] = client.get_workflow_handle(workflow_id, result_type=RunReport)
        try:
            await handle.signal(FINISH_SIGNAL)
        except RPCError as err:  # no such workflow, or it already closed
            failed += 1
            print(f"{workflow_id} could not be finished: {err}")
            continue
        print(f"{workflow_id} finished")
        if not wait:
            continue
        try:
            report = await handle.result()
        except Exception as err:  # WorkflowFailureError, or the RPC failing: report and go on
            failed += 1
            print(f"{workflow_id} failed: {err}")
        else:
            print(f"{workflow_id} completed: started on {report.started_on or '-'}, finished on {report.finished_on or '-'}")
    return 1 if failed else 0


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_or_exit()
    try:
        client = await connect(settings)
    except RuntimeError as err:  # the SDK's error for every connect failure
        print(f"could not connect to Temporal at {settings.temporal_address}: {err}", file=sys.stderr)
        return 1
    if args.command in _STARTS:
        try:
            workflow_id = await start_long_running(client, settings, args.command, args.workflow_id)
        except WorkflowAlreadyStartedError as err:
            print(f"{err.workflow_id} could not be started: a workflow with this id is already running")
            return 1
        print(f"{workflow_id} started")
        return 0
    if args.command == "finish":
        return await finish(client, args.workflow_ids, wait=args.finish_wait or args.wait)
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


def _workflow_id(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return raw


if __name__ == "__main__":
    from sample_worker.leave import leave

    leave(asyncio.run(main()))
