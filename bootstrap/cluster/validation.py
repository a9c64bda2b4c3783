"""Validation of objects before they are stored, with Kubernetes' field paths and messages.

A failure raises 422 Invalid with one cause per problem (all problems at once,
as the API server reports them), so nothing half-valid is ever stored. Only
the rules a user of this cluster can trip over are checked: names, labels,
workload selectors and templates, containers, ports and resource quantities.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from bootstrap.cluster import cron, errors
from bootstrap.cluster.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CONFIGMAPS,
    CRONJOBS,
    DEPLOYMENTS,
    HORIZONTALPODAUTOSCALERS,
    JOBS,
    NAMESPACES,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICASETS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICES,
    ResourceType,
)
from bootstrap.cluster.selectors import match_label_dict

Obj = dict[str, Any]
Causes = list[tuple[str, str]]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_LABEL_NAMES = (NAMESPACES, SERVICES)
_ALNUM_ENDS = "and must start and end with an alphanumeric character"
_NAME_PART = f"name part must consist of alphanumeric characters, '-', '_' or '.', {_ALNUM_ENDS}"
_LABEL_VALUE_MSG = f"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', {_ALNUM_ENDS}"
_QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


def _dns_label(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL.match(value):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return None


def _dns_subdomain(value: str) -> str | None:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _SUBDOMAIN.match(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def _name(res: ResourceType, name: str) -> str | None:
    if res in (ROLES, ROLEBINDINGS, CLUSTERROLES, CLUSTERROLEBINDINGS):
        if name in (".", "..") or "/" in name or "%" in name:
            return "may not contain '/' or '%' and may not be '.' or '..'"
        return None
    return _dns_label(name) if res in _LABEL_NAMES else _dns_subdomain(name)


def _qualified_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and _dns_subdomain(prefix):
        return "prefix part must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _QUALIFIED.match(name):
        return _NAME_PART
    return None


_QUALIFIED_REGEX_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def _qualified_name(value: str) -> list[str]:
    """apimachinery's IsQualifiedName: an optional DNS-subdomain prefix and '/', then a name part of at most 63."""
    parts = value.split("/")
    problems: list[str] = []
    if len(parts) > 2:
        return [
            f"a qualified name {_QUALIFIED_REGEX_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problem = _dns_subdomain(prefix)
            if problem:
                problems.append(f"prefix part {problem}")
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if not _QUALIFIED.match(name):
        problems.append(f"name part {_QUALIFIED_REGEX_MSG}")
    return problems


def _validate_qualified_name(value: Any, path: str, causes: Causes) -> None:
    for problem in _qualified_name(str(value or "")):
        causes.append((path, f'Invalid value: "{value or ""}": {problem}'))


def _labels(labels: Any, path: str, causes: Causes) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.append((path, "Invalid value: must be a map of strings"))
        return
    for key, value in labels.items():
        problem = _qualified_key(str(key))
        if problem:
            causes.append((path, f'Invalid value: "{key}": {problem}'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    f"{path}",
                    f'Invalid value: "{value}": {_LABEL_VALUE_MSG}',
                )
            )


def _port(value: Any, path: str, causes: Causes) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        causes.append((path, f"Invalid value: {value!r}: must be between 1 and 65535, inclusive"))


def _resources(resources: Any, path: str, causes: Causes) -> None:
    if not isinstance(resources, dict):
        return
    for section in ("limits", "requests"):
        for name, quantity in (resources.get(section) or {}).items():
            if not _QUANTITY.match(str(quantity)):
                causes.append(
                    (
                        f"{path}.{section}[{name}]",
                        f'Invalid value: "{quantity}": {_QUANTITY_MSG}',
                    )
                )


def _containers(spec: Obj, path: str, causes: Causes) -> None:
    containers = spec.get("containers")
    if not containers:
        causes.append((f"{path}.containers", "Required value"))
        return
    if not isinstance(containers, list):
        causes.append((f"{path}.containers", "Invalid value: must be a list"))
        return
    for key in ("initContainers", "containers"):
        seen: set[str] = set()
        for i, c in enumerate(spec.get(key) or []):
            here = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                causes.append((here, "Invalid value: must be an object"))
                continue
            name = c.get("name")
            if not name:
                causes.append((f"{here}.name", "Required value"))
            else:
                problem = _dns_label(str(name))
                if problem:
                    causes.append((f"{here}.name", f'Invalid value: "{name}": {problem}'))
                if name in seen:
                    causes.append((f"{here}.name", f'Duplicate value: "{name}"'))
                seen.add(str(name))
            if not c.get("image"):
                causes.append((f"{here}.image", "Required value"))
            for j, port in enumerate(c.get("ports") or []):
                if isinstance(port, dict):
                    _port(port.get("containerPort"), f"{here}.ports[{j}].containerPort", causes)
            for j, env in enumerate(c.get("env") or []):
                if isinstance(env, dict) and not env.get("name"):
                    causes.append((f"{here}.env[{j}].name", "Required value"))
            _resources(c.get("resources"), f"{here}.resources", causes)


def _pod_spec(spec: Obj, path: str, causes: Causes) -> None:
    _containers(spec, path, causes)
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value:
            problem = _dns_label(str(value))
            if problem:
                causes.append((f"{path}.{key}", f'Invalid value: "{value}": {problem}'))
    gates = spec.get("readinessGates")
    if isinstance(gates, list):
        for i, gate in enumerate(gates):
            condition_type = gate.get("conditionType") if isinstance(gate, dict) else None
            _validate_qualified_name(condition_type, f"{path}.readinessGates[{i}].conditionType", causes)


def _pod_template(spec: Obj, causes: Causes) -> None:
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("spec.selector", "Required value"))
        selector = None
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    template = spec.get("template")
    if not isinstance(template, dict):
        causes.append(("spec.template", "Required value"))
        return
    labels = (template.get("metadata") or {}).get("labels") or {}
    _labels(labels, "spec.template.metadata.labels", causes)
    if selector is not None and not match_label_dict(selector, labels):
        causes.append(("spec.template.metadata.labels", f"Invalid value: {labels}: `selector` does not match template `labels`"))
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, dict):
        causes.append(("spec.template.spec.containers", "Required value"))
        return
    _pod_spec(pod_spec, "spec.template.spec", causes)
    strategy = spec.get("strategy") or {}
    ru = strategy.get("rollingUpdate") if isinstance(strategy, dict) else None
    if isinstance(ru, dict) and str(ru.get("maxSurge")) in ("0", "0%") and str(ru.get("maxUnavailable")) in ("0", "0%"):
        causes.append(("spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: 0: may not be 0 when `maxSurge` is 0"))


def _job(spec: Obj, old_spec: Obj | None, causes: Causes, path: str = "spec") -> None:
    """ValidateJobSpec: counts, deadline, restart policy; selector and template immutable on update."""
    for key, minimum in (("parallelism", 0), ("completions", 0), ("backoffLimit", 0), ("ttlSecondsAfterFinished", 0)):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            causes.append((f"{path}.{key}", f"Invalid value: {value!r}: must be greater than or equal to 0"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or isinstance(deadline, bool) or deadline <= 0):
        causes.append((f"{path}.activeDeadlineSeconds", f"Invalid value: {deadline!r}: must be greater than 0"))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        causes.append((f"{path}.completionMode", f'Unsupported value: "{mode}": supported values: "NonIndexed", "Indexed"'))
    template = spec.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        causes.append((f"{path}.template.spec.containers", "Required value"))
        return
    labels = (template.get("metadata") or {}).get("labels") or {}
    _labels(labels, f"{path}.template.metadata.labels", causes)
    if spec.get("manualSelector"):
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append((f"{path}.selector", "Required value"))
        elif not match_label_dict(selector, labels):
            causes.append(
                (f"{path}.template.metadata.labels", f"Invalid value: {labels}: `selector` does not match template `labels`")
            )
    pod = template["spec"]
    _pod_spec(pod, f"{path}.template.spec", causes)
    policy = pod.get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(
            (f"{path}.template.spec.restartPolicy", f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"')
        )
    if old_spec is not None:
        if old_spec.get("selector") != spec.get("selector"):
            causes.append((f"{path}.selector", f"Invalid value: {spec.get('selector')}: field is immutable"))
        if old_spec.get("template") != template and not old_spec.get("suspend"):
            causes.append((f"{path}.template", "Invalid value: field is immutable"))
        if old_spec.get("completions") != spec.get("completions"):
            causes.append((f"{path}.completions", f"Invalid value: {spec.get('completions')!r}: field is immutable"))


_TIME_ZONE_PART = re.compile(r"^[A-Za-z\.\-_0-9+]{1,14}$")  # validTimeZoneCharacters


def _cronjob(name: str, spec: Obj, old_spec: Obj | None, causes: Causes) -> None:
    """ValidateCronJobCreate/Update (pkg/apis/batch/validation): name length, schedule (robfig ParseStandard),
    timeZone, startingDeadlineSeconds, concurrencyPolicy, history limits, and the job template as a Job spec."""
    if len(name) > 52:
        causes.append(("metadata.name", f'Invalid value: "{name}": must be no more than 52 characters'))
    schedule = spec.get("schedule")
    if not schedule:
        causes.append(("spec.schedule", "Required value"))
    else:
        schedule = str(schedule)
        try:
            cron.parse_standard(schedule)
        except cron.CronError as err:
            causes.append(("spec.schedule", f'Invalid value: "{schedule}": {err}'))
        allow_tz = old_spec is not None and "TZ" in str(old_spec.get("schedule") or "")
        if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
            causes.append(
                ("spec.schedule", f'Invalid value: "{schedule}": cannot use both timeZone field and TZ or CRON_TZ in schedule')
            )
        elif not allow_tz and "TZ" in schedule:
            causes.append(
                (
                    "spec.schedule",
                    f'Invalid value: "{schedule}": cannot use TZ or CRON_TZ in schedule, use timeZone field instead',
                )
            )
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and deadline < 0:
        causes.append(("spec.startingDeadlineSeconds", f"Invalid value: {deadline}: must be greater than or equal to 0"))
    zone = spec.get("timeZone")
    if zone is not None and (old_spec is None or old_spec.get("timeZone") != zone):
        zone = str(zone)
        if not zone:
            causes.append(("spec.timeZone", 'Invalid value: "": timeZone must be nil or non-empty string'))
        elif any(p in (".", "..") or p.startswith("-") or not _TIME_ZONE_PART.match(p) for p in zone.split("/")):
            causes.append(("spec.timeZone", f'Invalid value: "{zone}": unknown time zone {zone}'))
        else:
            if zone.lower() == "local":
                causes.append(
                    (
                        "spec.timeZone",
                        f'Invalid value: "{zone}": timeZone must be an explicit time zone as defined in '
                        "https://www.iana.org/time-zones",
                    )
                )
            try:
                cron.load_zone(zone)
            except cron.CronError as err:
                causes.append(("spec.timeZone", f'Invalid value: "{zone}": {err}'))
    policy = spec.get("concurrencyPolicy")
    if not policy:
        causes.append(("spec.concurrencyPolicy", "Required value"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        causes.append(
            ("spec.concurrencyPolicy", f'Unsupported value: "{policy}": supported values: "Allow", "Forbid", "Replace"')
        )
    template = spec.get("jobTemplate")
    job_spec = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(template, dict) or not isinstance(job_spec, dict):
        causes.append(("spec.jobTemplate.spec.template.spec.containers", "Required value"))
    else:
        _labels((template.get("metadata") or {}).get("labels"), "spec.jobTemplate.metadata.labels", causes)
        if job_spec.get("manualSelector"):
            causes.append(("spec.jobTemplate.spec.manualSelector", 'Unsupported value: true: supported values: "nil", "false"'))
        _job(job_spec, None, causes, "spec.jobTemplate.spec")
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        value = spec.get(key)
        if isinstance(value, int) and value < 0:
            causes.append((f"spec.{key}", f"Invalid value: {value}: must be greater than or equal to 0"))


_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"


def _go_int_or_string(value: Any) -> str:
    """How kube's field errors print a *intstr.IntOrString (`%#v` of the struct)."""
    if isinstance(value, str):
        return f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:"{value}"}}'
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _positive_int_or_percent(value: Any, path: str, causes: Causes) -> None:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, str):
        if not _PERCENT.match(value):
            causes.append((path, f'Invalid value: "{value}": {_PERCENT_MSG}'))
        elif int(value[:-1]) > 100:
            causes.append((path, f'Invalid value: "{value}": must not be greater than 100%'))
    elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
        causes.append((path, f"Invalid value: {value}: must be greater than or equal to 0"))


def _pdb(spec: Obj, causes: Causes) -> None:
    """ValidatePodDisruptionBudgetSpec (policy/v1)."""
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        causes.append(
            (
                "spec.minAvailable",
                f"Invalid value: {_go_int_or_string(min_available)}: minAvailable and maxUnavailable cannot be both set",
            )
        )
    if min_available is not None:
        _positive_int_or_percent(min_available, "spec.minAvailable", causes)
    if max_unavailable is not None:
        _positive_int_or_percent(max_unavailable, "spec.maxUnavailable", causes)
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        causes.append(
            (
                "spec.unhealthyPodEvictionPolicy",
                f'Unsupported value: "{policy}": supported values: "AlwaysAllow", "IfHealthyBudget"',
            )
        )


def _hpa(spec: Obj, causes: Causes) -> None:
    """ValidateHorizontalPodAutoscalerSpec (autoscaling/v2; HPAScaleToZero off)."""
    min_replicas, max_replicas = spec.get("minReplicas"), spec.get("maxReplicas")
    if isinstance(min_replicas, int) and min_replicas < 1:
        causes.append(("spec.minReplicas", f"Invalid value: {min_replicas}: must be greater than or equal to 1"))
    if not isinstance(max_replicas, int) or max_replicas < 1:
        causes.append(("spec.maxReplicas", f"Invalid value: {max_replicas or 0}: must be greater than 0"))
    elif isinstance(min_replicas, int) and min_replicas > max_replicas:
        causes.append(("spec.maxReplicas", f"Invalid value: {max_replicas}: must be greater than or equal to `minReplicas`"))
    ref = spec.get("scaleTargetRef")
    ref = ref if isinstance(ref, dict) else {}
    for key in ("kind", "name"):
        value = ref.get(key)
        if not value:
            causes.append((f"spec.scaleTargetRef.{key}", "Required value"))
        elif "/" in str(value) or "%" in str(value) or str(value) in (".", ".."):
            causes.append((f"spec.scaleTargetRef.{key}", f"Invalid value: \"{value}\": may not contain '/' or '%'"))
    for i, metric in enumerate(spec.get("metrics") or []):
        kind = metric.get("type") if isinstance(metric, dict) else None
        allowed = ("ContainerResource", "External", "Object", "Pods", "Resource")
        if not kind:
            causes.append((f"spec.metrics[{i}].type", "Required value: must specify a metric source type"))
        elif kind not in allowed:
            causes.append(
                (
                    f"spec.metrics[{i}].type",
                    f'Unsupported value: "{kind}": supported values: ' + ", ".join(f'"{a}"' for a in allowed),
                )
            )


def _go_strings(values: Any) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values or []) + "}"


def _policy_rule(rule: Obj, path: str, namespaced: bool, causes: Causes) -> None:
    """rbac's ValidatePolicyRule."""
    if not rule.get("verbs"):
        causes.append((f"{path}.verbs", "Required value: verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs")
    if urls:
        if namespaced:
            causes.append(
                (
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {_go_strings(urls)}: namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(
                (
                    f"{path}.nonResourceURLs",
                    f"Invalid value: {_go_strings(urls)}: rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return
    if not rule.get("apiGroups"):
        causes.append((f"{path}.apiGroups", "Required value: resource rules must supply at least one api group"))
    if not rule.get("resources"):
        causes.append((f"{path}.resources", "Required value: resource rules must supply at least one resource"))


def validate(res: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid listing every problem of `obj` (`old` is the stored object on update)."""
    causes: Causes = []
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    if name:
        problem = _name(res, name)
        if problem:
            causes.append(("metadata.name", f'Invalid value: "{name}": {problem}'))
    _labels(meta.get("labels"), "metadata.labels", causes)
    spec = obj.get("spec")
    if res in (DEPLOYMENTS, REPLICASETS):
        if not isinstance(spec, dict):
            causes.append(("spec.selector", "Required value"))
            causes.append(("spec.template.spec.containers", "Required value"))
        else:
            _pod_template(spec, causes)
            if old is not None and old.get("spec", {}).get("selector") != spec.get("selector"):
                causes.append(("spec.selector", f"Invalid value: {spec.get('selector')}: field is immutable"))
    elif res is JOBS:
        if not isinstance(spec, dict):
            causes.append(("spec.template.spec.containers", "Required value"))
        else:
            _job(spec, (old or {}).get("spec") if old is not None else None, causes)
    elif res is CRONJOBS:
        old_spec = (old or {}).get("spec") if old is not None else None
        _cronjob(name, spec if isinstance(spec, dict) else {}, old_spec if isinstance(old_spec, dict) else None, causes)
    elif res is PODS:
        if not isinstance(spec, dict):
            causes.append(("spec.containers", "Required value"))
        else:
            _pod_spec(spec, "spec", causes)
    elif res is SERVICES and isinstance(spec, dict):
        for i, port in enumerate(spec.get("ports") or []):
            if isinstance(port, dict):
                _port(port.get("port"), f"spec.ports[{i}].port", causes)
    elif res in (CONFIGMAPS, SECRETS):
        for section in ("data", "binaryData", "stringData"):
            for key, value in (obj.get(section) or {}).items():
                if not _CONFIG_KEY.match(str(key)) or len(str(key)) > 253:
                    causes.append(
                        (
                            f"{section}[{key}]",
                            f'Invalid value: "{key}": {_CONFIG_KEY_MSG}',
                        )
                    )
                if res is SECRETS and section == "data":
                    try:
                        base64.b64decode(str(value), validate=True)
                    except (binascii.Error, ValueError):
                        causes.append((f"data[{key}]", "Invalid value: <secret contents redacted>: illegal base64 data"))
    elif res is PODDISRUPTIONBUDGETS:
        _pdb(spec if isinstance(spec, dict) else {}, causes)
    elif res is HORIZONTALPODAUTOSCALERS:
        _hpa(spec if isinstance(spec, dict) else {}, causes)
    elif res in (ROLES, CLUSTERROLES):
        rules = obj.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                _policy_rule(rule, f"rules[{i}]", res is ROLES, causes)
    elif res in (ROLEBINDINGS, CLUSTERROLEBINDINGS):
        role_ref = obj.get("roleRef")
        if not isinstance(role_ref, dict) or not role_ref.get("name") or not role_ref.get("kind"):
            causes.append(("roleRef", "Required value"))
        elif old is not None and old.get("roleRef") != role_ref:
            causes.append(("roleRef", "Invalid value: cannot change roleRef"))
    if causes:
        raise errors.invalid(res.kind, name, causes, res.group)


_SYSTEM_POD_CONDITIONS = frozenset({"PodScheduled", "Ready", "Initialized"})


def validate_status(res: ResourceType, obj: Obj) -> None:
    """A status update's checks (ValidatePodStatusUpdate's validatePodConditions): a pod condition type other
    than the system ones must be a qualified name."""
    causes: Causes = []
    if res is PODS:
        conditions = (obj.get("status") or {}).get("conditions")
        for i, cond in enumerate(conditions if isinstance(conditions, list) else []):
            cond_type = cond.get("type") if isinstance(cond, dict) else None
            if cond_type not in _SYSTEM_POD_CONDITIONS:
                _validate_qualified_name(cond_type, f"status.conditions[{i}].Type", causes)
    if causes:
        raise errors.invalid(res.kind, str((obj.get("metadata") or {}).get("name") or ""), causes, res.group)
