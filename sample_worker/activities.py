"""Activities of the sample's workflows: the side-effecting steps, each small and retry-safe.

They are deliberately fake (no real inventory or payment system) so the
sample worker has no dependencies beyond temporalio; what matters for the
pipeline is that they behave like real activities: they log through
``activity.logger``, heartbeat while they wait, and fail non-retryably on
input that no retry can fix.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

# Named in the workflow's RetryPolicy so a bad order fails at once instead of retrying.
INVALID_ORDER = "InvalidOrder"
# A build whose payments always fail (what an analysis gate must catch): SAMPLE_BROKEN_PAYMENTS=true.
BROKEN_PAYMENTS_ENV = "SAMPLE_BROKEN_PAYMENTS"
# How often the slow activity heartbeats; the workflow's heartbeat_timeout is well above it.
HEARTBEAT_INTERVAL_SECONDS = 0.5


@dataclass
class ReserveInput:
    order_id: str
    item: str
    quantity: int


@dataclass
class Reservation:
    reservation_id: str


@dataclass
class ChargeInput:
    order_id: str
    amount_cents: int
    # Lets tests (and demos) hold the activity in flight, e.g. across a SIGTERM.
    delay_seconds: float = 0.0


@dataclass
class Payment:
    payment_id: str
    waited_seconds: float


@dataclass
class ShipInput:
    order_id: str
    reservation_id: str


@dataclass
class Shipment:
    tracking_id: str


@activity.defn
async def reserve_inventory(req: ReserveInput) -> Reservation:
    if req.quantity <= 0:
        raise ApplicationError(
            f"order {req.order_id}: quantity must be positive, got {req.quantity}; fix the order and start a new one",
            type=INVALID_ORDER,
            non_retryable=True,
        )
    activity.logger.info("Reserved %d x %s for order %s", req.quantity, req.item, req.order_id)
    return Reservation(reservation_id=f"res-{req.order_id}")


@activity.defn
async def charge_payment(req: ChargeInput) -> Payment:
    """Charge, optionally taking `delay_seconds` while heartbeating (the "slow" step)."""
    if os.environ.get(BROKEN_PAYMENTS_ENV) == "true":  # a broken build, for the analysis gate's demonstration
        raise ApplicationError(f"payment service rejected order {req.order_id}", type=INVALID_ORDER, non_retryable=True)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < req.delay_seconds:
        activity.heartbeat(elapsed)
        try:
            await asyncio.sleep(min(HEARTBEAT_INTERVAL_SECONDS, req.delay_seconds - elapsed))
        except asyncio.CancelledError:
            activity.logger.warning("Charge for order %s cancelled after %.1fs", req.order_id, elapsed)
            raise
    waited = round(time.monotonic() - started, 3)
    activity.logger.info("Charged %d cents for order %s after %.1fs", req.amount_cents, req.order_id, waited)
    return Payment(payment_id=f"pay-{req.order_id}", waited_seconds=waited)


@dataclass
class ApprovalInput:
    workflow_id: str


@dataclass
class Approval:
    approval_id: str


@activity.defn
async def record_approval(req: ApprovalInput) -> Approval:
    """The pinned workflow's one step after its signal: runs on the same build as the workflow."""
    activity.logger.info("Recorded approval of %s", req.workflow_id)
    return Approval(approval_id=f"appr-{req.workflow_id}")


@activity.defn
async def ship_order(req: ShipInput) -> Shipment:
    activity.logger.info("Shipped order %s (reservation %s)", req.order_id, req.reservation_id)
    return Shipment(tracking_id=f"trk-{req.order_id}")
