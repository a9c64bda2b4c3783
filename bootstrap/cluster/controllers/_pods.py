"""Pods a workload controller creates from its template and deletes, with the events Kubernetes records."""

from __future__ import annotations

import copy
import random

from bootstrap.cluster import registry
from bootstrap.cluster.controllers._util import owner_reference
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.events import WARNING, EventRecorder
from bootstrap.cluster.resources import PODS
from bootstrap.cluster.store import Obj, Store

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet (no vowels, no confusable digits)


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_ALPHANUMS) for _ in range(n))


def create_pod(store: Store, events: EventRecorder, owner: Obj, *, component: str, generate_name: bool = False) -> Obj | None:
    """A pod from `owner`'s `spec.template`, named `<owner>-<5 chars>` and controlled by it; None if it failed (an event says why)."""
    template = (owner.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = owner["metadata"]["name"]
    pod: Obj = {
        "metadata": {
            "labels": dict(tmeta.get("labels") or {}),
            "namespace": owner["metadata"]["namespace"],
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    if tmeta.get("annotations"):
        pod["metadata"]["annotations"] = dict(tmeta["annotations"])
    for _ in range(5):
        pod["metadata"]["name"] = f"{name}-{random_suffix()}"
        if generate_name:
            pod["metadata"]["generateName"] = f"{name}-"
        registry.admit(PODS, pod, None)  # the ServiceAccount admission's defaulting
        try:
            created = store.create(PODS, pod)
        except ApiError as err:
            if err.code == 409:
                continue
            events.record(
                owner, reason="FailedCreate", message=f"Error creating: {err.message}", component=component, type=WARNING
            )
            return None
        events.record(
            owner, reason="SuccessfulCreate", message=f"Created pod: {created['metadata']['name']}", component=component
        )
        return created
    return None


def delete_pod(store: Store, events: EventRecorder, owner: Obj, pod: Obj, *, component: str) -> None:
    """Delete `pod` (gone already is fine) and record it on `owner`."""
    try:
        store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    except ApiError as err:
        if err.code != 404:
            raise
        return
    events.record(owner, reason="SuccessfulDelete", message=f"Deleted pod: {pod['metadata']['name']}", component=component)
