"""Defaulting, as the API server does it before validation and storage.

Only the defaults a client of this cluster can observe matter here: the ones
`kubectl describe` prints, the ones the controllers and kubelet rely on
(Deployment strategy and limits, pod restart policy, grace period, image pull
policy, port protocols) and Secret `stringData` folding into `data`. Defaulting
is idempotent, so applying the same configuration twice stays a no-op.
"""

from __future__ import annotations

import base64
from typing import Any

from bootstrap.cluster.resources import (
    CRONJOBS,
    DEPLOYMENTS,
    HORIZONTALPODAUTOSCALERS,
    JOBS,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
    ResourceType,
)

Obj = dict[str, Any]


def _container(c: Obj) -> None:
    image = str(c.get("image") or "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            if isinstance(probe.get("httpGet"), dict):
                probe["httpGet"].setdefault("path", "/")
                probe["httpGet"].setdefault("scheme", "HTTP")


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def _workload(spec: Obj, *, deployment: bool) -> None:
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10) if deployment else None
    if deployment:
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxSurge", "25%")
                    ru.setdefault("maxUnavailable", "25%")
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def _job(spec: Obj) -> None:
    """batch/v1 SetDefaults_Job (the selector and its labels are generated on create, registry.py)."""
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    if "podFailurePolicy" not in spec:
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def _cronjob(spec: Obj) -> None:
    """batch/v1 SetDefaults_CronJob; the job template's pod spec gets the pod defaults (SetObjectDefaults_CronJob),
    its Job spec none (SetDefaults_Job applies to Jobs only)."""
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") if isinstance(spec.get("jobTemplate"), dict) else None
    template = job_spec.get("template") if isinstance(job_spec, dict) else None
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def apply_defaults(res: ResourceType, obj: Obj) -> None:
    """Fill in the defaults for `obj` in place."""
    spec = obj.get("spec")
    if res in (DEPLOYMENTS, REPLICASETS) and isinstance(spec, dict):
        _workload(spec, deployment=res is DEPLOYMENTS)
    elif res is PODS and isinstance(spec, dict):
        pod_spec(spec)
    elif res is JOBS and isinstance(spec, dict):
        _job(spec)
    elif res is CRONJOBS and isinstance(spec, dict):
        _cronjob(spec)
    elif res is SERVICES and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
    elif res is HORIZONTALPODAUTOSCALERS and isinstance(spec, dict):
        # autoscaling/v2 SetDefaults_HorizontalPodAutoscaler (behavior is defaulted only when given: not done here)
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ]
    elif res is SECRETS:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
