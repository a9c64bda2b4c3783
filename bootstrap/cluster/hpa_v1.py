"""autoscaling/v1 HorizontalPodAutoscalers: the stored autoscaling/v2 objects, converted as Kubernetes converts.

kube-apiserver serves autoscaling v2 (preferred) and v1 over one storage; this cluster stores v2
(resources.HORIZONTALPODAUTOSCALERS) and converts at the edge of `/apis/autoscaling/v1/...`, with
pkg/apis/autoscaling/v1/conversion.go's rules:

- v2 → v1: `spec.targetCPUUtilizationPercentage` is the first Resource metric on cpu with an
  averageUtilization target; every other metric goes, in v1 MetricSpec form, into the annotation
  `autoscaling.alpha.kubernetes.io/metrics`; `spec.behavior` into `.../behavior`; status `currentMetrics`
  into `.../current-metrics` (and the cpu utilization into `status.currentCPUUtilizationPercentage`);
  `status.conditions` into `.../conditions`. Pre-existing round-trip annotations are dropped first.
- v1 → v2: the cpu target becomes a Resource metric; the annotations' metrics, behavior, current metrics
  and conditions come back (a v1 client that round-trips the annotations loses nothing); no metric at all
  is the implicit 80 % cpu utilization; the round-trip annotations are not stored.
- Verbs: get, list (label/field selectors, paging, tables), create, update, patch (JSON, merge, strategic
  merge on the v1 form), delete and the status subresource (get, update, patch). Not served for v1: watch
  and server-side apply (415); v2 serves them.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bootstrap.cluster import errors, patch, schema
from bootstrap.cluster.resources import HORIZONTALPODAUTOSCALERS, ResourceType

if TYPE_CHECKING:
    from bootstrap.cluster.api import Api

Obj = dict[str, Any]

V1 = ResourceType(
    "autoscaling",
    "v1",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    True,
    ("hpa",),
    has_status=True,
    subresources=("status",),
)
PREFIX = "/apis/autoscaling/v1"
METRICS = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
ROUND_TRIP = (METRICS, CURRENT_METRICS, BEHAVIOR, CONDITIONS)
DEFAULT_CPU_UTILIZATION = 80


def _is_cpu_utilization(metric: Obj) -> bool:
    resource = metric.get("resource") or {}
    return (
        metric.get("type") == "Resource"
        and resource.get("name") == "cpu"
        and (resource.get("target") or {}).get("averageUtilization") is not None
    )


def _drop_none(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if v is not None}


# ----- metric specs and statuses: v2 <-> v1 (the v2beta1-shaped types autoscaling/v1 keeps for annotations) -----


def _spec_to_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind == "Resource" or kind == "ContainerResource":
        key = "resource" if kind == "Resource" else "containerResource"
        src = metric.get(key) or {}
        target = src.get("target") or {}
        out[key] = _drop_none(
            {
                "name": src.get("name"),
                "container": src.get("container"),
                "targetAverageUtilization": target.get("averageUtilization"),
                "targetAverageValue": target.get("averageValue"),
            }
        )
    elif kind == "Pods":
        src = metric.get("pods") or {}
        ident = src.get("metric") or {}
        out["pods"] = _drop_none(
            {
                "metricName": ident.get("name"),
                "targetAverageValue": (src.get("target") or {}).get("averageValue"),
                "selector": ident.get("selector"),
            }
        )
    elif kind == "Object":
        src = metric.get("object") or {}
        ident, target = src.get("metric") or {}, src.get("target") or {}
        out["object"] = _drop_none(
            {
                "target": src.get("describedObject"),
                "metricName": ident.get("name"),
                "targetValue": target.get("value"),
                "selector": ident.get("selector"),
                "averageValue": target.get("averageValue"),
            }
        )
    elif kind == "External":
        src = metric.get("external") or {}
        ident, target = src.get("metric") or {}, src.get("target") or {}
        out["external"] = _drop_none(
            {
                "metricName": ident.get("name"),
                "metricSelector": ident.get("selector"),
                "targetValue": target.get("value"),
                "targetAverageValue": target.get("averageValue"),
            }
        )
    return out


def _target(*, utilization: Any = None, value: Any = None, average: Any = None) -> Obj:
    if utilization is not None:
        return {"type": "Utilization", "averageUtilization": utilization}
    if value is not None:
        return _drop_none({"type": "Value", "value": value, "averageValue": average})
    return _drop_none({"type": "AverageValue", "averageValue": average})


def _spec_from_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        src = metric.get(key) or {}
        out[key] = _drop_none(
            {
                "name": src.get("name"),
                "container": src.get("container"),
                "target": _target(utilization=src.get("targetAverageUtilization"), average=src.get("targetAverageValue")),
            }
        )
    elif kind == "Pods":
        src = metric.get("pods") or {}
        out["pods"] = {
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
            "target": _target(average=src.get("targetAverageValue")),
        }
    elif kind == "Object":
        src = metric.get("object") or {}
        out["object"] = _drop_none(
            {
                "describedObject": src.get("target"),
                "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                "target": _target(value=src.get("targetValue"), average=src.get("averageValue")),
            }
        )
    elif kind == "External":
        src = metric.get("external") or {}
        out["external"] = {
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("metricSelector")}),
            "target": _target(value=src.get("targetValue"), average=src.get("targetAverageValue")),
        }
    return out


def _status_to_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        src = metric.get(key) or {}
        current = src.get("current") or {}
        out[key] = _drop_none(
            {
                "name": src.get("name"),
                "container": src.get("container"),
                "currentAverageUtilization": current.get("averageUtilization"),
                "currentAverageValue": current.get("averageValue"),
            }
        )
    elif kind == "Pods":
        src = metric.get("pods") or {}
        ident = src.get("metric") or {}
        out["pods"] = _drop_none(
            {
                "metricName": ident.get("name"),
                "currentAverageValue": (src.get("current") or {}).get("averageValue"),
                "selector": ident.get("selector"),
            }
        )
    elif kind == "Object":
        src = metric.get("object") or {}
        ident, current = src.get("metric") or {}, src.get("current") or {}
        out["object"] = _drop_none(
            {
                "target": src.get("describedObject"),
                "metricName": ident.get("name"),
                "currentValue": current.get("value"),
                "selector": ident.get("selector"),
                "averageValue": current.get("averageValue"),
            }
        )
    elif kind == "External":
        src = metric.get("external") or {}
        ident, current = src.get("metric") or {}, src.get("current") or {}
        out["external"] = _drop_none(
            {
                "metricName": ident.get("name"),
                "metricSelector": ident.get("selector"),
                "currentValue": current.get("value"),
                "currentAverageValue": current.get("averageValue"),
            }
        )
    return out


def _status_from_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        src = metric.get(key) or {}
        current = _drop_none(
            {"averageUtilization": src.get("currentAverageUtilization"), "averageValue": src.get("currentAverageValue")}
        )
        out[key] = _drop_none({"name": src.get("name"), "container": src.get("container"), "current": current})
    elif kind == "Pods":
        src = metric.get("pods") or {}
        out["pods"] = {
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
            "current": _drop_none({"averageValue": src.get("currentAverageValue")}),
        }
    elif kind == "Object":
        src = metric.get("object") or {}
        out["object"] = _drop_none(
            {
                "describedObject": src.get("target"),
                "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                "current": _drop_none({"value": src.get("currentValue"), "averageValue": src.get("averageValue")}),
            }
        )
    elif kind == "External":
        src = metric.get("external") or {}
        out["external"] = {
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("metricSelector")}),
            "current": _drop_none({"value": src.get("currentValue"), "averageValue": src.get("currentAverageValue")}),
        }
    return out


# ----- objects -----


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def to_v1(obj: Obj) -> Obj:
    """Convert_autoscaling_HorizontalPodAutoscaler_To_v1_HorizontalPodAutoscaler (from the stored v2 object)."""
    meta = copy.deepcopy(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in ROUND_TRIP}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    metrics = spec.get("metrics") or []
    out_spec: Obj = {"scaleTargetRef": spec.get("scaleTargetRef") or {}}
    if spec.get("minReplicas") is not None:
        out_spec["minReplicas"] = spec["minReplicas"]
    out_spec["maxReplicas"] = spec.get("maxReplicas", 0)
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    if cpu is not None:
        out_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    others = [_spec_to_v1(m) for m in metrics if not _is_cpu_utilization(m)]
    if others:
        annotations[METRICS] = _json_text(others)
    current = status.get("currentMetrics") or []
    if current:
        annotations[CURRENT_METRICS] = _json_text([_status_to_v1(m) for m in current])
    if spec.get("behavior") is not None:
        annotations[BEHAVIOR] = _json_text(spec["behavior"])
    if status.get("conditions"):
        annotations[CONDITIONS] = _json_text(status["conditions"])
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime") if status.get(k) is not None}
    out_status["currentReplicas"] = status.get("currentReplicas", 0)  # v1: int32 without omitempty
    out_status["desiredReplicas"] = status.get("desiredReplicas", 0)
    for m in current:
        resource = m.get("resource") or {}
        if m.get("type") == "Resource" and resource.get("name") == "cpu":
            utilization = (resource.get("current") or {}).get("averageUtilization")
            if utilization is not None:
                out_status["currentCPUUtilizationPercentage"] = utilization
    return {"kind": V1.kind, "apiVersion": V1.api_version, "metadata": meta, "spec": out_spec, "status": out_status}


def _annotation(annotations: dict[str, Any], key: str) -> Any:
    try:
        return json.loads(str(annotations[key])) if key in annotations else None
    except ValueError:
        return None  # as Kubernetes: an unreadable round-trip annotation is ignored


def from_v1(obj: Obj) -> Obj:
    """Convert_v1_HorizontalPodAutoscaler_To_autoscaling_HorizontalPodAutoscaler (into the stored v2 form)."""
    meta = copy.deepcopy(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    metrics: list[Obj] = []
    others = _annotation(annotations, METRICS)
    if isinstance(others, list):
        metrics += [_spec_from_v1(m) for m in others if isinstance(m, dict)]
    if spec.get("targetCPUUtilizationPercentage") is not None:
        target = {"type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": target}})
    if not metrics:
        target = {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    out_spec: Obj = {"scaleTargetRef": spec.get("scaleTargetRef")}
    for key in ("minReplicas", "maxReplicas"):
        if spec.get(key) is not None:
            out_spec[key] = spec[key]
    out_spec["metrics"] = metrics
    behavior = _annotation(annotations, BEHAVIOR)
    if isinstance(behavior, dict) and behavior:
        out_spec["behavior"] = behavior
    out_status: Obj = {
        k: status[k]
        for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
        if status.get(k) is not None
    }
    current = _annotation(annotations, CURRENT_METRICS)
    if isinstance(current, list):
        out_status["currentMetrics"] = [_status_from_v1(m) for m in current if isinstance(m, dict)]
    conditions = _annotation(annotations, CONDITIONS)
    if isinstance(conditions, list):
        out_status["conditions"] = conditions
    for key in ROUND_TRIP:
        annotations.pop(key, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out: Obj = {"apiVersion": HORIZONTALPODAUTOSCALERS.api_version, "kind": V1.kind, "metadata": meta, "spec": out_spec}
    if out_status:
        out["status"] = out_status
    return out


# ----- HTTP -----


def _response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json")
    for warning in warnings or []:
        resp.headers.add("Warning", f'299 - "{warning}"')
    return resp


class HpaV1:
    """The `/apis/autoscaling/v1/...` handler, over the API's own store, defaulting and validation."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _target(self, request: web.Request) -> tuple[str | None, str | None, str | None]:
        parts = [p for p in request.path.removeprefix(PREFIX).split("/") if p]
        namespace = None
        if parts[:1] == ["watch"]:
            raise errors.ApiError(405, "MethodNotAllowed", "watch is served by autoscaling/v2 here, not autoscaling/v1")
        if parts[:1] == ["namespaces"] and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        if not parts or parts[0] != V1.plural or len(parts) > 3 or (len(parts) == 3 and parts[2] != "status"):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[1] if len(parts) >= 2 else None
        if name is not None and namespace is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return namespace, name, parts[2] if len(parts) == 3 else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from bootstrap.cluster import tables
        from bootstrap.cluster.api import Target

        namespace, name, sub = self._target(request)
        method = request.method
        store = self.api.store
        if name is None:
            if method == "GET" and request.query.get("watch", "").lower() in ("1", "true"):
                raise errors.ApiError(405, "MethodNotAllowed", "watch is served by autoscaling/v2 here, not autoscaling/v1")
            if method == "GET":
                listed = self.api.list_objects(request, Target(HORIZONTALPODAUTOSCALERS, namespace, None, None, False))
                if tables.wants_table(request.headers.get("Accept", "")):
                    return listed
                assert isinstance(listed, web.Response) and listed.body is not None
                body = json.loads(bytes(listed.body))  # type: ignore[arg-type]
                body.update(kind=V1.list_kind, apiVersion=V1.api_version, items=[to_v1(i) for i in body["items"]])
                return _response(body)
            if method == "POST" and namespace is not None:
                return self._create(request, namespace, await self.api._body(request))
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "GET":
            obj = store.get(HORIZONTALPODAUTOSCALERS, namespace, name)
            if sub is None and tables.wants_table(request.headers.get("Accept", "")):
                include = tables.include_object(request.query.get("includeObject"))
                rv = obj["metadata"]["resourceVersion"]
                return _response(tables.table(HORIZONTALPODAUTOSCALERS, [obj], rv, include=include))
            return _response(to_v1(obj))
        if method == "DELETE" and sub is None:
            return await self.api.delete(request, Target(HORIZONTALPODAUTOSCALERS, namespace, name, None, False))
        if method not in ("PUT", "PATCH"):
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        old = store.get(HORIZONTALPODAUTOSCALERS, namespace, name)
        body = await self.api._body(request)
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            current = to_v1(old)
            if content_type == patch.MERGE:
                body = patch.merge_patch(current, body)
            elif content_type == patch.JSON:
                body = patch.json_patch(current, body)
            elif content_type == patch.STRATEGIC:
                body = patch.strategic_merge_patch(current, body, schema.root(HORIZONTALPODAUTOSCALERS))
            else:
                raise errors.ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{patch.JSON}, {patch.MERGE}, {patch.STRATEGIC} (server-side apply: use autoscaling/v2)",
                )
            if isinstance(body, dict) and not (body.get("metadata") or {}).get("resourceVersion"):
                body.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._update(request, namespace, name, sub, old, body)

    def _checked(self, body: Any, namespace: str, name: str | None) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != V1.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({V1.kind})")
        if api_version and api_version != V1.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({V1.api_version})"
            )
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if name is not None and meta.get("name") and meta["name"] != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        meta["namespace"] = namespace
        if name is not None:
            meta["name"] = name
        return body

    def _create(self, request: web.Request, namespace: str, body: Any) -> web.Response:
        obj = from_v1(self._checked(body, namespace, None))
        obj["metadata"].pop("managedFields", None)
        obj.pop("status", None)
        self.api._prepare(HORIZONTALPODAUTOSCALERS, obj, None)
        created = self.api.store.create(HORIZONTALPODAUTOSCALERS, obj, dry_run=self.api._dry_run(request))
        return _response(to_v1(created), 201)

    def _update(
        self, request: web.Request, namespace: str | None, name: str, sub: str | None, old: Obj, body: Any
    ) -> web.Response:
        assert namespace is not None
        obj = from_v1(self._checked(body, namespace, name))
        store, dry_run = self.api.store, self.api._dry_run(request)
        if sub == "status":
            merged = copy.deepcopy(old)
            merged["status"] = obj.get("status") or {}
            if obj["metadata"].get("resourceVersion"):
                merged["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            updated = store.update(HORIZONTALPODAUTOSCALERS, merged, subresource="status", dry_run=dry_run)
            return _response(to_v1(updated))
        obj["metadata"].pop("managedFields", None)
        if old.get("status") is not None:
            obj["status"] = old["status"]
        self.api._prepare(HORIZONTALPODAUTOSCALERS, obj, old)
        updated = store.update(HORIZONTALPODAUTOSCALERS, obj, dry_run=dry_run)
        return _response(to_v1(updated))


def register(app: web.Application, api: Api) -> None:
    """The autoscaling/v1 routes, ahead of the API's catch-all (its discovery document: discovery.py)."""
    app.router.add_route("*", PREFIX + "/{tail:.+}", HpaV1(api).handle)
