"""OrderWorkflow: reserve, charge, ship — three activities, one dataclass in, one out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sample_worker.activities import (
        INVALID_ORDER,
        ChargeInput,
        ReserveInput,
        ShipInput,
        charge_payment,
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
