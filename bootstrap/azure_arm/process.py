"""Run the imitation as a child process and drive its admin API (what tests and the quick start use)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.process import stop_child


class ImitationError(RuntimeError):
    """The imitation did not start, or its admin API refused a request."""


@dataclass(frozen=True)
class Imitation:
    """A running imitation: where it listens, what a client trusts, and what exists in it."""

    endpoint: str  # https://127.0.0.1:PORT (ARM and the Entra authority host)
    ca_bundle: Path
    env: dict[str, str]  # AZURE_* and REQUESTS_CA_BUNDLE/SSL_CERT_FILE for the `pipeline` client
    state_dir: Path
    seed: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None

    @property
    def subscription_id(self) -> str:
        return str(self.seed["subscription_id"])

    @property
    def tenant_id(self) -> str:
        return str(self.seed["tenant_id"])

    @property
    def resource_group(self) -> str:
        return str(self.seed["resource_group"])

    @property
    def location(self) -> str:
        return str(self.seed["location"])

    @property
    def registry_name(self) -> str:
        return str(self.seed["registries"][0]["name"])

    @property
    def login_server(self) -> str:
        return str(self.seed["registries"][0]["login_server"])

    @property
    def cluster_name(self) -> str:
        return next(str(c["name"]) for c in self.seed["clusters"] if not c["aad"])

    @property
    def aad_cluster_name(self) -> str:
        return next(str(c["name"]) for c in self.seed["clusters"] if c["aad"])

    @property
    def client_id(self) -> str:
        return self.env["AZURE_CLIENT_ID"]

    @property
    def client_secret(self) -> str:
        return self.env["AZURE_CLIENT_SECRET"]

    @property
    def no_access_client(self) -> tuple[str, str]:
        """(client id, secret) of the seeded principal that gets tokens but no role: ARM answers 403."""
        client = next(c for c in self.seed["clients"] if not c["has_access"])
        return str(client["client_id"]), str(client["secret"])

    def client_env(self, name: str) -> dict[str, str]:
        """The client environment of seeded principal `name` ("contributor", "reader"): DIR/env.<name>, in the form
        of DIR/env (the `pipeline` principal's, Owner on the subscription)."""
        text = (self.state_dir / f"env.{name}").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def object_id(self, display_name: str) -> str:
        """The object id of seeded principal `display_name` ("pipeline", "contributor", "reader", "no-access")."""
        return next(str(c["object_id"]) for c in self.seed["clients"] if c["display_name"] == display_name)

    # -- admin API -------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint}/_imitation/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ImitationError(f"admin {method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc
        return json.loads(raw) if raw else None

    def inject(self, **fault: Any) -> None:
        """Add one fault (see bootstrap.azure_arm.faults): `inject(operation="Runs_Get", status=429, count=2, retryAfter=1)`."""
        self._admin("POST", "faults", fault)

    def clear_faults(self) -> None:
        self._admin("DELETE", "faults")

    def reset(self) -> None:
        """Clear faults and request counts (runs stay)."""
        self._admin("POST", "reset")

    def requests(self) -> dict[str, Any]:
        """`{"counts": {operation: n}, "log": [{operation, method, path, status, clientId}], "pending": {...}}`."""
        return dict(self._admin("GET", "requests"))

    def count(self, operation: str) -> int:
        return int(self.requests()["counts"].get(operation, 0))

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace=15)


def attach(state_dir: Path, process: subprocess.Popen[bytes] | None = None) -> Imitation:
    """The imitation already serving from `state_dir`."""
    endpoint = (state_dir / "endpoint").read_text().strip()
    env = json.loads((state_dir / "env.json").read_text())
    seed = json.loads((state_dir / "seed.json").read_text())
    return Imitation(endpoint, state_dir / "ca.pem", env, state_dir, seed, process)


def start(
    state_dir: Path,
    *,
    kubeconfig: Path | None = None,
    registry: str = "127.0.0.1:5000",
    port: int = 0,
    log_file: Path | None = None,
    timeout: float = 20.0,
    empty: bool = False,
) -> Imitation:
    """Start `python -m bootstrap.azure_arm serve` and wait until it has written DIR/endpoint.

    `empty`: a new DIR starts with no resource group, registry or cluster (Azure "from nothing").
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "endpoint").unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bootstrap.azure_arm",
        "serve",
        "--state-dir",
        str(state_dir),
        "--port",
        str(port),
        "--registry",
        registry,
    ]
    if kubeconfig:
        cmd += ["--kubeconfig", str(kubeconfig)]
    if empty:
        cmd.append("--empty")
    log_path = log_file or state_dir / "imitation.log"
    repo_root = Path(__file__).resolve().parents[2]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=repo_root, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    deadline = time.monotonic() + timeout
    while not (state_dir / "endpoint").exists():
        if process.poll() is not None:
            raise ImitationError(f"the ARM imitation exited with {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            process.kill()
            raise ImitationError(f"the ARM imitation did not start within {timeout:.0f}s; see {log_path}")
        time.sleep(0.05)
    return attach(state_dir, process)
