"""The ReplicaSet controller: keep `spec.replicas` pods alive, and report how many are ready.

As kube-controller-manager's replicaset controller: pods are named
`<rs>-<5 chars>`, carry a controller ownerReference, terminating or finished
pods do not count, and scale-down deletes the least useful pods first
(unscheduled, pending, not ready, recently ready, most restarted, newest).
The store is read directly (it is the cache), so no "expectations" are needed.
"""

from __future__ import annotations

import logging
from typing import Any

from bootstrap.cluster.controllers._base import Controller, Key
from bootstrap.cluster.controllers._pods import create_pod, delete_pod
from bootstrap.cluster.controllers._util import (
    controller_ref,
    is_controlled_by,
    is_pod_active,
    is_pod_ready,
    now,
    owner_reference,
    parse_time,
    seconds_until_available,
)
from bootstrap.cluster.events import EventRecorder
from bootstrap.cluster.resources import PODS, REPLICASETS
from bootstrap.cluster.selectors import match_label_dict
from bootstrap.cluster.store import Obj, Store, WatchEvent

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"


class ReplicaSetController(Controller):
    resource = REPLICASETS

    def __init__(self, store: Store, *, events: EventRecorder | None = None) -> None:
        super().__init__(store)
        self._events = events or EventRecorder(store)

    # ----- event handling (cheap: enqueue only) -----

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object
        meta = obj["metadata"]
        if event.resource is REPLICASETS:
            self._queue.add((meta["namespace"], meta["name"]))
        elif event.resource is PODS:
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                self._queue.add((meta["namespace"], ref["name"]))
            elif ref is None and event.type == "ADDED":
                for rs in self._store.list(REPLICASETS, meta["namespace"]):
                    if match_label_dict(rs["spec"].get("selector"), meta.get("labels")):
                        self._queue.add((meta["namespace"], rs["metadata"]["name"]))

    # ----- reconcile -----

    def sync(self, key: Key) -> None:
        namespace, name = key
        rs = self._store.try_get(REPLICASETS, namespace, name)
        if rs is None:
            return
        pods = self._claim_pods(rs)
        active = [p for p in pods if is_pod_active(p)]
        if not rs["metadata"].get("deletionTimestamp"):
            wanted = int(rs["spec"].get("replicas", 1))
            diff = len(active) - wanted
            if diff < 0:
                for _ in range(-diff):
                    created = self._create_pod(rs)
                    if created is None:
                        break
                    active.append(created)
            elif diff > 0:
                victims = sorted(active, key=_deletion_rank)[:diff]
                for pod in victims:
                    self._delete_pod(rs, pod)
                    active.remove(pod)
        self._update_status(rs, active)

    def _claim_pods(self, rs: Obj) -> list[Obj]:
        """Pods this ReplicaSet controls, adopting matching orphans as Kubernetes does."""
        namespace = rs["metadata"]["namespace"]
        selector = rs["spec"].get("selector")
        owned: list[Obj] = []
        for pod in self._store.list(PODS, namespace):
            if is_controlled_by(pod, rs):
                owned.append(pod)
            elif (
                controller_ref(pod) is None
                and not rs["metadata"].get("deletionTimestamp")
                and not pod["metadata"].get("deletionTimestamp")
                and match_label_dict(selector, pod["metadata"].get("labels"))
            ):
                pod["metadata"].setdefault("ownerReferences", []).append(owner_reference(rs))
                owned.append(self._store.update(PODS, pod))
        return owned

    def _create_pod(self, rs: Obj) -> Obj | None:
        return create_pod(self._store, self._events, rs, component=COMPONENT)

    def _delete_pod(self, rs: Obj, pod: Obj) -> None:
        delete_pod(self._store, self._events, rs, pod, component=COMPONENT)

    def _update_status(self, rs: Obj, active: list[Obj]) -> None:
        min_ready = int(rs["spec"].get("minReadySeconds", 0))
        template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        at = now()
        ready = available = fully_labeled = 0
        recheck: float | None = None
        for pod in active:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully_labeled += 1
            wait = seconds_until_available(pod, min_ready, at)
            if wait is None:
                continue
            ready += 1
            if wait <= 0:
                available += 1
            else:
                recheck = wait if recheck is None else min(recheck, wait)
        status: dict[str, Any] = {"replicas": len(active)}
        for field, value in (
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ):
            if value:
                status[field] = value
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        if rs.get("status", {}).get("conditions"):
            status["conditions"] = rs["status"]["conditions"]
        if recheck is not None:
            self._queue.add_after((rs["metadata"]["namespace"], rs["metadata"]["name"]), recheck + 0.05)
        if rs.get("status") != status:
            rs["status"] = status
            self._store.update(REPLICASETS, rs, subresource="status")


def _deletion_rank(pod: Obj) -> tuple[Any, ...]:
    """Sort key: the pods to delete first come first (Kubernetes' ActivePods ordering)."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    ready = is_pod_ready(pod)
    ready_since = 0.0
    if ready:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready":
                t = parse_time(cond.get("lastTransitionTime"))
                ready_since = t.timestamp() if t else 0.0
    restarts = sum(int(cs.get("restartCount", 0)) for cs in status.get("containerStatuses") or [])
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return (
        1 if pod.get("spec", {}).get("nodeName") else 0,
        phase_rank,
        1 if ready else 0,
        -ready_since,  # ready for less time goes first
        -restarts,
        -(created.timestamp() if created else 0.0),  # newer first
    )
