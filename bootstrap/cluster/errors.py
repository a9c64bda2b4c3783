"""API errors, shaped as the Kubernetes `Status` object clients parse.

ApiError(code, reason)      any failure the API answers with a Status
  400 BadRequest            unparseable body, selector or patch
  401 Unauthorized          missing or wrong bearer token
  403 Forbidden             e.g. creating in a terminating namespace
  404 NotFound              object, namespace or resource type unknown
  405 MethodNotAllowed      verb not supported on the path
  409 AlreadyExists         create of an existing name
  409 Conflict              stale resourceVersion, or a server-side apply conflict
  410 Expired               watch from a resourceVersion older than the history kept
  415 UnsupportedMediaType  patch content type not supported
  422 Invalid               object fails validation (with causes)
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(kind_plural: str, name: str, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind_plural}
    if group:
        details["group"] = group
    return details


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', details=_details(plural, name, group))


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists', details=_details(plural, name, group))


def conflict(plural: str, name: str, why: str, group: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        details=_details(plural, name, group),
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> ApiError:
    """422 with one cause per (field, message), as the API server's validation reports it."""
    qualified = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    details = {
        "name": name,
        "group": group,
        "kind": kind,
        "causes": [{"reason": _cause_reason(msg), "message": msg, "field": field} for field, msg in causes],
    }
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details=details)


def _cause_reason(message: str) -> str:
    """The machine-readable cause reason kube uses for a validation message's prefix."""
    for prefix, reason in (
        ("Required value", "FieldValueRequired"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
    ):
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
