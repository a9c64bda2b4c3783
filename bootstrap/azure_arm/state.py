"""What exists in the imitated Azure: the seed (tenant, clients, subscription, resource groups, registries, clusters,
role assignments) and the runs.

`DIR/seed.json` (0600: it holds client secrets and signing keys) is written at
the first start from the command line's flags and read as-is afterwards, so a
test or a person may edit it between starts. Resources created through ARM
(ResourceGroups_CreateOrUpdate, Registries_Create, ManagedClusters_CreateOrUpdate,
RoleAssignments_Create, UserAssignedIdentities_CreateOrUpdate and its federated
identity credentials) are added to the seed and saved at once, so a restarted
imitation still has them. `Seed.default(empty=True)` has no resource group,
registry or cluster at all ("from nothing"). Runs live in
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


ROLE_CLIENTS = {"contributor": "Contributor", "reader": "Reader"}
"""Seeded clients besides `pipeline` (Owner) and `no-access` (no role), by display name: their one built-in role on
the subscription. Their client environment is `DIR/env.<name>`."""


def _builtin_role_id(name: str) -> str:
    """A built-in role's GUID by name, from builtin-roles.json (authorization.py holds the definitions; it imports
    this module, so the file is read here too)."""
    roles = json.loads((Path(__file__).resolve().parent / "builtin-roles.json").read_text())
    return str(next(r["id"] for r in roles if r["roleName"] == name))


@dataclass
class ClientApp:
    """A service principal that may ask the token endpoint for tokens (client credentials)."""

    client_id: str
    secret: str
    display_name: str
    object_id: str
    has_access: bool = True  # False: no role assignment at all (tokens are issued, ARM answers 403); see with_client_roles


@dataclass
class GroupSeed:
    """A resource group (Microsoft.Resources/resourceGroups)."""

    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RegistrySeed:
    name: str
    location: str
    login_server: str  # the local registry (host:port), see the package docstring
    admin_user_enabled: bool = True
    passwords: list[str] = field(default_factory=lambda: [secrets.token_urlsafe(24), secrets.token_urlsafe(24)])
    creation_date: str = "2026-01-01T00:00:00.0000000Z"
    resource_group: str = ""  # "" = the seed's resource_group (the seeded registry)
    sku: str = "Standard"
    provisioning_state: str = "Succeeded"  # Creating while its Registries_Create operation runs
    tags: dict[str, str] = field(default_factory=dict)
    # LegacyRegistryPermissions (AcrPull/AcrPush honoured) or AbacRepositoryPermissions (only the Container
    # Registry Repository roles' dataActions give data-plane access; acr_auth.py)
    role_assignment_mode: str = "LegacyRegistryPermissions"


@dataclass
class ClusterSeed:
    name: str
    location: str
    aad: bool = False  # Entra ID (AAD) integration: user kubeconfig runs kubelogin
    kubernetes_version: str = "1.32.0"
    dns_prefix: str = ""
    resource_group: str = ""  # "" = the seed's resource_group (the seeded clusters)
    oidc_issuer: bool = True  # oidcIssuerProfile.enabled
    workload_identity: bool = True  # securityProfile.workloadIdentity.enabled
    provisioning_state: str = "Succeeded"  # Creating/Updating while a CreateOrUpdate operation runs, Failed after one failed
    node_count: int = 1
    vm_size: str = "Standard_D2s_v3"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RoleAssignmentSeed:
    """Microsoft.Authorization/roleAssignments/{name} at `scope` (a resource id)."""

    name: str  # a GUID
    scope: str
    role_definition_id: str  # /subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}
    principal_id: str
    principal_type: str
    created_on: str
    created_by: str


@dataclass
class FederatedCredentialSeed:
    """Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/{name}: which external tokens
    (issuer, subject, one audience) the identity accepts at the token endpoint."""

    name: str
    issuer: str
    subject: str
    audiences: list[str]


@dataclass
class IdentitySeed:
    """A user-assigned managed identity (Microsoft.ManagedIdentity/userAssignedIdentities): a service principal
    of the tenant (`principal_id`) whose `client_id` may get tokens with a federated credential's assertion."""

    name: str
    location: str
    resource_group: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tags: dict[str, str] = field(default_factory=dict)
    federated_credentials: list[FederatedCredentialSeed] = field(default_factory=list)


@dataclass
class Operation:
    """An ARM asynchronous operation (the `Azure-AsyncOperation` URL's resource), kept in memory only."""

    id: str
    operation: str  # the ARM operation id that started it, e.g. ManagedClusters_CreateOrUpdate
    resource_kind: str  # "registry" or "cluster"
    resource_group: str
    resource_name: str
    start_time: str
    status: str = "InProgress"  # -> Succeeded | Failed
    end_time: str = ""
    error: dict[str, str] = field(default_factory=dict)


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
    groups: list[GroupSeed] = field(default_factory=list)
    role_assignments: list[RoleAssignmentSeed] = field(default_factory=list)
    identities: list[IdentitySeed] = field(default_factory=list)
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
        empty: bool = False,
    ) -> Seed:
        """The default tenant, principals and subscription; unless `empty`, also one resource group, registry and
        the two clusters (plain and Entra ID). `resource_group` is named either way: the client environment
        suggests it (AZURE_RESOURCE_GROUP) even when it does not exist yet."""
        return cls(
            tenant_id=str(uuid.uuid4()),
            subscription_id=str(uuid.uuid4()),
            subscription_name="imitation",
            resource_group=resource_group,
            location=location,
            clients=[
                ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), "pipeline", str(uuid.uuid4())),
                ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), "no-access", str(uuid.uuid4()), has_access=False),
                *(ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), name, str(uuid.uuid4())) for name in ROLE_CLIENTS),
            ],
            registries=[] if empty else [RegistrySeed(registry, location, login_server)],
            clusters=[]
            if empty
            else [
                ClusterSeed(cluster, location, aad=False, dns_prefix=cluster),
                ClusterSeed(f"{cluster}-aad", location, aad=True, dns_prefix=f"{cluster}-aad"),
            ],
            groups=[] if empty else [GroupSeed(resource_group, location)],
        ).with_client_roles()

    def with_client_roles(self) -> Seed:
        """Each seeded client with access holds its role on the subscription: `pipeline` Owner, `contributor`
        Contributor, `reader` Reader (`no-access` none). Also brings a seed.json written before roles were
        modelled up to date: the missing clients are added and a client with no role assignment gets its role."""
        for name in ROLE_CLIENTS:
            if not any(c.display_name == name for c in self.clients):
                self.clients.append(ClientApp(str(uuid.uuid4()), secrets.token_urlsafe(30), name, str(uuid.uuid4())))
        scope = f"/subscriptions/{self.subscription_id}"
        for client in self.clients:
            role = ROLE_CLIENTS.get(client.display_name, "Owner")
            if not client.has_access or any(a.principal_id.lower() == client.object_id.lower() for a in self.role_assignments):
                continue
            self.role_assignments.append(
                RoleAssignmentSeed(
                    name=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{client.object_id}|{role}")),
                    scope=scope,
                    role_definition_id=f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{_builtin_role_id(role)}",
                    principal_id=client.object_id.lower(),
                    principal_type="ServicePrincipal",
                    created_on="2026-01-01T00:00:00.0000000Z",
                    created_by="imitation seed",
                )
            )
        return self

    @classmethod
    def load(cls, path: Path) -> Seed:
        raw = json.loads(path.read_text())
        raw["clients"] = [ClientApp(**c) for c in raw["clients"]]
        raw["registries"] = [RegistrySeed(**r) for r in raw["registries"]]
        raw["clusters"] = [ClusterSeed(**c) for c in raw["clusters"]]
        if "groups" in raw:
            raw["groups"] = [GroupSeed(**g) for g in raw["groups"]]
        else:  # a seed.json written before resource groups were stored: its one group exists
            raw["groups"] = [GroupSeed(raw["resource_group"], raw["location"])]
        raw["role_assignments"] = [RoleAssignmentSeed(**a) for a in raw.get("role_assignments", [])]
        raw["identities"] = [
            IdentitySeed(
                **{
                    **i,
                    "federated_credentials": [FederatedCredentialSeed(**f) for f in i.get("federated_credentials", [])],
                }
            )
            for i in raw.get("identities", [])
        ]
        return cls(**raw).with_client_roles()

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2).encode())

    def client(self, client_id: str) -> ClientApp | None:
        return next((c for c in self.clients if c.client_id.lower() == client_id.lower()), None)

    def group_of(self, resource: RegistrySeed | ClusterSeed) -> str:
        return resource.resource_group or self.resource_group

    def group(self, name: str) -> GroupSeed | None:
        return next((g for g in self.groups if g.name.lower() == name.lower()), None)

    def registry(self, name: str, group: str | None = None) -> RegistrySeed | None:
        """The registry `name` (in `group`, when given; names are compared case-insensitively, as ARM does)."""
        return next(
            (
                r
                for r in self.registries
                if r.name.lower() == name.lower() and (group is None or self.group_of(r).lower() == group.lower())
            ),
            None,
        )

    def cluster(self, name: str, group: str | None = None) -> ClusterSeed | None:
        return next(
            (
                c
                for c in self.clusters
                if c.name.lower() == name.lower() and (group is None or self.group_of(c).lower() == group.lower())
            ),
            None,
        )

    def identity(self, name: str, group: str) -> IdentitySeed | None:
        return next(
            (i for i in self.identities if i.name.lower() == name.lower() and i.resource_group.lower() == group.lower()),
            None,
        )

    def identity_by_client_id(self, client_id: str) -> IdentitySeed | None:
        return next((i for i in self.identities if i.client_id.lower() == client_id.lower()), None)

    def role_assignment(self, scope: str, name: str) -> RoleAssignmentSeed | None:
        return next(
            (a for a in self.role_assignments if a.scope.lower() == scope.lower() and a.name.lower() == name.lower()), None
        )


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
