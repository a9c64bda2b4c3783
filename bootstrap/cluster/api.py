"""The Kubernetes REST API over the store: an aiohttp application.

Request path, as the real API server takes it:
authentication (bearer token) → path parsing (`/api/v1/...`, `/apis/{g}/{v}/...`,
namespaced or not, `/watch/` prefix, subresources) → verb → decoding
(JSON or YAML; patches) → unknown-field check (`fieldValidation`) → defaulting →
validation → field ownership (`managedFields`) → store (or `dryRun=All`) →
JSON response, or a `Status` for any `ApiError`.

Watches are streamed as newline-delimited JSON events; each blocks on its own
queue (no polling), sends BOOKMARKs when asked, and answers a too-old
resourceVersion with an ERROR event carrying a 410 Status, which is what
client-go and the Python client expect.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import yaml
from aiohttp import web

from bootstrap.cluster import (
    apply as ssa,
    discovery,
    errors,
    openapi,
    paging,
    patch,
    protobuf,
    rbac,
    registry,
    schema,
    tables,
    tokens,
)
from bootstrap.cluster.defaults import apply_defaults
from bootstrap.cluster.resources import JOBS, NAMESPACES, PODS, ResourceType, lookup
from bootstrap.cluster.selectors import Matcher, SelectorError, parse_field_selector, parse_label_selector
from bootstrap.cluster.store import Obj, Store, WatchEvent
from bootstrap.cluster.validation import validate, validate_status

log = logging.getLogger(__name__)

BOOKMARK_INTERVAL = 5.0
DEFAULT_WATCH_TIMEOUT = 1800.0
_PUBLIC = frozenset({"/healthz", "/livez", "/readyz"})
# Served to anyone, as AKS's OIDC issuer serves them (kube: the system:service-account-issuer-discovery binding).
_OIDC_PUBLIC = frozenset({tokens.DISCOVERY_PATH, tokens.JWKS_PATH})
_JSON = "application/json"
_REVIEWS = frozenset(
    {
        ("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "v1", "selfsubjectrulesreviews"),
        ("authentication.k8s.io", "v1", "selfsubjectreviews"),
    }
)


class LogSource(Protocol):
    """What the API needs from the kubelet to serve `pods/log`."""

    def logs(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None,
        follow: bool,
        tail_lines: int | None,
        timestamps: bool,
        previous: bool,
    ) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    res: ResourceType
    namespace: str | None  # None: cluster-scoped, or all namespaces for a namespaced collection
    name: str | None
    subresource: str | None
    watch_path: bool


def _json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type=_JSON)
    for warning in warnings or []:
        resp.headers.add("Warning", f'299 - "{warning}"')
    return resp


def _status_response(err: errors.ApiError) -> web.Response:
    return _json_response(err.status(), err.code)


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid {name}: {value!r}") from None


def field_manager_from(user_agent: str) -> str:
    """Kube's default manager name: the User-Agent up to the first '/' (`kubectl`, `OpenAPI-Generator`)."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


def parse_target(path: str) -> Target | None:
    """Map a REST path to the resource it names; None when it names none (404)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        res = lookup(group, version, rest[2])
        if res is not None and res.namespaced:
            namespace, rest = rest[1], rest[2:]
    res = lookup(group, version, rest[0])
    if res is None or len(rest) > 3:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and sub not in res.subresources:
        return None
    if res.namespaced and namespace is None and name is not None:
        return None
    return Target(res, namespace, name, sub, watch_path)


class Api:
    """The handlers; one instance per application, sharing the store and the kubelet's log source."""

    def __init__(self, store: Store, *, token: str, logs: LogSource | None, issuer: tokens.TokenIssuer | None = None) -> None:
        self.store = store
        self.token = token
        self.logs = logs
        self.issuer = issuer
        self.closing = asyncio.Event()

    # ----- middleware -----

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in _PUBLIC and not (request.path in _OIDC_PUBLIC and self.issuer is not None):
            # kube-apiserver's bearer authenticator: the scheme is case-insensitive
            # (load_incluster_config() sends "bearer <token>"); the admin token or a ServiceAccount JWT (rbac.py).
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            user = None
            if scheme.lower() == "bearer":
                user = rbac.authenticate(given.strip(), admin_token=self.token, store=self.store, issuer=self.issuer)
            if user is None:
                return _status_response(errors.ApiError(401, "Unauthorized", "Unauthorized"))
            request["user"] = user
            attrs = rbac.attributes(user, request.method, request.path, request.query)
            allowed, reason = rbac.authorize(self.store, attrs)
            if not allowed:
                return _status_response(rbac.forbidden(attrs, reason))
        try:
            return await handler(request)
        except errors.ApiError as err:
            return _status_response(err)
        except web.HTTPException:
            raise
        except Exception as exc:  # the API answers a Status, never a stack trace
            log.exception("%s %s failed", request.method, request.path)
            return _status_response(errors.ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    # ----- non-resource endpoints -----

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def version(self, request: web.Request) -> web.Response:
        return _json_response(discovery.KUBE_VERSION)

    async def api_root(self, request: web.Request) -> web.Response:
        return _json_response(discovery.api_versions())

    async def apis_root(self, request: web.Request) -> web.Response:
        return _json_response(discovery.api_group_list())

    async def openapi_v2(self, request: web.Request) -> web.Response:
        if "protobuf" in request.headers.get("Accept", ""):
            return web.Response(body=openapi.v2_protobuf(), headers={"Content-Type": openapi.V2_PROTOBUF})
        return web.Response(body=openapi.v2_document(), content_type=_JSON)

    async def openapi_v3_root(self, request: web.Request) -> web.Response:
        return _json_response(openapi.v3_root())

    async def openapi_v3(self, request: web.Request) -> web.Response:
        body = openapi.v3_document(request.match_info["path"])
        if body is None:
            raise errors.ApiError(404, "NotFound", f"no OpenAPI document for {request.match_info['path']}")
        return web.Response(body=body, content_type=_JSON, headers={"Cache-Control": "public, immutable"})

    async def oidc_discovery(self, request: web.Request) -> web.Response:
        if self.issuer is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        resp = _json_response(self.issuer.discovery())
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return resp

    async def oidc_jwks(self, request: web.Request) -> web.Response:
        if self.issuer is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        body = json.dumps(self.issuer.jwks(), separators=(",", ":")).encode()
        return web.Response(
            body=body, headers={"Content-Type": tokens.JWKS_CONTENT_TYPE, "Cache-Control": "public, max-age=3600"}
        )

    async def service_account_token(self, request: web.Request, target: Target) -> web.Response:
        """POST serviceaccounts/{name}/token: a TokenRequest (tokens.py); JSON, YAML or kubectl's protobuf."""
        if request.method != "POST":
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if self.issuer is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        assert target.name is not None and target.namespace is not None
        body = await self._body(request)  # JSON, YAML or protobuf, as every create
        created = tokens.create_token_request(self.store, self.issuer, target.namespace, target.name, body)
        if self._dry_run(request):
            created["status"] = {"token": "", "expirationTimestamp": None}
        return _json_response(created, 201)

    async def self_subject_review(self, request: web.Request, plural: str) -> web.Response:
        """POST selfsubjectaccessreviews / selfsubjectreviews: answered from the caller's identity, never stored."""
        if request.method != "POST":
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        user: rbac.User = request["user"]
        if plural == "selfsubjectreviews":
            return _json_response(rbac.self_subject_review(user), 201)
        rules = plural == "selfsubjectrulesreviews"
        body = await self._body(request)  # JSON, YAML or protobuf (kubectl auth can-i [--list] sends protobuf)
        if rules:
            return _json_response(rbac.self_subject_rules_review(self.store, user, body), 201)
        return _json_response(rbac.self_subject_access_review(self.store, user, body), 201)

    # ----- resources -----

    async def resource(self, request: web.Request) -> web.StreamResponse:
        """Every `/api/...` and `/apis/...` path: discovery documents, then resource verbs."""
        parts = [p for p in request.path.split("/") if p]
        if parts[0] == "api" and len(parts) == 2:
            found = discovery.resource_list("", parts[1])
            if found is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json_response(found)
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(parts[1])
            if group is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json_response(group)
        if parts[0] == "apis" and len(parts) == 3:
            found = discovery.resource_list(parts[1], parts[2])
            if found is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json_response(found)
        if len(parts) == 4 and parts[0] == "apis" and (parts[1], parts[2], parts[3]) in _REVIEWS:
            return await self.self_subject_review(request, parts[3])
        target = parse_target(request.path)
        if target is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method
        q = request.query
        if target.name is None:
            if target.namespace is None and target.res.namespaced and method not in ("GET",):
                raise errors.ApiError(405, "MethodNotAllowed", f"{method} is not supported across all namespaces")
            if method == "GET":
                if target.watch_path or _bool(q.get("watch")):
                    return await self.watch(request, target)
                return self.list_objects(request, target)
            if method == "POST":
                return await self.create(request, target)
            if method == "DELETE":
                return await self.delete_collection(request, target)
        else:
            if target.watch_path or (method == "GET" and target.subresource is None and _bool(q.get("watch"))):
                return await self.watch(request, target)
            if target.subresource == "token":
                return await self.service_account_token(request, target)
            if target.subresource == "log" and method == "GET":
                return await self.pod_log(request, target)
            if target.subresource == "scale":
                return await self.scale(request, target)
            if method == "GET":
                obj = self.store.get(target.res, target.namespace, target.name)
                if target.subresource is None and tables.wants_table(request.headers.get("Accept", "")):
                    include = tables.include_object(q.get("includeObject"))
                    return _json_response(tables.table(target.res, [obj], obj["metadata"]["resourceVersion"], include=include))
                return _json_response(obj)
            if method == "PUT":
                return await self.replace(request, target)
            if method == "PATCH":
                return await self.patch(request, target)
            if method == "DELETE" and target.subresource is None:
                return await self.delete(request, target)
        raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # ----- reads -----

    def _matcher(self, request: web.Request) -> Matcher:
        try:
            labels = parse_label_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        return lambda obj: labels(obj) and fields(obj)

    def list_objects(self, request: web.Request, target: Target) -> web.Response:
        """A list, in etcd key order, chunked by `limit`/`continue` as Kubernetes does (see paging.py)."""
        q = request.query
        selected = bool(q.get("labelSelector") or q.get("fieldSelector"))
        match = self._matcher(request) if selected else None
        limit = _int(q.get("limit"), "limit") or 0
        token, rv_text = q.get("continue", ""), q.get("resourceVersion", "")
        start, at = "", None
        if token:
            if rv_text:
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            start, at = paging.decode(token, target.namespace)
        elif rv_text == "0":
            limit = 0  # served from the watch cache, which ignores limit
        items, rv, last, remaining = self.store.list_chunk(
            target.res, target.namespace, match, limit=limit if limit > 0 else 1 << 62, start=start, at=at
        )
        meta: Obj = {}
        if last is not None:
            meta["continue"] = paging.encode(rv, last, target.namespace)
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        if tables.wants_table(request.headers.get("Accept", "")):
            include = tables.include_object(q.get("includeObject"))
            return _json_response(tables.table(target.res, items, str(rv), include=include, list_meta=meta))
        body = {
            "kind": target.res.list_kind,
            "apiVersion": target.res.api_version,
            "metadata": {"resourceVersion": str(rv), **meta},
            "items": items,
        }
        return _json_response(body)

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        match = self._matcher(request)
        if target.name is not None:
            name, base = target.name, match
            match = lambda obj: obj["metadata"].get("name") == name and base(obj)  # noqa: E731
        rv_text = q.get("resourceVersion", "")
        since = None if rv_text in ("", "0") else _int(rv_text, "resourceVersion")
        bookmarks = _bool(q.get("allowWatchBookmarks"))
        initial_end = _bool(q.get("sendInitialEvents"))
        timeout = _int(q.get("timeoutSeconds"), "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout is not None else DEFAULT_WATCH_TIMEOUT)
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = tables.include_object(q.get("includeObject")) if as_table else "Metadata"
        first = [True]

        def render(event: WatchEvent) -> bytes:
            if not as_table:
                return _line(_event_json(event))
            body = tables.table(target.res, [event.object], str(event.resource_version), with_columns=first[0], include=include)
            first[0] = False
            return _line({"type": event.type, "object": body})

        response = web.StreamResponse(status=200, headers={"Content-Type": _JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        try:
            w, backlog = self.store.watch(target.res, target.namespace, match, since=since)
        except errors.ApiError as err:
            await response.prepare(request)
            await response.write(_line({"type": "ERROR", "object": err.status()}))
            await response.write_eof()
            return response
        try:
            await response.prepare(request)
            for queued in cast("Iterable[WatchEvent]", backlog):  # Store.list shadows `list` for mypy
                await response.write(render(queued))
            if initial_end and since is None:
                await response.write(_line(self._bookmark(target.res, initial_end=True)))
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while not self.closing.is_set():
                now = time.monotonic()
                if now >= deadline:
                    if bookmarks:
                        await response.write(_line(self._bookmark(target.res)))
                    break
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(0.0, next_bookmark - now))
                try:
                    event: WatchEvent | None = await asyncio.wait_for(w.queue.get(), timeout=wait)
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await response.write(_line(self._bookmark(target.res)))
                        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                    continue
                if event is None:
                    break
                await response.write(render(event))
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.stop_watch(w)
        return response

    def _bookmark(self, res: ResourceType, *, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self.store.resource_version)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}}

    async def pod_log(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        self.store.get(PODS, target.namespace, target.name)
        if self.logs is None:
            raise errors.ApiError(503, "ServiceUnavailable", "no kubelet runs in this cluster (CLUSTER_NO_WORKLOADS=1)")
        q = request.query
        chunks = self.logs.logs(
            target.namespace or "",
            target.name,
            container=q.get("container") or None,
            follow=_bool(q.get("follow")),
            tail_lines=_int(q.get("tailLines"), "tailLines"),
            timestamps=_bool(q.get("timestamps")),
            previous=_bool(q.get("previous")),
        )
        iterator = chunks.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = b""
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if first:
                await response.write(first)
            async for chunk in iterator:
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    # ----- writes -----

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise errors.bad_request("the request body is empty")
        content_type = request.headers.get("Content-Type", _JSON).split(";")[0].strip()
        if content_type == protobuf.CONTENT_TYPE:  # kubectl's typed clients (`kubectl create configmap`, ...)
            try:
                return protobuf.decode(raw)
            except (protobuf.DecodeError, UnicodeDecodeError) as exc:
                raise errors.bad_request(f"the body of the request was in an unknown format: {exc}") from None
        if "protobuf" in content_type:
            raise errors.ApiError(415, "UnsupportedMediaType", f"the body's media type {content_type!r} is not supported")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the body of the request was in an unknown format: {exc}") from None

    def _check_kind(self, target: Target, obj: Any) -> Obj:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        res = target.res
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != res.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        if api_version and api_version != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if res.namespaced and target.namespace is not None:
            if meta.get("namespace") and meta["namespace"] != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = target.namespace
        if target.name is not None and meta.get("name") and meta["name"] != target.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        if target.name is not None:
            meta["name"] = target.name
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        return obj

    def _field_validation(self, request: web.Request, res: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        """Apply `fieldValidation`: Strict → 400 on unknown fields, Warn → warnings; unknown fields are dropped."""
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f"fieldValidation must be one of Strict, Warn, Ignore, not {mode!r}")
        node = schema.root(res)
        unknown = [] if mode == "Ignore" else schema.unknown_fields(obj, node)
        if unknown and mode == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown))
        warnings = [f'unknown field "{path}"' for path in unknown]
        return schema.prune(obj, node), warnings

    def _dry_run(self, request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise errors.bad_request(f"unsupported dryRun value {value!r}: only All is supported")
        return bool(values)

    def _manager(self, request: web.Request, *, required: bool = False) -> str:
        manager = request.query.get("fieldManager", "")
        if not manager:
            if required:
                raise errors.bad_request("PATCH, application/apply-patch+yaml requests must have a fieldManager")
            manager = field_manager_from(request.headers.get("User-Agent", ""))
        return manager

    def _prepare(self, res: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        """Defaulting and validation: what every create and update goes through before the store."""
        if old is not None:
            for key in ("uid", "creationTimestamp", "resourceVersion"):
                if key in old["metadata"] and key not in obj["metadata"]:
                    obj["metadata"][key] = old["metadata"][key]
        apply_defaults(res, obj)
        if old is not None:
            registry.prepare_for_update(res, obj, old)
        else:
            registry.admit(res, obj, self.store)  # mutating admission (ServiceAccount), before validation
        validate(res, obj, old)
        if old is None:
            registry.prepare_for_create(res, obj, self.store)
        return obj

    async def create(self, request: web.Request, target: Target) -> web.Response:
        obj = self._check_kind(target, await self._body(request))
        obj, warnings = self._field_validation(request, target.res, obj)
        obj["metadata"].pop("managedFields", None)
        self._prepare(target.res, obj, None)
        obj = ssa.track_update(None, obj, schema.root(target.res), manager=self._manager(request))
        created = self.store.create(target.res, obj, dry_run=self._dry_run(request))
        return _json_response(created, 201, warnings)

    async def replace(self, request: web.Request, target: Target) -> web.Response:
        obj = self._check_kind(target, await self._body(request))
        obj, warnings = self._field_validation(request, target.res, obj)
        assert target.name is not None
        old = self.store.get(target.res, target.namespace, target.name)
        return self._update(request, target, old, obj, warnings)

    def _update(self, request: web.Request, target: Target, old: Obj, obj: Obj, warnings: list[str]) -> web.Response:
        res, sub = target.res, target.subresource
        dry_run = self._dry_run(request)
        if sub == "status":
            return self._update_status(request, target, old, obj, warnings)
        obj["metadata"].pop("managedFields", None)
        if res.has_status:
            obj["status"] = old.get("status")
            if obj["status"] is None:
                obj.pop("status")
        self._prepare(res, obj, old)
        obj = ssa.track_update(old, obj, schema.root(res), manager=self._manager(request))
        updated = self.store.update(res, obj, dry_run=dry_run)
        return _json_response(updated, 200, warnings)

    def _update_status(self, request: web.Request, target: Target, old: Obj, obj: Obj, warnings: list[str]) -> web.Response:
        """PUT or PATCH of the status subresource: only `.status` changes (and resourceVersion, managedFields).

        The body's `metadata.resourceVersion` is a precondition (409 when stale; none: unconditional, as pods,
        deployments and replicasets allow), and so is a `metadata.uid` that names another object.
        """
        res = target.res
        meta = obj.get("metadata") or {}
        uid = old["metadata"].get("uid")
        if meta.get("uid") and meta["uid"] != uid:
            raise errors.conflict(
                res.plural,
                old["metadata"]["name"],
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {uid}",
                res.group,
            )
        merged = copy.deepcopy(old)
        merged["status"] = obj.get("status", old.get("status"))
        if merged["status"] is None:
            merged.pop("status")
        validate_status(res, merged)
        merged = ssa.track_update(old, merged, schema.root(res), manager=self._manager(request), subresource="status")
        if meta.get("resourceVersion"):
            merged["metadata"]["resourceVersion"] = meta["resourceVersion"]
        updated = self.store.update(res, merged, subresource="status", dry_run=self._dry_run(request))
        return _json_response(updated, 200, warnings)

    async def patch(self, request: web.Request, target: Target) -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = await self._body(request)
        assert target.name is not None
        res = target.res
        if content_type == patch.APPLY:
            return self._apply(request, target, body)
        old = self.store.get(res, target.namespace, target.name)
        if content_type == patch.MERGE:
            new = patch.merge_patch(old, body)
        elif content_type == patch.JSON:
            new = patch.json_patch(old, body)
        elif content_type == patch.STRATEGIC:
            new = patch.strategic_merge_patch(old, body, schema.root(res))
        else:
            raise errors.ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{patch.JSON}, {patch.MERGE}, {patch.STRATEGIC}, {patch.APPLY}",
            )
        new = self._check_kind(target, new)
        new, warnings = self._field_validation(request, res, new)
        if not new["metadata"].get("resourceVersion"):
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._update(request, target, old, new, warnings)

    def _apply(self, request: web.Request, target: Target, body: Any) -> web.Response:
        res = target.res
        if target.subresource is not None:
            raise errors.ApiError(415, "UnsupportedMediaType", "server-side apply of subresources is not supported here")
        manager = self._manager(request, required=True)
        force = _bool(request.query.get("force"))
        applied = self._check_kind(target, body)
        applied, warnings = self._field_validation(request, res, applied)
        dry_run = self._dry_run(request)
        assert target.name is not None
        live = self.store.try_get(res, target.namespace, target.name)
        node = schema.root(res)
        new = ssa.apply(live, applied, res, node, manager=manager, force=force)
        if live is None:
            self._prepare(res, new, None)
            created = self.store.create(res, new, dry_run=dry_run)
            return _json_response(created, 201, warnings)
        if res.has_status:
            new["status"] = live.get("status")
            if new["status"] is None:
                new.pop("status")
        self._prepare(res, new, live)
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        updated = self.store.update(res, new, dry_run=dry_run)
        return _json_response(updated, 200, warnings)

    async def scale(self, request: web.Request, target: Target) -> web.Response:
        """The `scale` subresource of deployments and replicasets, as an autoscaling/v1 Scale."""
        assert target.name is not None
        obj = self.store.get(target.res, target.namespace, target.name)
        if request.method in ("PUT", "PATCH"):
            current = _scale(obj)
            body = await self._body(request)
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if request.method == "PUT":
                wanted = body
            elif content_type == patch.JSON:
                wanted = patch.json_patch(current, body)
            else:
                wanted = patch.merge_patch(current, body)
            replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    target.name,
                    [("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")],
                    "autoscaling",
                )
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            new = dict(obj)
            new["spec"] = dict(obj.get("spec") or {}, replicas=replicas)
            if rv:
                new["metadata"] = dict(obj["metadata"], resourceVersion=rv)
            new = ssa.track_update(obj, new, schema.root(target.res), manager=self._manager(request))
            obj = self.store.update(target.res, new, dry_run=self._dry_run(request))
        return _json_response(_scale(obj))

    async def delete(self, request: web.Request, target: Target) -> web.Response:
        assert target.name is not None
        options = await self._delete_options(request)
        res = target.res
        if res is JOBS and options["propagation"] is None:
            options["propagation"] = "Orphan"  # batch/v1's DefaultGarbageCollectionPolicy, for backward compatibility
        obj = self.store.delete(res, target.namespace, target.name, **options)
        if options["dry_run"]:
            deleted = res is not NAMESPACES and not obj["metadata"].get("finalizers")
        else:
            deleted = self.store.try_get(res, target.namespace, target.name) is None
        if not deleted:
            # kube's delete handler: 202 only when the caller explicitly asked orphanDependents=false
            return _json_response(obj, 202 if await self._orphan_dependents_false(request) else 200)
        if registry.returns_deleted_object(res):
            return _json_response(obj)
        meta = obj["metadata"]
        details = {"name": meta["name"], "kind": res.plural, "uid": meta.get("uid")}
        if res.group:
            details["group"] = res.group
        return _json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})

    async def _orphan_dependents_false(self, request: web.Request) -> bool:
        value = request.query.get("orphanDependents")
        if value is None:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                body = {}
            value = body.get("orphanDependents") if isinstance(body, dict) else None
        return value is not None and not _bool(str(value))

    async def delete_collection(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        deleted = []
        for obj in self.store.list(target.res, target.namespace, self._matcher(request)):
            meta = obj["metadata"]
            try:
                deleted.append(self.store.delete(target.res, meta.get("namespace"), meta["name"], **options))
            except errors.ApiError as err:
                if err.code != 404:
                    raise
        body = {
            "kind": target.res.list_kind,
            "apiVersion": target.res.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": deleted,
        }
        return _json_response(body)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        """DeleteOptions from the body (if any) and the query, query winning like kube's decoder."""
        raw = await request.read()
        body: Obj = {}
        if raw.strip():
            try:
                loaded = json.loads(raw)
            except ValueError:
                raise errors.bad_request("DeleteOptions body is not valid JSON") from None
            body = loaded if isinstance(loaded, dict) else {}
        q = request.query
        propagation = q.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = q.get("orphanDependents", body.get("orphanDependents"))
        if propagation is None and orphan is not None:
            propagation = "Orphan" if _bool(str(orphan)) else "Background"
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        grace = _int(q.get("gracePeriodSeconds"), "gracePeriodSeconds")
        if grace is None and body.get("gracePeriodSeconds") is not None:
            grace = int(body["gracePeriodSeconds"])
        dry_run = bool(q.getall("dryRun", [])) or bool(body.get("dryRun"))
        return {
            "grace_period_seconds": grace,
            "propagation": propagation,
            "preconditions": body.get("preconditions") or None,
            "dry_run": dry_run,
        }


def _scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    selector_text = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector_text},
    }


def _event_json(event: WatchEvent) -> Obj:
    return {"type": event.type, "object": event.object}


def _line(body: Obj) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def make_app(
    store: Store, *, token: str, logs: LogSource | None = None, issuer: tokens.TokenIssuer | None = None
) -> tuple[web.Application, Api]:
    """The aiohttp application serving the Kubernetes API for `store`, authenticated by `token`;
    with `issuer`, also ServiceAccount TokenRequests and the OIDC discovery documents (tokens.py)."""
    api = Api(store, token=token, logs=logs, issuer=issuer)
    app = web.Application(middlewares=[api.middleware], client_max_size=16 * 1024 * 1024)
    for path in _PUBLIC:
        app.router.add_get(path, api.health)
    for slash in ("", "/"):  # kube-apiserver serves both /version and /version/ (and so on)
        app.router.add_get("/version" + slash, api.version)
        app.router.add_get("/api" + slash, api.api_root)
        app.router.add_get("/apis" + slash, api.apis_root)
    app.router.add_get(tokens.DISCOVERY_PATH, api.oidc_discovery)
    app.router.add_get(tokens.JWKS_PATH, api.oidc_jwks)
    app.router.add_get("/openapi/v2", api.openapi_v2)
    app.router.add_get("/openapi/v3", api.openapi_v3_root)
    app.router.add_get("/openapi/v3/{path:.+}", api.openapi_v3)
    from bootstrap.cluster import streaming  # pods/exec, attach, portforward: before the catch-all routes

    streaming.register(app, store, cast("streaming.DockerHost | None", logs))
    from bootstrap.cluster import metrics  # metrics.k8s.io (kubectl top): also before the catch-all

    metrics.register(app, store, cast("metrics.StatsHost | None", logs))
    from bootstrap.cluster import hpa_v1  # autoscaling/v1 HPAs over the v2 storage: also before the catch-all

    hpa_v1.register(app, api)
    app.router.add_route("*", "/api/{tail:.+}", api.resource)
    app.router.add_route("*", "/apis/{tail:.+}", api.resource)

    async def _close_watches(_: web.Application) -> None:
        api.closing.set()
        store.close()

    app.on_shutdown.append(_close_watches)
    return app, api
