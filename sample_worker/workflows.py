"""The sample's workflows, the code of each; their versioning behaviours are in sample_worker/versioned.py.

- OrderWorkflow: reserve, charge, ship — three activities, one dataclass in,
  one out. Short (AUTO_UPGRADE when versioned).
- PinnedWorkflow: long-running: waits for the ``finish`` signal, then records
  its approval in one activity (PINNED when versioned: every task, activities
  included, runs on the build it started on, whatever rollouts come between).
- AutoUpgradeWorkflow: long-running: waits for ``finish``, then returns
  (AUTO_UPGRADE when versioned: its next task after a rollout runs on the new
  current build).

The classes here declare no behaviour, because the server refuses one from an
unversioned worker (RespondWorkflowTaskCompleted: "versioning behavior cannot
be specified without deployment options being set with versioned mode", seen
with temporalio 1.35 and server 1.32) and an unversioned worker (the
pipeline's rolling apps) registers them as they are.

The long-running two return which build ran their first and their last
workflow task (``workflow.info().get_current_deployment_version()``, the
same on replay; an unversioned worker's build id too, which it reports with
every task), so a caller sees where they ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from sample_worker.activities import (
        INVALID_ORDER,
        ApprovalInput,
        ChargeInput,
        ReserveInput,
        ShipInput,
        charge_payment,
        record_approval,
        reserve_inventory,
        ship_order,
    )

# Transient failures retry with backoff; an invalid order never will.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=[INVALID_ORDER],
)


@dataclass
class OrderInput:
    order_id: str
    item: str = "widget"
    quantity: int = 1
    amount_cents: int = 1000
    # Passed to charge_payment so a test can keep an activity in flight.
    delay_seconds: float = 0.0


@dataclass
class OrderResult:
    order_id: str
    reservation_id: str
    payment_id: str
    tracking_id: str


@workflow.defn
class OrderWorkflow:
    @workflow.run
    async def run(self, order: OrderInput) -> OrderResult:
        reservation = await workflow.execute_activity(
            reserve_inventory,
            ReserveInput(order_id=order.order_id, item=order.item, quantity=order.quantity),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        payment = await workflow.execute_activity(
            charge_payment,
            ChargeInput(order_id=order.order_id, amount_cents=order.amount_cents, delay_seconds=order.delay_seconds),
            # The delay is caller-chosen, so the timeout grows with it; heartbeats catch a dead worker early.
            start_to_close_timeout=timedelta(seconds=30 + order.delay_seconds),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        shipment = await workflow.execute_activity(
            ship_order,
            ShipInput(order_id=order.order_id, reservation_id=reservation.reservation_id),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        workflow.logger.info("Order %s done", order.order_id)
        return OrderResult(
            order_id=order.order_id,
            reservation_id=reservation.reservation_id,
            payment_id=payment.payment_id,
            tracking_id=shipment.tracking_id,
        )


# The signal both long-running workflows wait for (`python -m sample_worker.client finish ID`).
FINISH_SIGNAL = "finish"


@dataclass
class RunReport:
    """Which build ran a long-running workflow's first and last workflow task ("" = a worker without one)."""

    workflow_id: str
    started_on: str
    finished_on: str
    approval_id: str = ""


def _current_build() -> str:
    version = workflow.info().get_current_deployment_version()
    return version.build_id if version else ""


@workflow.defn
class PinnedWorkflow:
    """Wait for ``finish``, record the approval, return."""

    def __init__(self) -> None:
        self._finished = False

    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        self._finished = True

    @workflow.run
    async def run(self) -> RunReport:
        workflow_id = workflow.info().workflow_id
        started_on = _current_build()
        await workflow.wait_condition(lambda: self._finished)
        approval = await workflow.execute_activity(
            record_approval,
            ApprovalInput(workflow_id=workflow_id),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        return RunReport(
            workflow_id=workflow_id, started_on=started_on, finished_on=_current_build(), approval_id=approval.approval_id
        )


@workflow.defn
class AutoUpgradeWorkflow:
    """Wait for ``finish``, return."""

    def __init__(self) -> None:
        self._finished = False

    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        self._finished = True

    @workflow.run
    async def run(self) -> RunReport:
        started_on = _current_build()
        await workflow.wait_condition(lambda: self._finished)
        return RunReport(workflow_id=workflow.info().workflow_id, started_on=started_on, finished_on=_current_build())


@dataclass
class GateInput:
    """A `workflow` gate's input (config `[[apps.X.gates]] input`): fail from this ramp percentage up (0 = never)."""

    fail_from_percent: float = 0


@workflow.defn
class GateWorkflow:
    """The canary check a `workflow` gate runs on a new version: one activity round trip on that version.

    The pipeline puts the ramp step's percentage in the memo (`ramp_percent`, absent before any
    traffic); `fail_from_percent` makes it fail on purpose from that step on, to show a gate stopping
    a ramp.
    """

    @workflow.run
    async def run(self, gate: GateInput) -> str:
        percent = float(workflow.memo_value("ramp_percent", -1.0))
        await workflow.execute_activity(
            record_approval,
            ApprovalInput(workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )
        if gate.fail_from_percent and percent >= gate.fail_from_percent:
            raise ApplicationError(
                f"canary check failed at {percent:g}% (fails from {gate.fail_from_percent:g}%)", non_retryable=True
            )
        return f"canary check passed on {_current_build() or 'an unversioned worker'} at {percent:g}%"
