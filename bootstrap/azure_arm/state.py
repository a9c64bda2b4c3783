"""What exists in the imitated Azure: the seed (tenant, clients, subscription, resource group, registries, clusters) and the runs.

`DIR/seed.json` (0600: it holds client secrets and signing keys) is written at
the first start from the command line's flags and read as-is afterwards, so a
test or a person may edit it between starts. Runs live in
`DIR/runs/<registry>/<runId>.json`, one file per run, rewritten atomically on
every change, so a restarted imitation still answers Runs_Get.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.tls import write_private

AKS_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
"""The Entra application of every AKS API server: tokens for `<this>/.default` are what AAD clusters accept."""


@dataclass
class ClientApp:
    """A service principal that may ask the token endpoint for tokens (client credentials)."""

    client_id: str
    secret: str
    display_name: str
    object_id: str
    has_access: bool = True  # False: tokens are issued, but ARM answers 403 AuthorizationFailed


@dataclass
class RegistrySeed:
    name: str
    location: str
    login_server: str  # the local registry (host:port), see the package docstring
    admin_user_enabled: bool = True
    passwords: list[str] = field(default_factory=lambda: [secrets.token_urlsafe(24), secrets.token_urlsafe(24)])
    creation_date: str = "2026-01-01T00:00:00.0000000Z"


@dataclass
class ClusterSeed:
    name: str
    location: str
    aad: bool = False  # Entra ID (AAD) integration: user kubeconfig runs kubelogin
    kubernetes_version: str = "1.32.0"
    dns_prefix: str = ""


@dataclass
class Seed:
    tenant_id: str
    subscription_id: str
    subscription_name: str
    resource_group: str
    location: str
    clients: list[ClientApp]
    registries: list[RegistrySeed]
    clusters: list[ClusterSeed]
    token_key: str = field(default_factory=lambda: secrets.token_hex(32))
    sas_key: str = field(default_factory=lambda: secrets.token_hex(32))

    @classmethod
    def default(
        cls,
        *,
        login_server: str,
        resource_group: str = "pipeline-rg",
        registry: str = "pipelineacr",
        cluster: str = "pipeline-aks",
        location: str = "westeurope",
    ) -> Seed:
        return cls(
            tenant_id=str(uuid.uuid4()),
            subscription_id=str(uuid.uuid4()),
            subscription_name="imitation",
            resource_group=resource_group,
            location=location,
            clients=[
                ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), "pipeline", str(uuid.uuid4())),
                ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), "no-access", str(uuid.uuid4()), has_access=False),
            ],
            registries=[RegistrySeed(registry, location, login_server)],
            clusters=[
                ClusterSeed(cluster, location, aad=False, dns_prefix=cluster),
                ClusterSeed(f"{cluster}-aad", location, aad=True, dns_prefix=f"{cluster}-aad"),
            ],
        )

    @classmethod
    def load(cls, path: Path) -> Seed:
        raw = json.loads(path.read_text())
        raw["clients"] = [ClientApp(**c) for c in raw["clients"]]
        raw["registries"] = [RegistrySeed(**r) for r in raw["registries"]]
        raw["clusters"] = [ClusterSeed(**c) for c in raw["clusters"]]
        return cls(**raw)

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2).encode())

    def client(self, client_id: str) -> ClientApp | None:
        return next((c for c in self.clients if c.client_id.lower() == client_id.lower()), None)

    def registry(self, name: str) -> RegistrySeed | None:
        return next((r for r in self.registries if r.name.lower() == name.lower()), None)

    def cluster(self, name: str) -> ClusterSeed | None:
        return next((c for c in self.clusters if c.name.lower() == name.lower()), None)


TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Canceled", "Error", "Timeout"})


class RunStore:
    """ACR runs by registry, kept in memory and mirrored to one JSON file per run.

    A run record is `{"resource": <the ARM Run body>, "private": {...}}`; only
    `resource` is ever sent to a client.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], dict[str, Any]] = {}
        root.mkdir(parents=True, exist_ok=True)
        for path in root.glob("*/*.json"):
            self._runs[(path.parent.name, path.stem)] = json.loads(path.read_text())

    def _path(self, registry: str, run_id: str) -> Path:
        return self._root / registry.lower() / f"{run_id}.json"

    def _write(self, registry: str, run_id: str) -> None:
        path = self._path(registry, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._runs[(registry.lower(), run_id)], indent=2))
        os.replace(tmp, path)

    def next_run_id(self, registry: str) -> str:
        """ACR-style ids: `c` + a letter per registry + a counter (`ca1`, `ca2`, ...)."""
        with self._lock:
            letter = chr(ord("a") + sum(registry.lower().encode()) % 26)
            count = sum(1 for (reg, _) in self._runs if reg == registry.lower())
            return f"c{letter}{count + 1}"

    def create(self, registry: str, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._runs[(registry.lower(), run_id)] = copy.deepcopy(record)
            self._write(registry, run_id)
            return copy.deepcopy(record)

    def get(self, registry: str, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._runs.get((registry.lower(), run_id.lower()))
            return copy.deepcopy(record) if record else None

    def update(self, registry: str, run_id: str, *, private: dict[str, Any] | None = None, **properties: Any) -> dict[str, Any]:
        with self._lock:
            record = self._runs[(registry.lower(), run_id)]
            record["resource"]["properties"].update({k: v for k, v in properties.items() if v is not None})
            record["private"].update(private or {})
            self._write(registry, run_id)
            return copy.deepcopy(record)

    def all(self, registry: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(r) for (reg, _), r in self._runs.items() if reg == registry.lower()]

    def unfinished(self) -> list[tuple[str, str]]:
        with self._lock:
            return [
                (reg, run_id)
                for (reg, run_id), r in self._runs.items()
                if r["resource"]["properties"]["status"] not in TERMINAL_STATUSES
            ]
