"""Readiness and liveness probes: one asyncio task per probe, on kubelet's timing and thresholds.

httpGet goes to the pod IP unless `host` is set (2xx/3xx succeed), tcpSocket
connects, exec runs through `docker exec` (exit code 0 succeeds). A readiness
result starts as failure and a liveness result as success, as in kubelet; a
result flips only after successThreshold / failureThreshold consecutive
outcomes, and each flip is reported through `on_change`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from bootstrap.cluster.store import Obj

ExecFn = Callable[[list[str], float], Awaitable[int]]


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"unknown named port {value!r}")


async def _http_get(spec: Obj, pod_ip: str, container: Obj, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    path = spec.get("path") or "/"
    scheme = (spec.get("scheme") or "HTTP").upper()
    url = f"{scheme.lower()}://{host}:{port}{path}"
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*", "Connection": "close"}
    for header in spec.get("httpHeaders") or []:
        headers[header["name"]] = header.get("value", "")
    context = None
    if scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as err:
        return False, f'Get "{url}": dial tcp {host}:{port}: connect: {err.strerror or err}'
    parts = status_line.decode("latin-1").split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp(spec: Obj, pod_ip: str, container: Obj, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or pod_ip
    port = _port(spec.get("port"), container)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
    except (OSError, TimeoutError) as err:
        return False, f"dial tcp {host}:{port}: {err}"
    return True, ""


async def probe_once(probe: Obj, *, pod_ip: str, container: Obj, exec_fn: ExecFn) -> tuple[bool, str]:
    """One probe attempt: (success, why it failed)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return await _http_get(probe["httpGet"], pod_ip, container, timeout)
        if "tcpSocket" in probe:
            return await _tcp(probe["tcpSocket"], pod_ip, container, timeout)
        if "exec" in probe:
            command = [str(c) for c in probe["exec"].get("command") or []]
            try:
                code = await asyncio.wait_for(exec_fn(command, timeout), timeout)
            except TimeoutError:
                return False, f"command timed out: {command!r} timed out after {timeout:g}s"
            return (code == 0), f"command {command!r} exited with {code}"
    except ValueError as err:
        return False, str(err)
    return True, ""  # grpc and unknown handlers are not supported: never fail on them


class Prober:
    """Runs one probe until cancelled, calling `on_change(result)` whenever the thresholded result flips."""

    def __init__(
        self,
        kind: str,
        probe: Obj,
        *,
        pod_ip: str,
        container: Obj,
        exec_fn: ExecFn,
        on_change: Callable[[bool], None],
        on_failure: Callable[[str], None],
    ) -> None:
        self.kind = kind
        self.result = kind != "readiness"
        self._probe = probe
        self._pod_ip = pod_ip
        self._container = container
        self._exec = exec_fn
        self._on_change = on_change
        self._on_failure = on_failure

    async def run(self) -> None:
        await asyncio.sleep(float(self._probe.get("initialDelaySeconds", 0)))
        period = max(0.1, float(self._probe.get("periodSeconds", 10)))
        success_threshold = int(self._probe.get("successThreshold", 1))
        failure_threshold = int(self._probe.get("failureThreshold", 3))
        successes = failures = 0
        while True:
            ok, why = await probe_once(self._probe, pod_ip=self._pod_ip, container=self._container, exec_fn=self._exec)
            if ok:
                successes, failures = successes + 1, 0
                if not self.result and successes >= success_threshold:
                    self.result = True
                    self._on_change(True)
            else:
                successes, failures = 0, failures + 1
                self._on_failure(why)
                if self.result and failures >= failure_threshold:
                    self.result = False
                    self._on_change(False)
                    if self.kind == "liveness":
                        return  # the container is killed; a new prober starts with the next container
            await asyncio.sleep(period)
