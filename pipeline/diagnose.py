"""Where else Temporal has seen a pod's worker: for a pod that runs but never polls its own task queue.

    sightings = await where_seen(client, pods=["sample-worker-5dc9d99b75-p57mf"], namespaces=["default"],
                                 task_queues=["sample-worker", "deployments"])
    print(format_sightings(sightings))   # seen instead on task queue 'elsewhere' (namespace default)

Two of Temporal's views, asked at once and bounded in time (WHERE_SEEN_TIMEOUT; what
was found by then is returned):

- `ListWorkers`, the workers' own heartbeats (identity, task queue, host name), in each
  given namespace and in those `ListNamespaces` lists (its first page): this finds a
  worker on a task queue nobody thought to ask about, or in another namespace. A server
  that does not answer it (UNIMPLEMENTED), a key that may not (PERMISSION_DENIED) or any
  other RPC error skips that namespace;
- `DescribeTaskQueue` over every partition and both queue types
  (`verify.partition_pollers`) of each given task queue in each given namespace: this
  finds pollers of servers or SDKs that send no heartbeats.

A worker is the pod's when its identity names the pod (`verify.identity_names_pod`:
`<pod>@<build id>` or the SDK's `<pid>@<hostname>`), or when its heartbeat's host name
is the pod's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.workflowservice.v1 import ListNamespacesRequest, ListWorkersRequest
from temporalio.client import Client
from temporalio.service import RPCError

from pipeline.verify import QUEUE_TYPES, identity_names_pod, partition_pollers

# Overall bound of `where_seen`: a diagnosis must not hang the failure path that asks for it.
WHERE_SEEN_TIMEOUT = 5.0
# At most this many namespaces from ListNamespaces (its first page), and pages of ListWorkers per namespace.
LISTED_NAMESPACES = 20
WORKER_PAGES = 5
WORKER_PAGE_SIZE = 200
_RPC_TIMEOUT = timedelta(seconds=WHERE_SEEN_TIMEOUT)


@dataclass(frozen=True)
class Sighting:
    namespace: str
    task_queue: str
    queue_type: str  # "workflow" | "activity" | "" when from ListWorkers without a type
    identity: str
    source: str  # "pollers" (DescribeTaskQueue) or "workers" (ListWorkers heartbeats)


def names_pod(identity: str, pods: Iterable[str], *, host_name: str = "") -> bool:
    """Is the worker `identity` (on host `host_name`, when a heartbeat says) in one of `pods`?"""
    return any(identity_names_pod(identity, pod) or (host_name and host_name == pod) for pod in pods)


async def where_seen(
    client: Client,
    *,
    pods: Sequence[str],
    namespaces: Sequence[str] = (),
    task_queues: Sequence[str] = (),
    partitions: int = 4,
) -> list[Sighting]:
    """Every place Temporal lists a worker of one of `pods`, deduplicated and sorted; what was found within the bound."""
    pods = [p for p in pods if p]
    if not pods:
        return []
    found: set[Sighting] = set()

    async def look() -> None:
        listed = await _listed_namespaces(client)
        all_namespaces = list(dict.fromkeys([*namespaces, *listed]))
        await asyncio.gather(
            *(_from_workers(client, ns, pods, found) for ns in all_namespaces),
            *(
                _from_pollers(client, ns, tq, queue_type, pods, partitions, found)
                for ns in dict.fromkeys(namespaces)
                for tq in dict.fromkeys(task_queues)
                for queue_type in QUEUE_TYPES
            ),
        )

    try:
        await asyncio.wait_for(look(), WHERE_SEEN_TIMEOUT)
    except TimeoutError:
        pass  # what was found so far
    return sorted(found, key=_order)


def _order(s: Sighting) -> tuple[str, str, str, str, str]:
    return (s.namespace, s.task_queue, s.queue_type, s.identity, s.source)


async def _listed_namespaces(client: Client) -> list[str]:
    try:
        answer = await client.workflow_service.list_namespaces(
            ListNamespacesRequest(page_size=LISTED_NAMESPACES), timeout=_RPC_TIMEOUT
        )
    except RPCError:
        return []
    return [n.namespace_info.name for n in answer.namespaces[:LISTED_NAMESPACES] if n.namespace_info.name]


async def _from_workers(client: Client, namespace: str, pods: Sequence[str], found: set[Sighting]) -> None:
    token = b""
    for _ in range(WORKER_PAGES):
        try:
            answer = await client.workflow_service.list_workers(
                ListWorkersRequest(namespace=namespace, page_size=WORKER_PAGE_SIZE, next_page_token=token),
                timeout=_RPC_TIMEOUT,
            )
        except RPCError:  # UNIMPLEMENTED (an older server), PERMISSION_DENIED, ...: skip this namespace
            return
        for info in answer.workers_info:
            beat = info.worker_heartbeat
            if names_pod(beat.worker_identity, pods, host_name=beat.host_info.host_name):
                found.add(Sighting(namespace, beat.task_queue, "", beat.worker_identity, "workers"))
        for worker in answer.workers:
            if names_pod(worker.worker_identity, pods, host_name=worker.host_name):
                found.add(Sighting(namespace, worker.task_queue, "", worker.worker_identity, "workers"))
        token = answer.next_page_token
        if not token:
            return


async def _from_pollers(
    client: Client,
    namespace: str,
    task_queue: str,
    queue_type: str,
    pods: Sequence[str],
    partitions: int,
    found: set[Sighting],
) -> None:
    try:
        infos = await partition_pollers(
            client, namespace=namespace, task_queue=task_queue, queue_type=queue_type, partitions=partitions
        )
    except RPCError:
        return
    for info in infos:
        if names_pod(info.identity, pods):
            found.add(Sighting(namespace, task_queue, queue_type, info.identity, "pollers"))


def format_sightings(sightings: Iterable[Sighting]) -> str:
    """One phrase: "seen instead on task queue 'x' (namespace default, workflow+activity)", or that nothing lists it."""
    places: dict[tuple[str, str], set[str]] = {}
    for s in sightings:
        places.setdefault((s.task_queue, s.namespace), set()).update([s.queue_type] if s.queue_type else [])
    if not places:
        return "seen nowhere Temporal lists workers"
    phrases = []
    for (task_queue, namespace), types in sorted(places.items()):
        kinds = "+".join(t for t in QUEUE_TYPES if t in types)
        phrases.append(f"task queue '{task_queue}' (namespace {namespace}{', ' + kinds if kinds else ''})")
    return "seen instead on " + "; ".join(phrases)
