"""Faults injected at runtime (through `/_imitation/faults`) and the per-operation request counts tests assert on.

Fault kinds (JSON bodies of `POST /_imitation/faults`):

- `{"operation": "Runs_Get", "status": 429, "count": 2, "retryAfter": 1}`:
  the next `count` requests of that operation (or `"*"`: any ARM operation)
  answer `status` (429 with `Retry-After`, or 500/503 ...) with ARM's error body.
  A 4xx other than 429 (`{"operation": "Registries_Create", "status": 409}`)
  answers `{"error": {"code", "message"}}` with the fault's optional `code`
  and `message`, else ARM's generic ones (409 `Conflict`).
  Operations are ARM operation ids (`Registries_Get`, `Registries_ScheduleRun`,
  `ManagedClusters_ListClusterUserCredentials`, ...) plus `Token` (the Entra
  token endpoint), `Blob_Put`, `Blob_Get` and ACR's token exchange
  (`Authentication_ExchangeAadAccessTokenForAcrRefreshToken`,
  `Authentication_ExchangeAcrRefreshTokenForAcrAccessToken`), which `"*"` leaves alone too.
- `{"kind": "failRun", "count": 1, "message": "..."}`: the next scheduled run
  builds, then ends `Failed` with `message` in its log and `runErrorMessage`.
- `{"kind": "runDelay", "seconds": 20, "count": 1}`: the next run stays
  `Running` that long before it starts building (to kill a worker mid-run).
- `{"kind": "runTimeout", "seconds": 2, "count": 1}`: the next run's timeout is
  this short (real ACR refuses `timeout` below 300 s, so does the imitation).
- `{"kind": "failOperation", "operation": "ManagedClusters_CreateOrUpdate", "code": "...", "message": "..."}`:
  the next long-running operation started by that ARM operation (or
  `Registries_Create`) ends `Failed` with that error, and leaves the resource
  in provisioningState `Failed`, as a failed AKS creation does.
- `{"kind": "expiredToken", "count": 1}`: the next token issued is already
  expired (while `expires_in` still says an hour, so the client uses it and
  ARM answers 401 `ExpiredAuthenticationToken`).
- `{"kind": "tasksNotAllowed"}`: a switch (until `DELETE /_imitation/faults`, or
  for `count` requests): Registries_ScheduleRun answers as ACR does on
  subscriptions where ACR Tasks are not allowed (Azure free credit / trial):
  400 `TasksOperationsNotAllowed`, "ACR Tasks requests for the registry {registry}
  and {subscription} are not permitted. Please file an Azure support request at
  http://aka.ms/azuresupport for assistance." (the body public reports show, e.g.
  Azure-Samples/azure-search-openai-demo issues 2220 and 2592, with `"target": "request"`).
- `{"kind": "logCompleteDelay", "seconds": 5, "count": 1}`: the next run sets
  its log blob's `Complete` metadata (and flushes the log's last lines) this
  long after its status turned terminal (default `builds.COMPLETE_DELAY_SECONDS`).
- `{"kind": "throttle", "scale": 10}` / `{"kind": "throttle", "enabled": false}`:
  ARM's token buckets (throttle.py) divided by `scale`, or off; cleared faults
  restore Azure's own figures (on).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LONG_RUNNING = ("Registries_Create", "ManagedClusters_CreateOrUpdate")
TASKS_NOT_ALLOWED = (
    "ACR Tasks requests for the registry {registry} and {subscription} are not permitted. "
    "Please file an Azure support request at http://aka.ms/azuresupport for assistance."
)
SWITCH_COUNT = 1_000_000  # a fault that stays until the faults are cleared


class FaultError(ValueError):
    """The fault's JSON is not one of the documented kinds."""


@dataclass
class HttpFault:
    operation: str
    status: int
    count: int
    retry_after: int | None
    code: str = ""
    message: str = ""


@dataclass
class Faults:
    http: list[HttpFault] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind -> pending entries
    throttle: dict[str, Any] = field(default_factory=dict)  # {"enabled", "scale"} of a `throttle` fault; {} = Azure's
    requests: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spec: dict[str, Any]) -> None:
        kind = spec.get("kind", "http")
        count = int(spec.get("count", SWITCH_COUNT if kind == "tasksNotAllowed" else 1))
        if count < 1:
            raise FaultError("count must be at least 1")
        with self._lock:
            if kind == "http":
                if "operation" not in spec or "status" not in spec:
                    raise FaultError('an http fault needs "operation" and "status"')
                status = int(spec["status"])
                retry_after = spec.get("retryAfter")
                if status == 429 and retry_after is None:
                    retry_after = 1
                self.http.append(
                    HttpFault(
                        str(spec["operation"]),
                        status,
                        count,
                        None if retry_after is None else int(retry_after),
                        str(spec.get("code") or ""),
                        str(spec.get("message") or ""),
                    )
                )
            elif kind == "failOperation":
                if spec.get("operation") not in LONG_RUNNING:
                    raise FaultError(f'a failOperation fault needs an "operation" of {", ".join(LONG_RUNNING)}')
                self.runs.setdefault(kind, []).append(dict(spec, count=count))
            elif kind == "tasksNotAllowed":
                self.http.append(
                    HttpFault("Registries_ScheduleRun", 400, count, None, "TasksOperationsNotAllowed", TASKS_NOT_ALLOWED)
                )
            elif kind == "throttle":
                scale = float(spec.get("scale", 1))
                if scale < 1:
                    raise FaultError("a throttle fault's scale must be at least 1 (Azure's figures divided by it)")
                self.throttle = {"enabled": bool(spec.get("enabled", True)), "scale": scale}
            elif kind == "logCompleteDelay":
                if float(spec.get("seconds", -1)) < 0:
                    raise FaultError('a logCompleteDelay fault needs "seconds" (0 or more)')
                self.runs.setdefault(kind, []).append(dict(spec, count=count))
            elif kind in ("failRun", "runDelay", "runTimeout", "expiredToken"):
                self.runs.setdefault(kind, []).append(dict(spec, count=count))
            else:
                raise FaultError(
                    f"unknown fault kind {kind!r}: http, failRun, runDelay, runTimeout, expiredToken, failOperation, "
                    "tasksNotAllowed, logCompleteDelay, throttle"
                )

    def take_http(self, operation: str) -> HttpFault | None:
        with self._lock:
            for fault in self.http:
                if fault.operation in (operation, "*") and fault.count > 0:
                    if fault.operation == "*" and (
                        operation in ("Token", "Blob_Put", "Blob_Get") or operation.startswith("Authentication_")
                    ):
                        continue
                    fault.count -= 1
                    if fault.count == 0:
                        self.http.remove(fault)
                    return fault
        return None

    def take(self, kind: str) -> dict[str, Any] | None:
        """Consume one use of the oldest pending fault of `kind` (failRun, runDelay, runTimeout, expiredToken, logCompleteDelay)."""
        with self._lock:
            pending = self.runs.get(kind) or []
            if not pending:
                return None
            entry = pending[0]
            entry["count"] -= 1
            if entry["count"] <= 0:
                pending.pop(0)
            return dict(entry)

    def take_operation(self, operation: str) -> dict[str, Any] | None:
        """Consume one use of the oldest pending `failOperation` fault for `operation`."""
        with self._lock:
            pending = self.runs.get("failOperation") or []
            entry = next((e for e in pending if e.get("operation") == operation), None)
            if entry is None:
                return None
            entry["count"] -= 1
            if entry["count"] <= 0:
                pending.remove(entry)
            return dict(entry)

    def record(self, *, operation: str, method: str, path: str, status: int, client_id: str | None) -> None:
        with self._lock:
            self.requests[operation] += 1
            self.log.append({"operation": operation, "method": method, "path": path, "status": status, "clientId": client_id})
            del self.log[:-2000]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": dict(self.requests),
                "log": list(self.log),
                "pending": {
                    "http": [vars(f) for f in self.http],
                    **({"throttle": dict(self.throttle)} if self.throttle else {}),
                    **{kind: list(entries) for kind, entries in self.runs.items() if entries},
                },
            }

    def clear(self, *, requests: bool) -> None:
        with self._lock:
            self.http.clear()
            self.runs.clear()
            self.throttle = {}
            if requests:
                self.requests.clear()
                self.log.clear()
