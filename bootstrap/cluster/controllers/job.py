"""The Job controller (batch/v1), with the ttl-after-finished controller's part folded in.

As kube-controller-manager 1.32 runs Jobs: pods are named `<job>-<5 chars>` and
carry a controller ownerReference; up to `parallelism` run at once until
`completions` have succeeded; a failed pod counts against `backoffLimit` (and,
with restartPolicy OnFailure, so do container restarts), and a replacement
waits out a back-off (10s, doubling, at most 6 minutes). Finishing is two-step
as in 1.32: `SuccessCriteriaMet` then `Complete`, or `FailureTarget` then
`Failed` once no pod of the Job is left running. `activeDeadlineSeconds` fails
the Job with DeadlineExceeded and deletes its pods; `ttlSecondsAfterFinished`
deletes the finished Job (its pods follow through the garbage collector).

Simplifications: no pod finalizers (`batch.kubernetes.io/job-tracking`): the
succeeded/failed counts only grow, from the pods that exist; no orphan adoption,
no Indexed completion, podFailurePolicy or successPolicy.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bootstrap.cluster.controllers._base import Controller, Key
from bootstrap.cluster.controllers._pods import create_pod, delete_pod
from bootstrap.cluster.controllers._util import controller_ref, is_controlled_by, is_pod_ready, now, parse_time
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.events import WARNING, EventRecorder
from bootstrap.cluster.resources import JOBS, PODS
from bootstrap.cluster.store import Obj, Store, WatchEvent

log = logging.getLogger(__name__)

COMPONENT = "job-controller"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0

_FINISHED = ("Complete", "Failed")


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(status: Obj, cond_type: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == cond_type and c.get("status") == "True":
            return c
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _restarts(pod: Obj) -> int:
    status = pod.get("status") or {}
    return sum(
        int(cs.get("restartCount", 0)) for key in ("initContainerStatuses", "containerStatuses") for cs in status.get(key) or []
    )


def _finished_at(pod: Obj) -> datetime | None:
    latest: datetime | None = None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    return latest or parse_time(pod["metadata"].get("creationTimestamp"))


class JobController(Controller):
    resource = JOBS

    def __init__(self, store: Store, *, events: EventRecorder | None = None) -> None:
        super().__init__(store)
        self._events = events or EventRecorder(store)

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object
        meta = obj["metadata"]
        if event.resource is JOBS:
            self._queue.add((meta["namespace"], meta["name"]))
        elif event.resource is PODS:
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
                self._queue.add((meta["namespace"], ref["name"]))

    # ----- reconcile -----

    def sync(self, key: Key) -> None:
        namespace, name = key
        job = self._store.try_get(JOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        old_status = job.get("status") or {}
        status: dict[str, Any] = dict(old_status)
        status["conditions"] = [dict(c) for c in old_status.get("conditions") or []]
        at = now()
        if any(_cond(status, t) for t in _FINISHED):
            self._expire(job, status, at)
            return
        pods = [p for p in self._store.list(PODS, namespace) if is_controlled_by(p, job)]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp") and _phase(p) not in ("Succeeded", "Failed")]
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp") and _phase(p) not in ("Succeeded", "Failed")]
        succeeded = max(int(old_status.get("succeeded", 0)), sum(1 for p in pods if _phase(p) == "Succeeded"))
        failed_pods = [p for p in pods if _phase(p) == "Failed"]
        failed = max(int(old_status.get("failed", 0)), len(failed_pods))
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = _fmt(at)
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        backoff_limit = int(spec.get("backoffLimit", 6))

        target = _cond(status, "FailureTarget") or _cond(status, "SuccessCriteriaMet")
        if target is None:
            reason = message = None
            deadline = spec.get("activeDeadlineSeconds")
            start = parse_time(status.get("startTime"))
            if failed > backoff_limit or self._past_backoff_on_failure(spec, active, backoff_limit):
                reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            elif deadline is not None and start is not None and not suspended:
                remaining = (start + timedelta(seconds=int(deadline)) - at).total_seconds()
                if remaining <= 0:
                    reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
                else:
                    self._queue.add_after(key, remaining + 0.05)
            if reason is not None:
                self._set_condition(status, "FailureTarget", reason, message or "", at)
                self._events.record(job, reason=reason, message=message or "", component=COMPONENT, type=WARNING)
            elif (completions is not None and succeeded >= int(completions)) or (
                completions is None and succeeded > 0 and not active
            ):
                msg = "Reached expected number of succeeded pods"
                self._set_condition(status, "SuccessCriteriaMet", "CompletionsReached", msg, at)
        target = _cond(status, "FailureTarget") or _cond(status, "SuccessCriteriaMet")

        if target is not None:
            for pod in active:
                self._delete_pod(job, pod)
                terminating.append(pod)
            active = []
        elif suspended:
            for pod in active:
                self._delete_pod(job, pod)
            active = []
        else:
            if completions is not None:
                wanted = min(parallelism, int(completions) - succeeded)
            else:
                wanted = 0 if succeeded > 0 else parallelism
            wanted = max(0, wanted)
            if len(active) < wanted:
                wait = self._backoff_remaining(failed, failed_pods, at)
                if wait > 0:
                    self._queue.add_after(key, wait + 0.05)
                else:
                    for _ in range(wanted - len(active)):
                        created = self._create_pod(job)
                        if created is None:
                            break
                        active.append(created)
            elif len(active) > wanted:
                for pod in active[wanted:]:
                    self._delete_pod(job, pod)
                active = active[:wanted]

        if target is not None and not terminating:
            if target["type"] == "SuccessCriteriaMet":
                self._set_condition(status, "Complete", target["reason"], target["message"], at)
                status["completionTime"] = _fmt(at)
                self._events.record(job, reason="Completed", message="Job completed", component=COMPONENT)
            else:
                self._set_condition(status, "Failed", target["reason"], target["message"], at)

        if active:
            status["active"] = len(active)
        else:
            status.pop("active", None)
        for field, value in (("succeeded", succeeded), ("failed", failed)):
            if value:
                status[field] = value
            else:
                status.pop(field, None)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {}
        if not status["conditions"]:
            del status["conditions"]
        if status != old_status:
            job["status"] = status
            job = self._store.update(JOBS, job, subresource="status")
        if any(_cond(status, t) for t in _FINISHED):
            self._expire(job, status, at)

    @staticmethod
    def _past_backoff_on_failure(spec: Obj, active: list[Obj], backoff_limit: int) -> bool:
        """pastBackoffLimitOnFailure: with OnFailure, container restarts in running pods count as failures."""
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(_restarts(p) for p in active if _phase(p) in ("Pending", "Running"))
        return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit

    @staticmethod
    def _backoff_remaining(failed: int, failed_pods: list[Obj], at: datetime) -> float:
        if failed <= 0 or not failed_pods:
            return 0.0
        last = max((t for t in (_finished_at(p) for p in failed_pods) if t is not None), default=None)
        if last is None:
            return 0.0
        delay = min(BACKOFF_BASE * 2 ** (failed - 1), BACKOFF_MAX)
        return (last - at).total_seconds() + delay

    @staticmethod
    def _set_condition(status: Obj, cond_type: str, reason: str, message: str, at: datetime) -> None:
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond_type]
        status["conditions"].append(
            {
                "type": cond_type,
                "status": "True",
                "lastProbeTime": _fmt(at),
                "lastTransitionTime": _fmt(at),
                "reason": reason,
                "message": message,
            }
        )

    def _expire(self, job: Obj, status: Obj, at: datetime) -> None:
        """ttlSecondsAfterFinished: delete the Job (foreground, as the TTL controller does) once it has expired."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = _cond(status, "Complete") or _cond(status, "Failed") or {}
        since = parse_time(status.get("completionTime")) or parse_time(finished.get("lastTransitionTime"))
        if since is None:
            return
        remaining = (since + timedelta(seconds=int(ttl)) - at).total_seconds()
        meta = job["metadata"]
        if remaining > 0:
            self._queue.add_after((meta["namespace"], meta["name"]), remaining + 0.05)
            return
        try:
            self._store.delete(JOBS, meta["namespace"], meta["name"], propagation="Foreground")
        except ApiError as err:
            if err.code != 404:
                raise

    def _create_pod(self, job: Obj) -> Obj | None:
        return create_pod(self._store, self._events, job, component=COMPONENT, generate_name=True)

    def _delete_pod(self, job: Obj, pod: Obj) -> None:
        delete_pod(self._store, self._events, job, pod, component=COMPONENT)
