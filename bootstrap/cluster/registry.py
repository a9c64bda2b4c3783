"""What the API server's per-kind registries do beyond defaulting and validation.

- On create, `status` is what the kind's strategy resets it to (PrepareForCreate):
  a Pod starts `{phase: Pending, qosClass: ...}`, a Service `{loadBalancer: {}}`,
  a Deployment, Job or CronJob `{}`, a ReplicaSet `{replicas: 0}`; whatever the client sent is dropped.
- Services get a ClusterIP from the service CIDR 10.96.0.0/12 (10.96.0.1 belongs to the
  `kubernetes` service), unless headless (`clusterIP: None`) or ExternalName, and an update
  carries the allocated IPs forward; the primary ClusterIP may not change once set.
- Pods go through the ServiceAccount admission plugin (`admit`): no `serviceAccountName` means `default`
  (and the deprecated `serviceAccount` mirrors it, as the v1 conversion does); an account that does not
  exist refuses the create with 403, as kube-apiserver's plugin does.
- DELETE answers with the deleted object for the kinds whose registry sets
  `ReturnDeletedObject` (pods, services, service accounts); the others answer a `Status`.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from typing import Any

from bootstrap.cluster import errors
from bootstrap.cluster.kubelet.runtime import qos_class
from bootstrap.cluster.resources import (
    CRONJOBS,
    DEPLOYMENTS,
    HORIZONTALPODAUTOSCALERS,
    JOBS,
    NAMESPACES,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICASETS,
    SERVICEACCOUNTS,
    SERVICES,
    ResourceType,
)
from bootstrap.cluster.store import Store

Obj = dict[str, Any]

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
KUBERNETES_SERVICE_IP = "10.96.0.1"
# kube-apiserver allocates dynamically from above this offset first (ServiceIPStaticSubrange: min(max(16, size/16), 256)).
_STATIC_SUBRANGE = min(max(16, SERVICE_CIDR.num_addresses // 16), 256)

RETURNS_DELETED_OBJECT = frozenset({PODS.key, SERVICES.key, SERVICEACCOUNTS.key})


def returns_deleted_object(res: ResourceType) -> bool:
    return res.key in RETURNS_DELETED_OBJECT


def _needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"


def _in_use(store: Store) -> set[str]:
    used = {KUBERNETES_SERVICE_IP}
    for svc in store.list(SERVICES):
        spec = svc.get("spec") or {}
        used.update(str(ip) for ip in spec.get("clusterIPs") or [])
        if spec.get("clusterIP"):
            used.add(str(spec["clusterIP"]))
    return used


def allocate_cluster_ip(store: Store) -> str:
    used = _in_use(store)
    base = int(SERVICE_CIDR.network_address)
    last = SERVICE_CIDR.num_addresses - 2  # not the network or the broadcast address
    for low, high in ((_STATIC_SUBRANGE, last), (1, _STATIC_SUBRANGE - 1)):
        start = random.randint(low, high)
        for offset in list(range(start, high + 1)) + list(range(low, start)):
            ip = str(ipaddress.ip_address(base + offset))
            if ip not in used:
                return ip
    raise errors.ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full")


def _invalid_ips(name: str, ips: list[str], message: str) -> errors.ApiError:
    shown = "[]string{" + ", ".join(f'"{ip}"' for ip in ips) + "}"
    return errors.invalid("Service", name, [("spec.clusterIPs", f"Invalid value: {shown}: {message}")])


def _service_create(obj: Obj, store: Store) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    name = str(obj["metadata"].get("name") or "")
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if not _needs_cluster_ip(spec):
        if spec.get("type") == "ExternalName":
            return
        spec.setdefault("clusterIPs", ["None"])
    elif not spec.get("clusterIP"):
        ip = allocate_cluster_ip(store)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    else:
        ip = str(spec["clusterIP"])
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise _invalid_ips(name, [ip], "must be a valid IP address") from None
        if address not in SERVICE_CIDR or address in (SERVICE_CIDR.network_address, SERVICE_CIDR.broadcast_address):
            raise _invalid_ips(
                name,
                [ip],
                f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                f"The range of valid IPs is {SERVICE_CIDR}",
            )
        if ip in _in_use(store):
            raise _invalid_ips(name, [ip], f"failed to allocate IP {ip}: provided IP is already allocated")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")


def _service_update(obj: Obj, old: Obj) -> None:
    spec, old_spec = obj.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return
    name = str(obj["metadata"].get("name") or "")
    # patchAllocatedValues: an update that leaves the allocated values out keeps them
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        same = spec["clusterIP"] == old_spec.get("clusterIP")
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or []) if same else [spec["clusterIP"]]
    if spec.get("type") != "ExternalName":
        for key in ("ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            if key not in spec and key in old_spec:
                spec[key] = old_spec[key]
    old_ips, new_ips = old_spec.get("clusterIPs") or [], spec.get("clusterIPs") or []
    external = "ExternalName" in (old_spec.get("type"), spec.get("type"))
    if old_ips and new_ips and not external and new_ips[0] != old_ips[0]:
        shown = "[]string{" + ", ".join(f'"{ip}"' for ip in new_ips) + "}"
        raise errors.invalid("Service", name, [("spec.clusterIPs[0]", f"Invalid value: {shown}: may not change once set")])


def _job_create(obj: Obj) -> None:
    """The Job strategy's generateSelector: a uid now (the store keeps it), the job-name and
    controller-uid labels (new and legacy) on the pod template, and a selector on the uid."""
    meta = obj["metadata"]
    meta["uid"] = str(uuid.uuid4())
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector"):
        return
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    for key in ("batch.kubernetes.io/controller-uid", "controller-uid"):
        labels.setdefault(key, meta["uid"])
    for key in ("batch.kubernetes.io/job-name", "job-name"):
        labels.setdefault(key, str(meta.get("name") or ""))
    selector = spec.get("selector") if isinstance(spec.get("selector"), dict) else {}
    match = selector.setdefault("matchLabels", {})
    match.setdefault("batch.kubernetes.io/controller-uid", meta["uid"])
    spec["selector"] = selector


def admit(res: ResourceType, obj: Obj, store: Store | None) -> None:
    """Mutating admission on create (before validation): the ServiceAccount plugin for pods.

    `store=None`: the defaulting only (the workload controllers' pods: a controller run on a bare store in
    tests has no serviceaccounts controller, so the existence check is the API's alone)."""
    spec = obj.get("spec")
    if res is not PODS or not isinstance(spec, dict):
        return
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    if store is None or store.try_get(NAMESPACES, None, namespace) is None:
        return  # the store answers 404 for the namespace, as the NamespaceLifecycle plugin (first) does
    if store.try_get(SERVICEACCOUNTS, namespace, account) is None:
        name = meta.get("name") or meta.get("generateName") or "Unknown"  # admission.NewForbidden's name
        raise errors.ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account {namespace}/{account}: '
            f'serviceaccount "{account}" not found',
            details={"name": name, "kind": "pods"},
        )


def prepare_for_create(res: ResourceType, obj: Obj, store: Store) -> None:
    """After defaulting and validation of a create: reset status, allocate what the registry allocates."""
    if res is PODS and isinstance(obj.get("spec"), dict):
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}
    elif res is SERVICES:
        obj["status"] = {"loadBalancer": {}}
        _service_create(obj, store)
    elif res is DEPLOYMENTS:
        obj["status"] = {}
    elif res is REPLICASETS:
        obj["status"] = {"replicas": 0}
    elif res is JOBS:
        obj["status"] = {}
        _job_create(obj)
    elif res is CRONJOBS:
        obj["status"] = {}
    elif res is PODDISRUPTIONBUDGETS:
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}
    elif res is HORIZONTALPODAUTOSCALERS:
        obj["status"] = {"desiredReplicas": 0}


def prepare_for_update(res: ResourceType, obj: Obj, old: Obj) -> None:
    """Before validation of an update: carry allocated values forward, refuse changing immutable ones."""
    if res is SERVICES:
        _service_update(obj, old)
    elif res is PODS and isinstance(obj.get("spec"), dict):
        old_spec = old.get("spec") or {}
        for key in ("serviceAccountName", "serviceAccount"):  # set by admission: an update leaving them out keeps them
            if not obj["spec"].get(key) and old_spec.get(key):
                obj["spec"][key] = old_spec[key]
