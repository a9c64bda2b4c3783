"""Zero downtime as Temporal sees it: a sampler of a task queue's live pollers, and a stream of orders.

Temporal keeps listing a poller for a while after its process stopped, so a
listed poller only counts as live when the pod its identity names
(`<pod>@<build id>`) is Running and not terminating in the cluster, and the
poller was seen after that pod started (`live_pollers`). `sample_pollers`
looks (DescribeTaskQueue + the pods) every ~100 ms until told it is done;
`OrderStream` keeps starting sample-worker orders meanwhile, which must all
complete. Shared by the rolling-update test (tests/cluster) and the rollback
one (tests/faults).

    orders = OrderStream(client, task_queue)
    orders.start()
    sampling = await sample_pollers(client, task_queue=tq, list_pods=..., done=..., timeout=90, what="v2 rolled out")
    await orders.stop()
    sampling.assert_always_live()
    failures = [o for o in await orders.outcomes(timeout=60) if isinstance(o, BaseException)]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle

from pipeline.models import Poller
from pipeline.verify import describe_pollers, identity_names_pod
from sample_worker.client import start_orders
from sample_worker.settings import Settings
from sample_worker.workflows import OrderResult, OrderWorkflow

SAMPLE_INTERVAL = 0.1
# Clocks of the Temporal dev server and the cluster are the same host's, give or take a poll in flight.
CLOCK_SKEW = timedelta(seconds=2)

Pods = list[dict[str, Any]]


@dataclass(frozen=True)
class Sample:
    """One look at the task queue: which Running, non-terminating pods had a live workflow poller."""

    at: float
    live: tuple[str, ...]
    listed: tuple[str, ...]
    running: tuple[str, ...]


@dataclass(frozen=True)
class Sampling:
    """Every sample taken, and the pods and pollers of the last one (the moment `done` said yes)."""

    samples: list[Sample]
    pods: Pods
    pollers: list[Poller]

    def summary(self) -> str:
        lives = [len(s.live) for s in self.samples]
        return f"{len(self.samples)} samples over {self.samples[-1].at:.1f}s; live pollers per sample: min {min(lives)}, max {max(lives)}"

    def assert_always_live(self, *, at_least: int = 1, min_samples: int = 20) -> None:
        """Every sample saw `at_least` live pollers, and there were enough samples to have watched, not just the end."""
        short = [s for s in self.samples if len(s.live) < at_least]
        assert not short, f"{len(short)} of {len(self.samples)} samples had fewer than {at_least} live pollers, first: {short[0]}"
        assert len(self.samples) >= min_samples, f"only {len(self.samples)} samples: {self.samples}"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def live_pollers(pods: Pods, pollers: list[Poller], queue_type: str = "workflow") -> dict[str, Poller]:
    """Pollers (by pod) whose pod is Running and not terminating, and which polled since that pod started."""
    running = {
        p["metadata"]["name"]: p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }
    live: dict[str, Poller] = {}
    for poller in pollers:
        # Either identity shape: `<pod>@<build id>` or the SDK's default `<pid>@<hostname>`.
        pod = next((p for name, p in running.items() if identity_names_pod(poller.identity, name)), None)
        if poller.task_queue_type != queue_type or pod is None:
            continue
        started = pod["status"].get("startTime")
        if started is None or _time(poller.last_access_time) + CLOCK_SKEW >= _time(started):
            live[pod["metadata"]["name"]] = poller
    return live


async def sample_pollers(
    client: Client,
    *,
    task_queue: str,
    list_pods: Callable[[], Pods],
    done: Callable[[Pods, list[Poller]], Awaitable[bool]],
    timeout: float,
    what: str,
    namespace: str = "default",
    interval: float = SAMPLE_INTERVAL,
) -> Sampling:
    """Sample the live workflow pollers of `task_queue` every `interval` until `done(pods, pollers)`; fail after `timeout`.

    `list_pods` (blocking, run in a thread) returns the app's pods as the API gives them.
    """
    started = time.monotonic()
    samples: list[Sample] = []
    while True:
        pollers, pods = await asyncio.gather(
            describe_pollers(client, namespace=namespace, task_queue=task_queue), asyncio.to_thread(list_pods)
        )
        live = live_pollers(pods, pollers)
        samples.append(
            Sample(
                at=time.monotonic() - started,
                live=tuple(sorted(live)),
                listed=tuple(sorted(p.identity for p in pollers if p.task_queue_type == "workflow")),
                running=tuple(sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))),
            )
        )
        if await done(pods, pollers):
            return Sampling(samples, pods, pollers)
        assert time.monotonic() - started < timeout, f"{what} not reached within {timeout:.0f}s: last sample {samples[-1]}"
        await asyncio.sleep(interval)


@dataclass
class WorkflowStream:
    """Starts one workflow (`start_one()`) every ~`every` s, from `start()` until `stop()`."""

    client: Client
    start_one: Callable[[], Awaitable[WorkflowHandle[Any, Any]]]
    every: float = 0.25
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.handles.append(await self.start_one())
            await asyncio.sleep(self.every)

    async def outcomes(self, *, timeout: float) -> list[Any]:
        """Every started workflow's result, or what it failed with (a failure, a timeout); fails after `timeout`."""
        return await asyncio.wait_for(
            asyncio.gather(*(h.result() for h in self.handles), return_exceptions=True), timeout=timeout
        )


class OrderStream(WorkflowStream):
    """Starts one sample-worker order (OrderWorkflow) every ~`every` s, from `start()` until `stop()`."""

    def __init__(self, client: Client, task_queue: str, *, every: float = 0.25, delay_seconds: float = 0.1) -> None:
        settings = Settings(temporal_address=client.service_client.config.target_host, task_queue=task_queue)

        async def one() -> WorkflowHandle[OrderWorkflow, OrderResult]:
            # how long each order's charge activity takes: delay_seconds
            (handle,) = await start_orders(client, settings, count=1, delay_seconds=delay_seconds)
            return handle

        super().__init__(client, one, every=every)
