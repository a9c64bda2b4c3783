"""The Deployment controller, after kube-controller-manager's (pkg/controller/deployment).

Why it mirrors the Go code so closely: `kubectl rollout status|undo|history`
and every Kubernetes client read the Deployment's status, conditions and the
ReplicaSets' annotations with Kubernetes' exact semantics, so the arithmetic
(surge, unavailable, proportional scaling) and the condition bookkeeping are
copied rather than reinvented. The store is the informer cache: every read
is current, so the controller reconciles a key once per wake-up and needs no
expectations. It reacts to store events (a ReplicaSet's status change wakes
its Deployment at once); the only timers are the progress deadline and
minReadySeconds.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from bootstrap.cluster.controllers import _deployment_util as du
from bootstrap.cluster.controllers._base import Controller, Key
from bootstrap.cluster.controllers._util import (
    controller_ref,
    is_controlled_by,
    now,
    owner_reference,
    parse_time,
)
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.events import EventRecorder
from bootstrap.cluster.resources import DEPLOYMENTS, PODS, REPLICASETS
from bootstrap.cluster.selectors import match_label_dict
from bootstrap.cluster.store import Obj, Store, WatchEvent

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"


class DeploymentController(Controller):
    resource = DEPLOYMENTS

    def __init__(self, store: Store, *, events: EventRecorder | None = None) -> None:
        super().__init__(store)
        self._events = events or EventRecorder(store)

    # ----- event handling (cheap: enqueue only) -----

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object
        meta = obj["metadata"]
        if event.resource is DEPLOYMENTS:
            self._queue.add((meta["namespace"], meta["name"]))
        elif event.resource is REPLICASETS:
            ref = controller_ref(obj)
            if ref is not None:
                if ref.get("kind") == "Deployment":
                    self._queue.add((meta["namespace"], ref["name"]))
            elif event.type != "DELETED":
                for d in self._store.list(DEPLOYMENTS, meta["namespace"]):
                    if match_label_dict(d["spec"].get("selector"), meta.get("labels")):
                        self._queue.add((meta["namespace"], d["metadata"]["name"]))
        elif event.resource is PODS and event.type == "DELETED":
            # Recreate waits for every old pod to be gone before it scales the new ReplicaSet up.
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                rs = self._store.try_get(REPLICASETS, meta["namespace"], ref["name"])
                owner = controller_ref(rs) if rs is not None else None
                if owner is not None and owner.get("kind") == "Deployment":
                    self._queue.add((meta["namespace"], owner["name"]))

    # ----- reconcile -----

    def sync(self, key: Key) -> None:
        namespace, name = key
        d = self._store.try_get(DEPLOYMENTS, namespace, name)
        if d is None:
            return
        rs_list = self._claim_replica_sets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = self._get_all(d, rs_list, create=False)
            self._sync_status(d, [*old_rss, *([new_rs] if new_rs else [])], new_rs)
            return
        self._check_paused_conditions(d)
        if d["spec"].get("paused") or self._is_scaling_event(d, rs_list):
            self._sync_scale(d, rs_list)
            return
        if du.is_rolling(d):
            self._rollout_rolling(d, rs_list)
        else:
            self._rollout_recreate(d, rs_list)

    # ----- writes (each refreshes the caller's dict in place) -----

    def _write(self, obj: Obj, *, status: bool = False) -> None:
        res = DEPLOYMENTS if obj["kind"] == "Deployment" else REPLICASETS
        stored = self._store.update(res, obj, subresource="status" if status else None)
        obj.clear()
        obj.update(stored)

    def _claim_replica_sets(self, d: Obj) -> list[Obj]:
        """The Deployment's ReplicaSets, adopting matching orphans (and never another owner's)."""
        owned: list[Obj] = []
        selector = d["spec"].get("selector")
        for rs in self._store.list(REPLICASETS, d["metadata"]["namespace"]):
            if is_controlled_by(rs, d):
                owned.append(rs)
            elif (
                controller_ref(rs) is None
                and not d["metadata"].get("deletionTimestamp")
                and not rs["metadata"].get("deletionTimestamp")
                and match_label_dict(selector, rs["metadata"].get("labels"))
            ):
                rs["metadata"].setdefault("ownerReferences", []).append(owner_reference(d))
                self._write(rs)
                owned.append(rs)
        return owned

    # ----- new / old ReplicaSets and revisions -----

    def _get_all(self, d: Obj, rs_list: list[Obj], *, create: bool) -> tuple[Obj | None, list[Obj]]:
        """Kubernetes' getAllReplicaSetsAndSyncRevision: find (or create) the new RS and give it its revision."""
        ordered = sorted(rs_list, key=_by_creation)
        new_rs = next((rs for rs in ordered if du.templates_equal(rs["spec"].get("template"), d["spec"]["template"])), None)
        old_rss = [rs for rs in ordered if rs is not new_rs]
        new_revision = max((du.revision(rs) for rs in old_rss), default=0) + 1
        if new_rs is not None:
            self._sync_existing_new_rs(d, new_rs, new_revision)
            return new_rs, old_rss
        if not create:
            return None, old_rss
        return self._create_new_rs(d, old_rss, new_revision), old_rss

    def _sync_existing_new_rs(self, d: Obj, rs: Obj, new_revision: int) -> None:
        changed = du.copy_annotations(d, rs)
        changed = du.set_new_rs_revision(rs, new_revision) or changed
        min_ready = int(d["spec"].get("minReadySeconds", 0))
        if int(rs["spec"].get("minReadySeconds", 0)) != min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
            changed = True
        if changed:
            self._write(rs)
        self._set_deployment_revision(d, du.revision(rs))
        if du.progress_deadline(d) is not None and du.status_condition(d.get("status") or {}, du.PROGRESSING) is None:
            status = dict(d.get("status") or {})
            du.set_condition(
                status,
                du.new_condition(
                    du.PROGRESSING, "True", du.FOUND_NEW_RS_REASON, f'Found new replica set "{rs["metadata"]["name"]}"'
                ),
            )
            d["status"] = status
            self._write(d, status=True)

    def _create_new_rs(self, d: Obj, old_rss: list[Obj], new_revision: int) -> Obj | None:
        status = d.get("status") or {}
        template = d["spec"]["template"]
        pod_hash = du.template_hash(template, status.get("collisionCount"))
        new_template = _with_label(template, pod_hash)
        selector = dict(d["spec"].get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), du.HASH_LABEL: pod_hash}
        name = f"{d['metadata']['name']}-{pod_hash}"
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "labels": dict(new_template["metadata"]["labels"]),
                "ownerReferences": [owner_reference(d)],
                "annotations": {},
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(d["spec"].get("minReadySeconds", 0)),
                "selector": selector,
                "template": new_template,
            },
        }
        rs["spec"]["replicas"] = self._new_rs_new_replicas(d, [*old_rss, rs], rs)
        du.copy_annotations(d, rs)
        du.set_new_rs_revision(rs, new_revision)
        du.set_replicas_annotations(rs, du.replicas(d), du.replicas(d) + du.max_surge(d))
        try:
            created = self._store.create(REPLICASETS, rs)
        except ApiError as err:
            if err.code != 409:
                raise
            existing = self._store.try_get(REPLICASETS, d["metadata"]["namespace"], name)
            if (
                existing is not None
                and is_controlled_by(existing, d)
                and du.templates_equal(existing["spec"]["template"], template)
            ):
                return existing
            new_status = dict(status)
            new_status["collisionCount"] = int(status.get("collisionCount", 0)) + 1
            d["status"] = new_status
            self._write(d, status=True)
            raise
        if created["spec"]["replicas"] > 0:
            self._scaled_event(d, "up", name, 0, created["spec"]["replicas"])
        self._set_deployment_revision(d, new_revision)
        if du.progress_deadline(d) is not None:
            new_status = dict(d.get("status") or {})
            du.set_condition(
                new_status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_REASON, f'Created new replica set "{name}"')
            )
            d["status"] = new_status
            self._write(d, status=True)
        return created

    def _set_deployment_revision(self, d: Obj, value: int) -> None:
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get(du.REVISION) != str(value):
            annotations[du.REVISION] = str(value)
            self._write(d)

    # ----- scaling -----

    def _new_rs_new_replicas(self, d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
        if not du.is_rolling(d):
            return du.replicas(d)
        current = _spec_total(all_rss)
        max_total = du.replicas(d) + du.max_surge(d)
        new_replicas = du.replicas(new_rs)
        if current >= max_total:
            return new_replicas
        scale_up = min(max_total - current, du.replicas(d) - new_replicas)
        return new_replicas + max(0, scale_up)

    def _scale_rs(self, d: Obj, rs: Obj, new_scale: int) -> bool:
        """Scale `rs` (and refresh its replica annotations); True if its size changed."""
        old_scale = du.replicas(rs)
        size_changed = old_scale != new_scale
        annotations_changed = du.set_replicas_annotations(rs, du.replicas(d), du.replicas(d) + du.max_surge(d))
        if size_changed or annotations_changed:
            rs["spec"]["replicas"] = new_scale
            self._write(rs)
            if size_changed:
                self._scaled_event(d, "up" if new_scale > old_scale else "down", rs["metadata"]["name"], old_scale, new_scale)
        return size_changed

    def _scaled_event(self, d: Obj, direction: str, rs_name: str, old: int, new: int) -> None:
        self._events.record(
            d,
            reason="ScalingReplicaSet",
            message=f"Scaled {direction} replica set {rs_name} from {old} to {new}",
            component=COMPONENT,
        )

    def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        new_rs, old_rss = self._get_all(d, rs_list, create=False)
        for rs in _active([*old_rss, *([new_rs] if new_rs else [])]):
            desired = du.int_annotation(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    def _sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """Kubernetes' sync(): scaling and paused deployments (no rollout progress)."""
        new_rs, old_rss = self._get_all(d, rs_list, create=False)
        self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            self._cleanup(d, old_rss)
        self._sync_status(d, [*old_rss, *([new_rs] if new_rs else [])], new_rs)

    def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Proportional scaling of every active ReplicaSet, as Kubernetes' scale()."""
        latest = _active_or_latest(new_rs, old_rss)
        if latest is not None:
            self._scale_rs(d, latest, du.replicas(d))
            return
        if _is_saturated(d, new_rs):
            for rs in _active(old_rss):
                self._scale_rs(d, rs, 0)
            return
        if not du.is_rolling(d):
            return
        all_rss = _active([*old_rss, *([new_rs] if new_rs else [])])
        allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
        to_add = allowed - _spec_total(all_rss)
        if to_add > 0:
            all_rss.sort(key=lambda rs: (-du.replicas(rs), -_by_creation(rs)[0]))
        elif to_add < 0:
            all_rss.sort(key=lambda rs: (-du.replicas(rs), _by_creation(rs)[0]))
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rss:
            proportion = 0
            if to_add != 0:
                proportion = self._proportion(d, rs, to_add, added)
                added += proportion
            sizes[rs["metadata"]["name"]] = du.replicas(rs) + proportion
        if to_add != 0 and all_rss:
            first = all_rss[0]["metadata"]["name"]
            sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in all_rss:
            self._scale_rs(d, rs, sizes[rs["metadata"]["name"]])

    def _proportion(self, d: Obj, rs: Obj, to_add: int, added: int) -> int:
        if du.replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if du.replicas(d) == 0:
            fraction = -du.replicas(rs)
        else:
            total = du.replicas(d) + du.max_surge(d)
            annotated = du.int_annotation(rs, du.MAX_REPLICAS)
            if annotated is None:
                annotated = du.status_int(d, "replicas")
            fraction = round(du.replicas(rs) * total / annotated) - du.replicas(rs) if annotated else 0
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    # ----- rollouts -----

    def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = self._get_all(d, rs_list, create=True)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        if new_rs is not None and self._reconcile_new_rs(d, all_rss, new_rs):
            self._sync_rollout_status(d, all_rss, new_rs)
            return
        if self._reconcile_old_rss(d, all_rss, _active(old_rss), new_rs):
            self._sync_rollout_status(d, all_rss, new_rs)
            return
        if du.deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old_rss)
        self._sync_rollout_status(d, all_rss, new_rs)

    def _reconcile_new_rs(self, d: Obj, all_rss: list[Obj], new_rs: Obj) -> bool:
        want = du.replicas(d)
        if du.replicas(new_rs) == want:
            return False
        if du.replicas(new_rs) > want:
            return self._scale_rs(d, new_rs, want)
        return self._scale_rs(d, new_rs, self._new_rs_new_replicas(d, all_rss, new_rs))

    def _reconcile_old_rss(self, d: Obj, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj | None) -> bool:
        if _spec_total(old_rss) == 0:
            return False
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = (du.replicas(new_rs) - du.status_int(new_rs, "availableReplicas")) if new_rs else 0
        max_scaled_down = _spec_total(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self._cleanup_unhealthy(d, old_rss, max_scaled_down)
        scaled = self._scale_down_old_for_rolling(d, all_rss, old_rss)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, d: Obj, old_rss: list[Obj], max_cleanup: int) -> int:
        """Scale down old ReplicaSets' unavailable pods first: they cost no availability."""
        total = 0
        for rs in sorted(old_rss, key=_by_creation):
            if total >= max_cleanup:
                break
            unavailable = du.replicas(rs) - du.status_int(rs, "availableReplicas")
            if du.replicas(rs) == 0 or unavailable <= 0:
                continue
            count = min(max_cleanup - total, unavailable)
            self._scale_rs(d, rs, du.replicas(rs) - count)
            total += count
        return total

    def _scale_down_old_for_rolling(self, d: Obj, all_rss: list[Obj], old_rss: list[Obj]) -> int:
        min_available = du.replicas(d) - du.max_unavailable(d)
        available = sum(du.status_int(rs, "availableReplicas") for rs in all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in sorted(old_rss, key=_by_creation):
            if total >= to_scale_down:
                break
            if du.replicas(rs) == 0:
                continue
            count = min(du.replicas(rs), to_scale_down - total)
            self._scale_rs(d, rs, du.replicas(rs) - count)
            total += count
        return total

    def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = self._get_all(d, rs_list, create=False)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        scaled = False
        for rs in _active(old_rss):
            scaled = self._scale_rs(d, rs, 0) or scaled
        if scaled or self._old_pods_running(old_rss):
            self._sync_rollout_status(d, all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = self._get_all(d, rs_list, create=True)
            all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        if new_rs is not None:
            self._scale_rs(d, new_rs, du.replicas(d))
        if du.deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old_rss)
        self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, old_rss: list[Obj]) -> bool:
        """Recreate's guard: no old pod may still run (terminating ones included) when the new RS scales up."""
        if any(du.status_int(rs, "replicas") > 0 for rs in old_rss):
            return True
        uids = {rs["metadata"]["uid"] for rs in old_rss}
        if not uids:
            return False
        for pod in self._store.list(PODS, old_rss[0]["metadata"]["namespace"]):
            ref = controller_ref(pod)
            if (
                ref is not None
                and ref.get("uid") in uids
                and (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
            ):
                return True
        return False

    def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """revisionHistoryLimit: delete the oldest fully scaled-down ReplicaSets beyond the limit."""
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - du.history_limit(d)
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (du.revision(r), _by_creation(r)))[:diff]:
            status = rs.get("status") or {}
            if (
                du.status_int(rs, "replicas") != 0
                or du.replicas(rs) != 0
                or int(rs["metadata"].get("generation", 1)) > int(status.get("observedGeneration", 0))
            ):
                continue
            try:
                self._store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ApiError as err:
                if err.code != 404:
                    raise

    # ----- status -----

    def _calculate_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
        available = sum(du.status_int(rs, "availableReplicas") for rs in all_rss)
        old = d.get("status") or {}
        counts = {
            "replicas": sum(du.status_int(rs, "replicas") for rs in all_rss),
            "updatedReplicas": du.status_int(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(du.status_int(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, _spec_total(all_rss) - available),
        }
        status: Obj = {"observedGeneration": d["metadata"].get("generation", 1)}
        status.update({k: v for k, v in counts.items() if v})
        status["conditions"] = [dict(c) for c in old.get("conditions") or []]
        if "collisionCount" in old:
            status["collisionCount"] = old["collisionCount"]
        if available >= du.replicas(d) - du.max_unavailable(d):
            cond = du.new_condition(du.AVAILABLE, "True", du.MIN_AVAILABLE_REASON, "Deployment has minimum availability.")
        else:
            cond = du.new_condition(
                du.AVAILABLE, "False", du.MIN_UNAVAILABLE_REASON, "Deployment does not have minimum availability."
            )
        du.set_condition(status, cond)
        return status

    def _sync_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> None:
        status = self._calculate_status(d, all_rss, new_rs)
        if status != d.get("status"):
            d["status"] = status
            self._write(d, status=True)

    def _sync_rollout_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> None:
        """Kubernetes' syncRolloutStatus: the Progressing condition and the progress deadline."""
        status = self._calculate_status(d, all_rss, new_rs)
        deadline = du.progress_deadline(d)
        if deadline is None:
            du.remove_condition(status, du.PROGRESSING)
        current = du.status_condition(d.get("status") or {}, du.PROGRESSING)
        complete = (
            int(status.get("replicas", 0)) == int(status.get("updatedReplicas", 0))
            and current is not None
            and current.get("reason") == du.NEW_RS_AVAILABLE_REASON
        )
        subject = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{d["metadata"]["name"]}"'
        if deadline is not None and not complete:
            if du.deployment_complete(d, status):
                du.set_condition(
                    status,
                    du.new_condition(
                        du.PROGRESSING, "True", du.NEW_RS_AVAILABLE_REASON, f"{subject} has successfully progressed."
                    ),
                )
            elif du.deployment_progressing(d, status):
                cond = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED_REASON, f"{subject} is progressing.")
                if current is not None and current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
                du.remove_condition(status, du.PROGRESSING)
                du.set_condition(status, cond)
            elif self._timed_out(d, status):
                du.set_condition(
                    status,
                    du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT_REASON, f"{subject} has timed out progressing."),
                )
        if status != d.get("status"):
            d["status"] = status
            self._write(d, status=True)
        self._requeue_for_deadline(d, status)

    def _timed_out(self, d: Obj, status: Obj) -> bool:
        cond = du.status_condition(status, du.PROGRESSING)
        if cond is None or cond.get("reason") == du.NEW_RS_AVAILABLE_REASON:
            return False
        if cond.get("reason") == du.TIMED_OUT_REASON:
            return True
        left = du.seconds_to_deadline(d, status, now())
        return left is not None and left < 0

    def _requeue_for_deadline(self, d: Obj, status: Obj) -> None:
        if du.deployment_complete(d, status):
            return
        left = du.seconds_to_deadline(d, status, now())
        if left is not None:
            self._queue.add_after((d["metadata"]["namespace"], d["metadata"]["name"]), max(0.0, left) + 0.05)

    def _check_paused_conditions(self, d: Obj) -> None:
        if du.progress_deadline(d) is None:
            return
        status = dict(d.get("status") or {})
        cond = du.status_condition(status, du.PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_REASON
        paused = bool(d["spec"].get("paused"))
        if paused and not paused_cond:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED_REASON, "Deployment is paused"))
        elif not paused and paused_cond:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED_REASON, "Deployment is resumed"))
        else:
            return
        d["status"] = status
        self._write(d, status=True)


# ----- ReplicaSet list helpers -----


def _by_creation(rs: Obj) -> tuple[float, str]:
    created = parse_time(rs["metadata"].get("creationTimestamp"))
    return (created.timestamp() if created else 0.0, rs["metadata"]["name"])


def _active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if du.replicas(rs) > 0]


def _spec_total(rss: list[Obj]) -> int:
    return sum(du.replicas(rs) for rs in rss)


def _active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=_by_creation, reverse=True)
    active = _active([*newest_first, *([new_rs] if new_rs else [])])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    want = du.replicas(d)
    return (
        du.replicas(rs) == want
        and du.int_annotation(rs, du.DESIRED_REPLICAS) == want
        and du.status_int(rs, "availableReplicas") == want
    )


def _with_label(template: Obj, pod_hash: str) -> Any:
    t = copy.deepcopy(template)
    t.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = pod_hash
    return t
