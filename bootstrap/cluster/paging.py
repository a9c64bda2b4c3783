"""List chunking (`?limit=` / `?continue=`) as kube-apiserver's etcd3 store does it.

- Objects are ordered by their etcd key, `<namespace>/<name>` (cluster-scoped:
  `<name>`), compared as strings: `a-b/x` sorts before `a/x`, as in etcd.
- `limit` counts items AFTER label/field selection: the store keeps reading
  keys until it has `limit` matching items or runs out, as etcd3's GetList
  does. A continue token is returned whenever unread keys remain, even if none
  of them would match (the next page can then be empty).
- `remainingItemCount` is set only when more remain and there is no selector
  (Kubernetes cannot count the matching remainder cheaply either).
- The token is Kubernetes' own format: base64url (no padding) of
  `{"v":"meta.k8s.io/v1","rv":<resourceVersion>,"start":"<last key>\\u0000"}`,
  the start key relative to the request's prefix (`<namespace>/` for a
  namespaced list). A continued page is read consistently at the token's
  resourceVersion: the store rewinds its watch-event history (cheap, in memory);
  if that history no longer reaches back so far, the answer is 410 Expired, as
  after an etcd compaction.
- `resourceVersion=0` without `continue` is served "from the watch cache" in
  Kubernetes, which ignores `limit`: the whole list, no token.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath

from bootstrap.cluster import errors

API_VERSION = "meta.k8s.io/v1"
_GENERIC = "continue key is not valid"


def etcd_key(key: tuple[str, str]) -> str:
    """The store key (namespace, name) as the etcd key below the resource's prefix."""
    namespace, name = key
    return f"{namespace}/{name}" if namespace else name


def prefix(namespace: str | None) -> str:
    return f"{namespace}/" if namespace else ""


def encode(resource_version: int, last_key: str, namespace: str | None) -> str:
    start = last_key.removeprefix(prefix(namespace)) + "\x00"
    raw = json.dumps({"v": API_VERSION, "rv": resource_version, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, namespace: str | None) -> tuple[str, int]:
    """(absolute start key, resourceVersion) of a continue token; 400 BadRequest as Kubernetes if malformed."""

    def bad(why: str) -> errors.ApiError:
        return errors.bad_request(f"invalid continue token: {why}")

    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(data)
    except (binascii.Error, ValueError) as exc:
        raise bad(f"{_GENERIC}: {exc}") from None
    if not isinstance(doc, dict):
        raise bad(f"{_GENERIC}: not an object")
    if doc.get("v") != API_VERSION:
        raise bad(f"{_GENERIC}: server does not recognize this encoded version {json.dumps(doc.get('v') or '')}")
    rv = doc.get("rv")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise bad(f"{_GENERIC}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    start = doc.get("start")
    if not isinstance(start, str) or not start:
        raise bad(f"{_GENERIC}: encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if posixpath.normpath(key) != key or key.startswith("//"):
        raise bad(f"{_GENERIC}: {start}")
    return prefix(namespace) + key[1:], rv
