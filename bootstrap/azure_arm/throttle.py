"""ARM's request throttling: per-principal and subscription-wide token buckets, 429 with `Retry-After`.

What Azure documents ("Understand how Azure Resource Manager throttles requests",
articles/azure-resource-manager/management/request-limits-and-throttling.md, ms.date
05/28/2025; summarised in ../shared/azure-examples/README.md, "ARM throttling"):

- every request takes one token from a bucket that refills at a fixed rate up to its size;
- subscription buckets are kept per subscription, per service principal and per operation
  type: reads 250 / 25 per second, writes 200 / 10, deletes 200 / 10;
- on top of them a subscription-wide ("global") bucket per operation type shared by all
  principals, 15 times the per-principal figure;
- a request is refused when any bucket it needs is empty: HTTP 429 with `Retry-After`
  (seconds), and the remaining counts in `x-ms-ratelimit-remaining-subscription-{reads,
  writes,deletes}` and `x-ms-ratelimit-remaining-subscription-global-{reads,writes,deletes}`.

The operation type is the method's: GET/HEAD read, DELETE delete, everything else (PUT,
PATCH, POST actions such as scheduleRun and listLogSasUrl) write. Only requests under
`/subscriptions/` with a valid bearer token are counted (a request without one is the
gateway's 401, answered by arm/dispatch.py); tenant-level buckets are not imitated (the
imitation serves no tenant-level ARM operation).

On by default with Azure's own figures. A `throttle` fault (faults.py) divides every
size and rate by `scale` (tests use 10: 25 reads / 2.5 per second, 20 writes / 1 per
second per principal) or turns it off; clearing the faults restores Azure's figures.
The 429's body is what stored public captures show ARM answering
(`{"error": {"code": "TooManyRequests", "message": "The request is being throttled."}}`).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from bootstrap.azure_arm import identity
from bootstrap.azure_arm.arm.routing import match
from bootstrap.azure_arm.faults import Faults
from bootstrap.azure_arm.state import Seed

# (bucket size, refill per second) per operation type, per principal; the global bucket is GLOBAL_FACTOR times it.
LIMITS: dict[str, tuple[float, float]] = {"reads": (250, 25), "writes": (200, 10), "deletes": (200, 10)}
GLOBAL_FACTOR = 15
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def operation_type(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


@dataclass
class Bucket:
    size: float
    rate: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        """Seconds until one token is there."""
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    kind: str
    remaining: int  # the principal's bucket
    remaining_global: int
    retry_after: int  # whole seconds, when refused


@dataclass
class Throttle:
    """The buckets of every (subscription, principal, type) and (subscription, type); `scale` divides Azure's figures."""

    faults: Faults
    _buckets: dict[tuple[str, str, str], Bucket] = field(default_factory=dict)
    _settings: tuple[bool, float] = (True, 1.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settings(self) -> tuple[bool, float]:
        wanted = self.faults.throttle or {}
        return bool(wanted.get("enabled", True)), float(wanted.get("scale", 1.0))

    def _bucket(self, key: tuple[str, str, str], factor: float, scale: float, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            size, rate = LIMITS[key[2]]
            size, rate = size * factor / scale, rate * factor / scale
            bucket = self._buckets[key] = Bucket(size, rate, size, now)
        bucket.refill(now)
        return bucket

    def admit(self, subscription: str, principal: str, method: str) -> Decision | None:
        """Take a token from the principal's and the global bucket of the request's type; None when switched off."""
        enabled, scale = self.settings()
        kind = operation_type(method)
        with self._lock:
            if (enabled, scale) != self._settings:
                self._buckets.clear()  # new figures: full buckets
                self._settings = (enabled, scale)
            if not enabled:
                return None
            now = time.monotonic()
            subscription = subscription.lower()
            own = self._bucket((subscription, principal, kind), 1, scale, now)
            shared = self._bucket((subscription, "", kind), GLOBAL_FACTOR, scale, now)
            if own.tokens < 1 or shared.tokens < 1:
                wait = max(own.wait(), shared.wait())
                return Decision(False, kind, int(own.tokens), int(shared.tokens), max(1, math.ceil(wait)))
            own.tokens -= 1
            shared.tokens -= 1
            return Decision(True, kind, int(own.tokens), int(shared.tokens), 0)


def _principal(request: web.Request, seed: Seed) -> str | None:
    """The caller's client id, from a valid bearer token; None without one (the gateway's 401 comes later)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return identity.verify(seed, token.strip()).client_id
    except (identity.TokenExpired, identity.TokenInvalid):
        return None


def _headers(decision: Decision) -> dict[str, str]:
    return {
        f"x-ms-ratelimit-remaining-subscription-{decision.kind}": str(decision.remaining),
        f"x-ms-ratelimit-remaining-subscription-global-{decision.kind}": str(decision.remaining_global),
    }


@web.middleware
async def throttling(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse an ARM request whose buckets are empty (429), and say what remains on every other answer."""
    subscription = _SUBSCRIPTION.match(request.path)
    principal = _principal(request, request.app["seed"]) if subscription else None
    if subscription is None or principal is None:
        return await handler(request)
    decision = request.app["throttle"].admit(subscription.group(1), principal, request.method)
    if decision is None:
        return await handler(request)
    if not decision.allowed:
        matched = match(request.method, request.path)
        operation = matched[0].operation if matched else "Unknown"
        request_id = str(uuid.uuid4())
        response = web.Response(
            status=429,
            text=json.dumps({"error": {"code": "TooManyRequests", "message": "The request is being throttled."}}),
            content_type="application/json",
            charset="utf-8",
            headers={
                "Retry-After": str(decision.retry_after),
                "x-ms-request-id": request_id,
                "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id") or request_id,
                "x-ms-failure-cause": "gateway",
                **_headers(decision),
            },
        )
        request.app["faults"].record(
            operation=operation, method=request.method, path=request.path, status=429, client_id=principal
        )
        return response
    response = await handler(request)
    for stale in ("reads", "writes", "deletes"):  # the hourly model's counters, where a handler set them
        response.headers.pop(f"x-ms-ratelimit-remaining-subscription-{stale}", None)
    response.headers.update(_headers(decision))
    return response
