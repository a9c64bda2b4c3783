"""The Kubernetes side of the readiness gate: watch the pods that carry it, set its condition.

    items, rv = list_gated_pods(kc, namespace=ns, selector=sel)
    start_pod_watch(kc, namespace=ns, selector=sel, rv=rv, put=on_event, stop=stop)
    set_pod_condition(kc, namespace=ns, name=pod, condition_type=POLLING, status=True, reason="Polling", message="...")

The condition goes into the pod's `status` subresource with a strategic merge
patch, which Kubernetes merges into `status.conditions` by `type`: the
kubelet's own conditions are untouched, and the kubelet then computes `Ready`
from the containers and every readiness gate (`spec.readinessGates`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.kube._resources import describe
from pipeline.kube.client import KubeClient
from pipeline.kube.pods import selector_string
from pipeline.kube.watching import Event, Pump, events

WATCH_SLICE_SECONDS = 30


def list_gated_pods(kc: KubeClient, *, namespace: str, selector: Mapping[str, str]) -> tuple[list[dict[str, Any]], str]:
    """The pods matching `selector` in `namespace` as the API returns them, and the list's resourceVersion."""
    raw = kc.request(
        method="GET",
        path=f"/api/v1/namespaces/{namespace}/pods",
        what=describe("pods", namespace, selector_string(selector)),
        query=[("labelSelector", selector_string(selector))],
    )
    return list(raw.get("items") or []), str((raw.get("metadata") or {}).get("resourceVersion") or "")


def start_pod_watch(
    kc: KubeClient,
    *,
    namespace: str,
    selector: Mapping[str, str],
    rv: str,
    put: Callable[[Event], None],
    stop: threading.Event,
) -> Pump:
    """A started thread handing every change of those pods (and a relist after 410, or its failure) to `put`."""
    what = describe("pods", namespace, selector_string(selector))
    pump = Pump(
        "gated-pods",
        put,
        stop,
        rv,
        lambda w, since: events(
            w,
            kc.core.list_namespaced_pod,
            what,
            namespace=namespace,
            label_selector=selector_string(selector),
            resource_version=since,
            timeout_seconds=WATCH_SLICE_SECONDS,
        ),
        lambda: list_gated_pods(kc, namespace=namespace, selector=selector),
    )
    pump.start()
    return pump


def set_pod_condition(
    kc: KubeClient, *, namespace: str, name: str, condition_type: str, status: bool, reason: str, message: str
) -> dict[str, Any]:
    """Set one condition in the pod's status (merged by type; the others are kept); the updated pod."""
    condition = {
        "type": condition_type,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": None,
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return kc.request(
        method="PATCH",
        path=f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        what=describe("Pod", namespace, name) + " status",
        body={"status": {"conditions": [condition]}},
        content_type="application/strategic-merge-patch+json",
    )
