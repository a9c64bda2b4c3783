"""Azure Resource Manager: the routing table, the checks ARM makes before a provider sees a request, and the handlers.

A request under `/subscriptions/` goes through, in ARM's order: route
(case-insensitive, like ARM) -> bearer token (401) -> `api-version` for that
operation (400) -> subscription (404) -> role check (403) -> injected faults
(429/500) -> resource group (404) -> the handler (which answers 404 for a
missing resource). Every answer carries ARM's headers. To add an operation,
add a `Route` to `ROUTES`.

Creation (`pipeline bootstrap --azure`): ResourceGroups_CreateOrUpdate/Get,
Registries_Create and ManagedClusters_CreateOrUpdate (long-running: 201 with
`Azure-AsyncOperation` and `Retry-After: 1`, provisioningState `Creating` until
the operation's status answers `Succeeded` a short while later, or `Failed`
with an injected `failOperation` fault), RoleAssignments_Create/Get at a
registry's scope. Created resources are added to the seed and saved.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bootstrap.azure_arm import blobs, identity
from bootstrap.azure_arm.builds import now_iso
from bootstrap.azure_arm.faults import Faults
from bootstrap.azure_arm.state import (
    AKS_SERVER_APP_ID,
    TERMINAL_STATUSES,
    ClusterSeed,
    GroupSeed,
    Operation,
    RegistrySeed,
    RoleAssignmentSeed,
    RunStore,
    Seed,
)

REGISTRY_VERSIONS = frozenset(
    {
        "2019-05-01", "2019-12-01-preview", "2020-11-01-preview", "2021-06-01-preview", "2021-08-01-preview",
        "2021-09-01", "2021-12-01-preview", "2022-02-01-preview", "2022-12-01", "2023-01-01-preview", "2023-06-01-preview",
        "2023-07-01", "2023-08-01-preview", "2023-11-01-preview", "2024-11-01-preview", "2025-03-01-preview", "2025-04-01",
        "2025-05-01-preview", "2025-06-01-preview", "2025-11-01",
    }
)  # fmt: skip
TASK_VERSIONS = frozenset({"2018-09-01", "2019-04-01", "2019-06-01-preview", "2025-03-01-preview"})
AKS_VERSIONS = frozenset(
    {f"{y}-{m:02d}-01" for y in (2024, 2025, 2026) for m in range(1, 13) if (y, m) <= (2026, 8)}
    | {"2026-08-01-preview", "2026-06-02-preview"}
)
RESOURCE_VERSIONS = frozenset(
    {"2019-10-01", "2020-06-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01",
     "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01"}
)  # fmt: skip
AUTHORIZATION_VERSIONS = frozenset(
    {"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview", "2020-04-01-preview",
     "2020-08-01-preview", "2020-10-01-preview", "2022-01-01-preview", "2022-04-01"}
)  # fmt: skip
# Built-in role definitions (the same GUIDs in every tenant) the imitation knows.
ROLE_DEFINITIONS = {
    "7f951dca-d1b7-4d0a-9b11-ce1bf1cd58da": "AcrPull",
    "8311e382-0749-4cb8-b61a-304f252e45ec": "AcrPush",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
}
# Regions a resource may be created in (ARM's names, lower case without spaces).
LOCATIONS = frozenset(
    {"eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus", "westcentralus",
     "canadacentral", "brazilsouth", "northeurope", "westeurope", "uksouth", "ukwest", "francecentral",
     "germanywestcentral", "swedencentral", "switzerlandnorth", "norwayeast", "polandcentral", "italynorth",
     "eastasia", "southeastasia", "japaneast", "japanwest", "koreacentral", "australiaeast", "centralindia",
     "southafricanorth", "uaenorth"}
)  # fmt: skip
REGISTRY_SKUS = ("Basic", "Standard", "Premium")
# How long a created registry / cluster stays provisioningState "Creating" (real ones take ~10 s / ~5 min).
OPERATION_SECONDS = {"registry": 1.0, "cluster": 2.0}
KUBELOGIN_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"  # the Azure CLI's public client, what AKS puts in exec kubeconfigs


class ArmError(Exception):
    """An ARM error answer: `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass(frozen=True)
class Context:
    request: web.Request
    params: dict[str, str]
    seed: Seed
    claims: identity.TokenClaims
    base_url: str

    @property
    def group(self) -> str:
        return self.params["resourceGroupName"]

    def registry(self) -> RegistrySeed:
        name = self.params["registryName"]
        found = self.seed.registry(name, self.group)
        if found is None:
            raise _not_found("Microsoft.ContainerRegistry/registries", name, self.group)
        return found

    def cluster(self) -> ClusterSeed:
        name = self.params["resourceName"]
        found = self.seed.cluster(name, self.group)
        if found is None:
            raise _not_found("Microsoft.ContainerService/managedClusters", name, self.group)
        return found

    def save(self) -> None:
        """Persist the seed (created or changed resources) to DIR/seed.json."""
        self.seed.save(self.request.app["state_dir"] / "seed.json")


Handler = Callable[[Context], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    api_versions: frozenset[str]
    action: str  # the RBAC action ARM checks
    resource_type: str  # for NoRegisteredProviderFound messages
    handler: Handler
    in_group: bool = True  # the path names a resource group that must exist (404 ResourceGroupNotFound)


def _not_found(resource_type: str, name: str, group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", charset="utf-8")


def _registry_id(seed: Seed, registry: RegistrySeed) -> str:
    return (
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.group_of(registry)}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry.name}"
    )


def _cluster_id(seed: Seed, cluster: ClusterSeed) -> str:
    return (
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.group_of(cluster)}"
        f"/providers/Microsoft.ContainerService/managedClusters/{cluster.name}"
    )


def _location(value: Any) -> str:
    """ARM's normal form of a location ("West Europe" -> "westeurope")."""
    return str(value or "").replace(" ", "").lower()


async def _body(ctx: Context) -> dict[str, Any]:
    raw = await ctx.request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {exc}"
        ) from exc
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


# -- Microsoft.ContainerRegistry/registries ------------------------------


async def registries_get(ctx: Context) -> web.StreamResponse:
    return _json(_registry_body(ctx.seed, ctx.registry()))


def _registry_body(seed: Seed, registry: RegistrySeed) -> dict[str, Any]:
    return {
        "id": _registry_id(seed, registry),
        "name": registry.name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": registry.location,
        "tags": dict(registry.tags),
        "sku": {"name": registry.sku, "tier": registry.sku},
        "properties": {
            "loginServer": registry.login_server,
            "creationDate": registry.creation_date,
            "provisioningState": registry.provisioning_state,
            "adminUserEnabled": registry.admin_user_enabled,
            "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "lastUpdatedTime": registry.creation_date, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
            },
            "encryption": {"status": "disabled"},
            "status": None,
            "dataEndpointEnabled": False,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "networkRuleBypassAllowedForTasks": False,
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": False,
            "roleAssignmentMode": "LegacyRegistryPermissions",
        },
    }


async def registries_list_credentials(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    if not registry.admin_user_enabled:
        raise ArmError(
            400,
            "UnAuthorizedForCredentialOperations",
            f"Cannot perform credential operations for {_registry_id(ctx.seed, registry)} as admin user is disabled. "
            "Kindly enable admin user as per docs: https://docs.microsoft.com/azure/container-registry/container-registry-authentication#admin-account",
        )
    return _json(
        {
            "username": registry.name,
            "passwords": [
                {"name": name, "value": value} for name, value in zip(("password", "password2"), registry.passwords, strict=False)
            ],
        }
    )


async def registries_get_build_source_upload_url(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    relative = f"source/{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M}/{uuid.uuid4()}.tar.gz"
    url = blobs.sas_url(ctx.base_url, ctx.seed.sas_key, f"{registry.name.lower()}/{relative}", permissions="cw")
    return _json({"relativePath": relative, "uploadUrl": url})


def _source_blob(ctx: Context, registry: RegistrySeed, location: str) -> Path:
    """The uploaded archive named by `sourceLocation`: the upload's `relativePath`, or its full upload URL."""
    prefix = f"/blob/{registry.name.lower()}/"
    if location.startswith("source/"):
        blob_path = f"{registry.name.lower()}/{location}"
    elif location.startswith(ctx.base_url + prefix):
        blob_path = urllib.parse.unquote(urllib.parse.urlsplit(location).path).removeprefix("/blob/")
    else:
        raise ArmError(
            400,
            "InvalidParameter",
            f"sourceLocation '{location.split('?')[0]}' is neither the relativePath nor the uploadUrl returned by "
            "listBuildSourceUploadUrl for this registry (the imitation cannot fetch git or remote URLs).",
        )
    path = blobs.blob_file(ctx.request.app["state_dir"], blob_path)
    if not path.is_file():
        raise ArmError(400, "InvalidParameter", f"sourceLocation '{location.split('?')[0]}': nothing was uploaded there.")
    return path


async def registries_schedule_run(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    body = await _body(ctx)
    if body.get("type") != "DockerBuildRequest":
        raise ArmError(
            400, "InvalidParameter", f"run request type {body.get('type')!r}: the imitation implements DockerBuildRequest only."
        )
    for field in ("dockerFilePath", "platform"):
        if not body.get(field):
            raise ArmError(400, "InvalidParameter", f"The parameter '{field}' of the DockerBuildRequest is required.")
    if not (body["platform"] or {}).get("os"):
        raise ArmError(400, "InvalidParameter", "The parameter 'platform.os' of the DockerBuildRequest is required.")
    timeout = int(body.get("timeout") or 3600)
    if not 300 <= timeout <= 28800:
        raise ArmError(
            400, "InvalidParameter", f"The timeout {timeout} is out of range: it must be between 300 and 28800 seconds."
        )
    source = _source_blob(ctx, registry, str(body.get("sourceLocation") or ""))
    app = ctx.request.app
    store: RunStore = app["runs"]
    run_id = store.next_run_id(registry.name)
    created = now_iso()
    resource = {
        "type": "Microsoft.ContainerRegistry/registries/runs",
        "id": f"{_registry_id(ctx.seed, registry)}/runs/{run_id}",
        "name": run_id,
        "properties": {
            "runId": run_id,
            "status": "Queued",
            "lastUpdatedTime": created,
            "runType": "QuickBuild",
            "createTime": created,
            "outputImages": [],
            "platform": {"os": body["platform"].get("os"), "architecture": body["platform"].get("architecture", "amd64")}
            | ({"variant": body["platform"]["variant"]} if body["platform"].get("variant") else {}),
            "agentConfiguration": body.get("agentConfiguration") or {"cpu": 2},
            "provisioningState": "Succeeded",
            "isArchiveEnabled": bool(body.get("isArchiveEnabled", False)),
        },
    }
    log_blob = f"{registry.name.lower()}/logs/{run_id}/rawtext.log"
    log_file = blobs.blob_file(app["state_dir"], log_blob)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    private = {
        "request": {k: v for k, v in body.items() if k != "credentials"},
        "sourceFile": str(source),
        "logBlob": log_blob,
        "logFile": str(log_file),
        "loginServer": registry.login_server,
        "timeout": timeout,
        "clientId": ctx.claims.client_id,
    }
    answer = store.create(registry.name, run_id, {"resource": resource, "private": private})["resource"]
    app["executor"].start(registry.name, run_id)
    answer["type"] = "Microsoft.ContainerRegistry/registries/run"  # as RegistriesScheduleRun.json has it (singular)
    return _json(answer)


def _run(ctx: Context) -> tuple[RegistrySeed, dict[str, Any]]:
    registry = ctx.registry()
    record = ctx.request.app["runs"].get(registry.name, ctx.params["runId"])
    if record is None:
        raise ArmError(404, "ResourceNotFound", f"The run '{ctx.params['runId']}' was not found in registry '{registry.name}'.")
    return registry, record


async def runs_get(ctx: Context) -> web.StreamResponse:
    return _json(_run(ctx)[1]["resource"])


async def runs_get_log_sas_url(ctx: Context) -> web.StreamResponse:
    _, record = _run(ctx)
    return _json({"logLink": blobs.sas_url(ctx.base_url, ctx.seed.sas_key, record["private"]["logBlob"], permissions="r")})


async def runs_cancel(ctx: Context) -> web.StreamResponse:
    registry, record = _run(ctx)
    if record["resource"]["properties"]["status"] not in TERMINAL_STATUSES:
        ctx.request.app["executor"].cancel(registry.name, record["resource"]["name"])
    return web.Response(status=200)


_FILTER_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+('(?:[^']*)'|\S+)\s*$", re.IGNORECASE)
_FILTER_FIELDS = {
    "runid": "runId",
    "status": "status",
    "taskname": "task",
    "createtime": "createTime",
    "finishtime": "finishTime",
    "runtype": "runType",
}


def _run_filter(expression: str) -> Callable[[dict[str, Any]], bool]:
    clauses = []
    for text in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE) if expression.strip() else []:
        match = _FILTER_CLAUSE.match(text)
        if not match or match.group(1).lower() not in _FILTER_FIELDS:
            raise ArmError(
                400,
                "InvalidFilter",
                f"$filter clause '{text}' is not supported: use <RunId|Status|TaskName|RunType|CreateTime|FinishTime> <eq|ne|ge|gt|le|lt> <value> joined by 'and'.",
            )
        clauses.append((_FILTER_FIELDS[match.group(1).lower()], match.group(2).lower(), match.group(3).strip("'")))
    compare = {
        "eq": lambda a, b: a.lower() == b.lower(),
        "ne": lambda a, b: a.lower() != b.lower(),
        "ge": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "le": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }

    def accept(props: dict[str, Any]) -> bool:
        return all(compare[op](str(props.get(field) or ""), value) for field, op, value in clauses)

    return accept


async def runs_list(ctx: Context) -> web.StreamResponse:
    registry = ctx.registry()
    query = ctx.request.query
    accept = _run_filter(query.get("$filter", ""))
    runs = [r["resource"] for r in ctx.request.app["runs"].all(registry.name) if accept(r["resource"]["properties"])]
    runs.sort(key=lambda r: r["properties"]["createTime"], reverse=True)
    if "$top" in query:
        runs = runs[: int(query["$top"])]
    skip = int(query.get("$skipToken", "0") or 0)
    page_size = 10
    body: dict[str, Any] = {"value": runs[skip : skip + page_size]}
    if skip + page_size < len(runs):
        next_query = dict(query) | {"$skipToken": str(skip + page_size)}
        body["nextLink"] = f"{ctx.base_url}{ctx.request.path}?{urllib.parse.urlencode(next_query)}"
    return _json(body)


# -- Microsoft.ContainerService/managedClusters --------------------------


async def managed_clusters_get(ctx: Context) -> web.StreamResponse:
    return _json(_cluster_body(ctx, ctx.cluster()))


def _identity_key(seed: Seed, cluster: ClusterSeed) -> str:
    """What a cluster's identities' GUIDs derive from: its name (seeded clusters), or group/name (created ones)."""
    return f"{cluster.resource_group}/{cluster.name}" if cluster.resource_group else cluster.name


def _kubelet_object_id(seed: Seed, cluster: ClusterSeed) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, _identity_key(seed, cluster) + "/kubelet-object"))


def _cluster_body(ctx: Context, cluster: ClusterSeed) -> dict[str, Any]:
    server = _local_cluster(ctx)["server"] if ctx.request.app["kubeconfig"] else ""
    host = urllib.parse.urlsplit(server).hostname or "127.0.0.1"
    key = _identity_key(ctx.seed, cluster)
    group = ctx.seed.group_of(cluster)
    properties: dict[str, Any] = {
        "provisioningState": cluster.provisioning_state,
        "powerState": {"code": "Running"},
        "kubernetesVersion": cluster.kubernetes_version,
        "currentKubernetesVersion": cluster.kubernetes_version,
        "dnsPrefix": cluster.dns_prefix or cluster.name,
        "fqdn": host,
        "azurePortalFQDN": host,
        "agentPoolProfiles": [
            {
                "name": "nodepool1",
                "count": cluster.node_count,
                "vmSize": cluster.vm_size,
                "maxPods": 110,
                "osType": "Linux",
                "mode": "System",
                "orchestratorVersion": cluster.kubernetes_version,
                "currentOrchestratorVersion": cluster.kubernetes_version,
                "provisioningState": cluster.provisioning_state,
                "powerState": {"code": "Running"},
            }
        ],
        "maxAgentPools": 100,
        "enableRBAC": True,
        "disableLocalAccounts": False,
        "nodeResourceGroup": f"MC_{group}_{cluster.name}_{cluster.location}",
        "networkProfile": {"networkPlugin": "kubenet", "outboundType": "loadBalancer", "loadBalancerSku": "standard"},
        "servicePrincipalProfile": {"clientId": "msi"},
        "identityProfile": {
            "kubeletidentity": {
                "resourceId": f"/subscriptions/{ctx.seed.subscription_id}/resourceGroups/MC_{group}_{cluster.name}_{cluster.location}"
                f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{cluster.name}-agentpool",
                "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, key + "/kubelet")),
                "objectId": _kubelet_object_id(ctx.seed, cluster),
            }
        },
        "oidcIssuerProfile": {"enabled": cluster.oidc_issuer}
        | (
            {
                "issuerURL": f"https://{cluster.location}.oic.prod-aks.azure.com/{ctx.seed.tenant_id}/{uuid.uuid5(uuid.NAMESPACE_URL, key + '/oidc')}/"
            }
            if cluster.oidc_issuer
            else {}
        ),
        "securityProfile": {"workloadIdentity": {"enabled": cluster.workload_identity}},
    }
    if cluster.aad:
        properties["aadProfile"] = {
            "managed": True,
            "enableAzureRBAC": True,
            "tenantID": ctx.seed.tenant_id,
            "adminGroupObjectIDs": [],
        }
    return {
        "id": _cluster_id(ctx.seed, cluster),
        "name": cluster.name,
        "type": "Microsoft.ContainerService/managedClusters",
        "location": cluster.location,
        "eTag": uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:8],
        "tags": dict(cluster.tags),
        "sku": {"name": "Base", "tier": "Free"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, key + "/principal")),
            "tenantId": ctx.seed.tenant_id,
        },
        "properties": properties,
    }


def _local_cluster(ctx: Context) -> dict[str, Any]:
    """The `cluster` entry and the token user of the kubeconfig given with --kubeconfig."""
    path: Path | None = ctx.request.app["kubeconfig"]
    if path is None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            "The imitation was started without --kubeconfig, so it has no cluster credentials to hand out.",
        )
    doc = yaml.safe_load(path.read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc.get("current-context", doc["contexts"][0]["name"]))["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == current["cluster"])["cluster"]
    user = next(u for u in doc["users"] if u["name"] == current["user"])["user"]
    return {**cluster, "_user": user}


def _credential(ctx: Context, *, admin: bool) -> web.StreamResponse:
    cluster = ctx.cluster()
    local = _local_cluster(ctx)
    user_entry = local.pop("_user")
    rg = ctx.seed.group_of(cluster)
    user_name = f"{'clusterAdmin' if admin else 'clusterUser'}_{rg}_{cluster.name}"
    if cluster.aad and not admin:
        user: dict[str, Any] = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": [
                    "get-token",
                    "--environment",
                    "AzurePublicCloud",
                    "--server-id",
                    AKS_SERVER_APP_ID,
                    "--client-id",
                    KUBELOGIN_CLIENT_ID,
                    "--tenant-id",
                    ctx.seed.tenant_id,
                    "--login",
                    "devicecode",
                ],  # fmt: skip
                "env": None,
                "installHint": "\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n\n"
                "To learn more, please go to https://aka.ms/aks/kubelogin\n",
                "provideClusterInfo": False,
                "interactiveMode": "IfAvailable",
            }
        }
    else:
        user = {"token": user_entry["token"]}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": local}],
        "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": user_name}}],
        "current-context": cluster.name,
        "preferences": {},
        "users": [{"name": user_name, "user": user}],
    }
    value = base64.b64encode(yaml.safe_dump(doc, sort_keys=False).encode()).decode()
    return _json({"kubeconfigs": [{"name": "clusterAdmin" if admin else "clusterUser", "value": value}]})


async def managed_clusters_list_user(ctx: Context) -> web.StreamResponse:
    fmt = ctx.request.query.get("format")
    if fmt and fmt.lower() not in ("exec", "azure"):
        raise ArmError(400, "InvalidParameter", f"format '{fmt}' is not one of: azure, exec.")
    return _credential(ctx, admin=False)


async def managed_clusters_list_admin(ctx: Context) -> web.StreamResponse:
    return _credential(ctx, admin=True)


# -- creation: resource groups, registries, clusters (long-running), role assignments --------------------

_GROUP_NAME = re.compile(r"^[-\w._()]{1,90}$")
_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$")
_DNS_PREFIX = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-a-zA-Z0-9]{0,52}[a-zA-Z0-9]$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _known_location(value: Any, what: str) -> str:
    location = _location(value)
    if not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    if location not in LOCATIONS:
        raise ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{value}' is not available for resource type '{what}'. "
            f"List of available regions for the resource type is '{','.join(sorted(LOCATIONS))}'.",
        )
    return location


def _moved(kind: str, name: str, group: str, old: str, new: str) -> ArmError:
    """ARM's answer to a PUT that would move an existing resource to another location."""
    return ArmError(
        400,
        "InvalidResourceLocation",
        f"The resource '{name}' already exists in location '{old}' in resource group '{group}'. "
        f"A resource with the same name cannot be created in location '{new}'. Please select a new resource name.",
    )


def _tags(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict):
        raise ArmError(400, "InvalidRequestContent", "The 'tags' property must be an object of strings.")
    return {str(k): str(v) for k, v in tags.items()}


def _group_body(seed: Seed, group: GroupSeed) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{seed.subscription_id}/resourceGroups/{group.name}",
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": dict(group.tags),
        "properties": {"provisioningState": "Succeeded"},
    }


async def resource_groups_get(ctx: Context) -> web.StreamResponse:
    group = ctx.seed.group(ctx.group)
    if group is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{ctx.group}' could not be found.")
    return _json(_group_body(ctx.seed, group))


async def resource_groups_create_or_update(ctx: Context) -> web.StreamResponse:
    """Synchronous: 201 new, 200 existing (tags replaced); moving a group to another location is 409."""
    if not _GROUP_NAME.match(ctx.group) or ctx.group.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The provided resource group name '{ctx.group}' has these invalid characters: the name may hold 1-90 "
            "letters, digits, underscores, parentheses, hyphens and periods, and may not end in a period.",
        )
    body = await _body(ctx)
    location = _known_location(body.get("location"), "resourceGroups")
    existing = ctx.seed.group(ctx.group)
    if existing is not None:
        if _location(existing.location) != location:
            raise ArmError(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{body.get('location')}'. "
                f"The Resource group already exists in location '{existing.location}'.",
            )
        existing.tags = _tags(body)
        ctx.save()
        return _json(_group_body(ctx.seed, existing))
    group = GroupSeed(ctx.group, location, _tags(body))
    ctx.seed.groups.append(group)
    ctx.save()
    return _json(_group_body(ctx.seed, group), status=201)


def _start_operation(ctx: Context, *, kind: str, name: str, operation: str) -> tuple[Operation, dict[str, str]]:
    """Register a running asynchronous operation; it ends after OPERATION_SECONDS[kind] (or fails, if a
    `failOperation` fault for `operation` is pending). Returns it and the headers of the 201/200 answer."""
    app = ctx.request.app
    op = Operation(
        id=str(uuid.uuid4()),
        operation=operation,
        resource_kind=kind,
        resource_group=ctx.group,
        resource_name=name,
        start_time=now_iso(),
    )
    app["operations"][op.id] = op
    fault = app["faults"].take_operation(operation)
    asyncio.get_running_loop().call_later(app["operation_seconds"][kind], _finish_operation, app, op, fault)
    version = ctx.request.query["api-version"]
    sub = ctx.seed.subscription_id
    if kind == "registry":
        url = (
            f"{ctx.base_url}/subscriptions/{sub}/resourceGroups/{ctx.group}/providers/Microsoft.ContainerRegistry"
            f"/registries/{name}/operationStatuses/registries-{op.id}?api-version={version}"
        )
    else:
        location = ctx.seed.cluster(name, ctx.group).location  # type: ignore[union-attr]
        url = (
            f"{ctx.base_url}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}"
            f"/operationStatus/{op.id}?api-version={version}"
        )
    return op, {"Azure-AsyncOperation": url, "Retry-After": "1"}


def _finish_operation(app: web.Application, op: Operation, fault: dict[str, Any] | None) -> None:
    seed: Seed = app["seed"]
    resource = (
        seed.registry(op.resource_name, op.resource_group)
        if op.resource_kind == "registry"
        else seed.cluster(op.resource_name, op.resource_group)
    )
    op.end_time = now_iso()
    if fault is not None:
        op.status = "Failed"
        op.error = {
            "code": str(fault.get("code") or "InternalOperationError"),
            "message": str(fault.get("message") or f"The operation {op.operation} on '{op.resource_name}' failed."),
        }
    else:
        op.status = "Succeeded"
    if resource is not None:
        resource.provisioning_state = op.status
        seed.save(app["state_dir"] / "seed.json")


def finish_interrupted(seed: Seed) -> bool:
    """At start-up: resources left Creating/Updating by a stopped imitation have finished meanwhile."""
    changed = False
    resources: list[RegistrySeed | ClusterSeed] = [*seed.registries, *seed.clusters]
    for resource in resources:
        if resource.provisioning_state in ("Creating", "Updating"):
            resource.provisioning_state = "Succeeded"
            changed = True
    return changed


async def operation_status(ctx: Context) -> web.StreamResponse:
    op_id = ctx.params["operationId"].removeprefix("registries-")
    op: Operation | None = ctx.request.app["operations"].get(op_id)
    if op is None:
        raise ArmError(404, "NotFound", f"The operation '{ctx.params['operationId']}' was not found.")
    body: dict[str, Any] = {
        "id": ctx.request.path,
        "name": ctx.params["operationId"],
        "status": op.status,
        "startTime": op.start_time,
    }
    if op.end_time:
        body["endTime"] = op.end_time
    if op.error:
        body["error"] = dict(op.error)
    response = _json(body)
    if op.status == "InProgress":
        response.headers["Retry-After"] = "1"
    return response


async def registries_create(ctx: Context) -> web.StreamResponse:
    """Registries_Create: new -> 201 Creating + Azure-AsyncOperation; existing -> 200 Succeeded (sku, admin user, tags)."""
    name = ctx.params["registryName"]
    if not _REGISTRY_NAME.match(name):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The registry name '{name}' is invalid: it must be 5-50 characters long and contain only letters and digits.",
        )
    body = await _body(ctx)
    location = _known_location(body.get("location"), "registries")
    sku = str((body.get("sku") or {}).get("name") or "")
    if sku not in REGISTRY_SKUS:
        raise ArmError(
            400,
            "InvalidSku",
            f"The sku '{sku}' is invalid: it must be one of {', '.join(REGISTRY_SKUS)} (the 'sku.name' property).",
        )
    properties = body.get("properties") or {}
    admin = bool(properties.get("adminUserEnabled", False))
    existing = ctx.seed.registry(name, ctx.group)
    if existing is not None:
        if _location(existing.location) != location:
            raise _moved("registry", name, ctx.group, existing.location, location)
        if existing.provisioning_state in ("Creating", "Updating"):
            raise _in_progress("registry", name)
        existing.sku, existing.admin_user_enabled, existing.tags = sku, admin, _tags(body)
        ctx.save()
        return _json(_registry_body(ctx.seed, existing))
    elsewhere = ctx.seed.registry(name)
    if elsewhere is not None:
        raise ArmError(
            400,
            "AlreadyInUse",
            f"The registry DNS name {name.lower()}.azurecr.io is already in use. You can check if the name is already "
            "claimed using following API: https://docs.microsoft.com/en-us/rest/api/containerregistry/registries/checknameavailability",
        )
    registry = RegistrySeed(
        name=name,
        location=location,
        login_server=ctx.request.app["login_server"],
        admin_user_enabled=admin,
        creation_date=now_iso(),
        resource_group=ctx.group,
        sku=sku,
        provisioning_state="Creating",
        tags=_tags(body),
    )
    ctx.seed.registries.append(registry)
    ctx.save()
    _, headers = _start_operation(ctx, kind="registry", name=name, operation="Registries_Create")
    response = _json(_registry_body(ctx.seed, registry), status=201)
    response.headers.update(headers)
    return response


def _in_progress(kind: str, name: str) -> ArmError:
    return ArmError(
        409,
        "OperationNotAllowed",
        f"Operation is not allowed because there's an in progress operation on {kind} '{name}'. "
        "Please wait for it to finish before starting a new operation.",
    )


async def managed_clusters_create_or_update(ctx: Context) -> web.StreamResponse:
    """ManagedClusters_CreateOrUpdate: new -> 201 Creating, existing -> 200 Updating; both end by the async operation."""
    name = ctx.params["resourceName"]
    if not _CLUSTER_NAME.match(name):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The value of parameter resourceName '{name}' is invalid: 1-63 letters, digits, '-' and '_', "
            "starting and ending with a letter or digit.",
        )
    body = await _body(ctx)
    location = _known_location(body.get("location"), "managedClusters")
    properties = body.get("properties") or {}
    dns_prefix = str(properties.get("dnsPrefix") or "")
    if not dns_prefix and not properties.get("fqdnSubdomain"):
        raise ArmError(400, "InvalidParameter", "Either dnsPrefix or fqdnSubdomain must be specified (properties.dnsPrefix).")
    if dns_prefix and not _DNS_PREFIX.match(dns_prefix):
        raise ArmError(
            400,
            "InvalidDNSPrefix",
            f"The value of parameter properties.dnsPrefix '{dns_prefix}' is invalid: 1-54 letters, digits and '-', "
            "starting and ending with a letter or digit.",
        )
    pools = properties.get("agentPoolProfiles") or []
    if not any((p or {}).get("mode") == "System" for p in pools):
        raise ArmError(
            400,
            "InvalidParameter",
            "A managed cluster needs at least one agent pool of mode 'System' (properties.agentPoolProfiles).",
        )
    identity_type = str((body.get("identity") or {}).get("type") or "")
    if identity_type not in ("SystemAssigned", "UserAssigned") and not (properties.get("servicePrincipalProfile") or {}).get(
        "clientId"
    ):
        raise ArmError(
            400,
            "InvalidParameter",
            "Either a managed identity (identity.type SystemAssigned or UserAssigned) or a service principal "
            "(properties.servicePrincipalProfile) is required.",
        )
    oidc = bool((properties.get("oidcIssuerProfile") or {}).get("enabled", False))
    workload = bool(((properties.get("securityProfile") or {}).get("workloadIdentity") or {}).get("enabled", False))
    if workload and not oidc:
        raise ArmError(
            400,
            "InvalidParameter",
            "Enabling workload identity requires enabling OIDC issuer profile (properties.oidcIssuerProfile.enabled).",
        )
    system = next(p for p in pools if (p or {}).get("mode") == "System")
    existing = ctx.seed.cluster(name, ctx.group)
    if existing is not None:
        if _location(existing.location) != location:
            raise _moved("managed cluster", name, ctx.group, existing.location, location)
        if existing.provisioning_state in ("Creating", "Updating"):
            raise _in_progress("managed cluster", name)
        if existing.oidc_issuer and not oidc:
            raise ArmError(400, "InvalidParameter", "OIDC issuer cannot be disabled once it has been enabled.")
        existing.oidc_issuer, existing.workload_identity = oidc, workload
        existing.node_count = int(system.get("count") or existing.node_count)
        existing.vm_size = str(system.get("vmSize") or existing.vm_size)
        existing.tags = _tags(body)
        existing.provisioning_state = "Updating"
        cluster, status = existing, 200
    else:
        cluster = ClusterSeed(
            name=name,
            location=location,
            aad=bool((properties.get("aadProfile") or {}).get("managed", False)),
            kubernetes_version=str(properties.get("kubernetesVersion") or "1.32.0"),
            dns_prefix=dns_prefix or name,
            resource_group=ctx.group,
            oidc_issuer=oidc,
            workload_identity=workload,
            provisioning_state="Creating",
            node_count=int(system.get("count") or 3),
            vm_size=str(system.get("vmSize") or "Standard_DS2_v2"),
            tags=_tags(body),
        )
        ctx.seed.clusters.append(cluster)
        status = 201
    ctx.save()
    _, headers = _start_operation(ctx, kind="cluster", name=name, operation="ManagedClusters_CreateOrUpdate")
    response = _json(_cluster_body(ctx, cluster), status=status)
    response.headers.update(headers)
    return response


def _principals(ctx: Context) -> set[str]:
    """Object ids the imitated directory knows: the seeded principals and every cluster's identities."""
    known = {c.object_id.lower() for c in ctx.seed.clients}
    for cluster in ctx.seed.clusters:
        key = _identity_key(ctx.seed, cluster)
        known.add(_kubelet_object_id(ctx.seed, cluster))
        known.add(str(uuid.uuid5(uuid.NAMESPACE_URL, key + "/principal")))
    return known


def _role_assignment_body(assignment: RoleAssignmentSeed) -> dict[str, Any]:
    return {
        "properties": {
            "roleDefinitionId": assignment.role_definition_id,
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": assignment.created_on,
            "updatedOn": assignment.created_on,
            "createdBy": assignment.created_by,
            "updatedBy": assignment.created_by,
            "delegatedManagedIdentityResourceId": None,
            "description": None,
        },
        "id": f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": assignment.name,
    }


async def role_assignments_get(ctx: Context) -> web.StreamResponse:
    scope = _registry_id(ctx.seed, ctx.registry())
    found = ctx.seed.role_assignment(scope, ctx.params["roleAssignmentName"])
    if found is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{ctx.params['roleAssignmentName']}' is not found.")
    return _json(_role_assignment_body(found))


async def role_assignments_create(ctx: Context) -> web.StreamResponse:
    """RoleAssignments_Create at a registry's scope: idempotent by name (same content -> 201 again); the same
    principal and role under another name -> 409 RoleAssignmentExists; other content under the same name -> 400."""
    scope = _registry_id(ctx.seed, ctx.registry())
    name = ctx.params["roleAssignmentName"]
    if not _GUID.match(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    properties = (await _body(ctx)).get("properties") or {}
    role = str(properties.get("roleDefinitionId") or "")
    principal = str(properties.get("principalId") or "").lower()
    if not role or not principal:
        raise ArmError(400, "InvalidRoleAssignmentRequest", "The properties roleDefinitionId and principalId are required.")
    role_guid = role.rstrip("/").rsplit("/", 1)[-1].lower()
    prefixes = (f"/subscriptions/{ctx.seed.subscription_id}/providers/microsoft.authorization/roledefinitions/",
                "/providers/microsoft.authorization/roledefinitions/")  # fmt: skip
    if role_guid not in ROLE_DEFINITIONS or not role.lower().startswith(prefixes):
        raise ArmError(400, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{role_guid}' does not exist.")
    if principal not in _principals(ctx):
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal.replace('-', '')} does not exist in the directory {ctx.seed.tenant_id}. Check that you "
            "have the correct principal ID. If you are creating this principal and then immediately assigning a role, "
            "this error might be related to a replication delay. In this case, set the role assignment principalType "
            "property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
        )
    same_name = ctx.seed.role_assignment(scope, name)
    if same_name is not None:
        if same_name.principal_id != principal or same_name.role_definition_id.rsplit("/", 1)[-1].lower() != role_guid:
            raise ArmError(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return _json(_role_assignment_body(same_name), status=201)
    for other in ctx.seed.role_assignments:
        if (
            other.scope.lower() == scope.lower()
            and other.principal_id == principal
            and other.role_definition_id.rsplit("/", 1)[-1].lower() == role_guid
        ):
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
    assignment = RoleAssignmentSeed(
        name=name.lower(),
        scope=scope,
        role_definition_id=f"/subscriptions/{ctx.seed.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}",
        principal_id=principal,
        principal_type=str(properties.get("principalType") or "ServicePrincipal"),
        created_on=now_iso(),
        created_by=ctx.claims.object_id,
    )
    ctx.seed.role_assignments.append(assignment)
    ctx.save()
    return _json(_role_assignment_body(assignment), status=201)


# -- the routing table ---------------------------------------------------

_SUB = r"/subscriptions/(?P<subscriptionId>[^/]+)/resourceGroups/(?P<resourceGroupName>[^/]+)/providers"
_RG = r"/subscriptions/(?P<subscriptionId>[^/]+)/resourcegroups/(?P<resourceGroupName>[^/]+)"
_REG = _SUB + r"/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]+)"
_AKS = _SUB + r"/Microsoft\.ContainerService/managedClusters/(?P<resourceName>[^/]+)"
_AKS_OP = r"/subscriptions/(?P<subscriptionId>[^/]+)/providers/Microsoft\.ContainerService/locations/(?P<location>[^/]+)/operationStatus/(?P<operationId>[^/]+)"
_RA = _REG + r"/providers/Microsoft\.Authorization/roleAssignments/(?P<roleAssignmentName>[^/]+)"
_ACR, _MC = "Microsoft.ContainerRegistry/registries", "Microsoft.ContainerService/managedClusters"
_RGS, _RAS = "Microsoft.Resources/resourceGroups", "Microsoft.Authorization/roleAssignments"


def _route(
    method: str, pattern: str, operation: str, versions: frozenset[str], action: str, handler: Handler, *, in_group: bool = True
) -> Route:
    resource_type = next((t for t in (_ACR, _MC, _RAS) if action.split("/")[0] == t.split("/")[0]), _RGS)
    return Route(
        method, re.compile(pattern + "/?$", re.IGNORECASE), operation, versions, action, resource_type, handler, in_group
    )


ROUTES: list[Route] = [
    _route("GET", _RG, "ResourceGroups_Get", RESOURCE_VERSIONS, "Microsoft.Resources/subscriptions/resourceGroups/read", resource_groups_get, in_group=False),
    _route("PUT", _RG, "ResourceGroups_CreateOrUpdate", RESOURCE_VERSIONS, "Microsoft.Resources/subscriptions/resourceGroups/write", resource_groups_create_or_update, in_group=False),
    _route("GET", _REG, "Registries_Get", REGISTRY_VERSIONS, f"{_ACR}/read", registries_get),
    _route("PUT", _REG, "Registries_Create", REGISTRY_VERSIONS, f"{_ACR}/write", registries_create),
    _route("GET", _REG + r"/operationStatuses/(?P<operationId>[^/]+)", "Registries_GetOperationStatus", REGISTRY_VERSIONS, f"{_ACR}/operationStatuses/read", operation_status),
    _route("POST", _REG + "/listCredentials", "Registries_ListCredentials", REGISTRY_VERSIONS, f"{_ACR}/listCredentials/action", registries_list_credentials),
    _route("POST", _REG + "/listBuildSourceUploadUrl", "Registries_GetBuildSourceUploadUrl", TASK_VERSIONS, f"{_ACR}/listBuildSourceUploadUrl/action", registries_get_build_source_upload_url),
    _route("POST", _REG + "/scheduleRun", "Registries_ScheduleRun", TASK_VERSIONS, f"{_ACR}/scheduleRun/action", registries_schedule_run),
    _route("GET", _REG + "/runs", "Runs_List", TASK_VERSIONS, f"{_ACR}/runs/read", runs_list),
    _route("GET", _REG + r"/runs/(?P<runId>[^/]+)", "Runs_Get", TASK_VERSIONS, f"{_ACR}/runs/read", runs_get),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/listLogSasUrl", "Runs_GetLogSasUrl", TASK_VERSIONS, f"{_ACR}/runs/listLogSasUrl/action", runs_get_log_sas_url),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/cancel", "Runs_Cancel", TASK_VERSIONS, f"{_ACR}/runs/cancel/action", runs_cancel),
    _route("GET", _RA, "RoleAssignments_Get", AUTHORIZATION_VERSIONS, f"{_RAS}/read", role_assignments_get),
    _route("PUT", _RA, "RoleAssignments_Create", AUTHORIZATION_VERSIONS, f"{_RAS}/write", role_assignments_create),
    _route("GET", _AKS, "ManagedClusters_Get", AKS_VERSIONS, f"{_MC}/read", managed_clusters_get),
    _route("PUT", _AKS, "ManagedClusters_CreateOrUpdate", AKS_VERSIONS, f"{_MC}/write", managed_clusters_create_or_update),
    _route("GET", _AKS_OP, "ManagedClusters_GetOperationStatus", AKS_VERSIONS, "Microsoft.ContainerService/locations/operationStatus/read", operation_status, in_group=False),
    _route("POST", _AKS + "/listClusterUserCredential", "ManagedClusters_ListClusterUserCredentials", AKS_VERSIONS, f"{_MC}/listClusterUserCredential/action", managed_clusters_list_user),
    _route("POST", _AKS + "/listClusterAdminCredential", "ManagedClusters_ListClusterAdminCredentials", AKS_VERSIONS, f"{_MC}/listClusterAdminCredential/action", managed_clusters_list_admin),
]  # fmt: skip


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method and (m := route.pattern.match(path)):
            return route, m.groupdict()
    return None


# -- the dispatcher ------------------------------------------------------

# (code, message) of an injected 4xx fault that names neither.
_GENERIC_ERRORS = {
    400: ("BadRequest", "The request is invalid (injected fault)."),
    404: ("ResourceNotFound", "The resource was not found (injected fault)."),
    409: (
        "Conflict",
        "The request conflicts with the current state of the resource: another operation on it is in progress "
        "(injected fault). Retry once it has completed.",
    ),
}


def _authenticate(request: web.Request, seed: Seed) -> identity.TokenClaims:
    header = request.headers.get("Authorization", "")
    challenge = {
        "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The authentication failed because of missing \'Authorization\' header."'
    }
    if not header:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.", challenge)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ArmError(
            401,
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            challenge,
        )
    try:
        claims = identity.verify(seed, token.strip())
    except identity.TokenExpired as exc:
        expired = datetime.datetime.fromtimestamp(exc.expired_at, datetime.UTC)
        raise ArmError(
            401,
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{expired:%m/%d/%Y %I:%M:%S %p}' is earlier than current UTC time "
            f"'{datetime.datetime.now(datetime.UTC):%m/%d/%Y %I:%M:%S %p}'.",
            {
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The access token has expired."'
            },
        ) from None
    except identity.TokenInvalid:
        raise ArmError(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            {
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The access token is invalid."'
            },
        ) from None
    if claims.audience not in identity.ARM_AUDIENCES:
        raise ArmError(
            401,
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{claims.audience}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
        )
    if claims.tenant_id != seed.tenant_id:
        raise ArmError(
            401, "InvalidAuthenticationTokenTenant", f"The access token is from the wrong issuer '{claims.tenant_id}'."
        )
    return claims


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    seed: Seed = app["seed"]
    faults: Faults = app["faults"]
    matched = match(request.method, request.path)
    operation = matched[0].operation if matched else "Unknown"
    client_id: str | None = None
    headers = {
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Expires": "-1",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
    }
    headers["x-ms-routing-request-id"] = (
        f"WESTEUROPE:{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}:{headers['x-ms-correlation-request-id']}"
    )
    if request.method == "GET":
        headers["x-ms-ratelimit-remaining-subscription-reads"] = "11999"
    else:
        headers["x-ms-ratelimit-remaining-subscription-writes"] = "1199"
    if "x-ms-client-request-id" in request.headers:
        headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
    try:
        if matched is None:
            raise ArmError(
                404,
                "NotFound",
                f"No HTTP resource was found that matches the request URI '{request.path}' (the imitation implements: {', '.join(r.operation for r in ROUTES)}).",
            )
        route, params = matched
        claims = _authenticate(request, seed)
        client_id = claims.client_id
        version = request.query.get("api-version")
        if not version:
            raise ArmError(
                400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."
            )
        if version not in route.api_versions:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for location '{seed.location}' and API version '{version}' for type "
                f"'{route.resource_type.split('/', 1)[1]}' (operation {route.operation}). The supported api-versions are "
                f"'{', '.join(sorted(route.api_versions))}'.",
            )
        if params["subscriptionId"].lower() != seed.subscription_id.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{params['subscriptionId']}' could not be found.")
        client = seed.client(claims.client_id)
        if client is None or not client.has_access:
            scope = request.path.rstrip("/")
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{claims.client_id}' with object id '{claims.object_id}' does not have authorization to perform "
                f"action '{route.action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
                "please refresh your credentials.",
            )
        if fault := faults.take_http(route.operation):
            if fault.status == 429:
                raise ArmError(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - "
                    f"{'Read' if request.method == 'GET' else 'Write'}. For more information, see - https://aka.ms/srpthrottlinglimits",
                    {"Retry-After": str(fault.retry_after or 1)},
                )
            if fault.status < 500:  # 400/409/...: the code and message of the fault, else ARM's generic ones
                code, message = _GENERIC_ERRORS.get(fault.status, ("BadRequest", "The request is invalid."))
                raise ArmError(fault.status, fault.code or code, fault.message or message)
            raise ArmError(fault.status, "InternalServerError" if fault.status == 500 else "ServiceUnavailable",
                           "Encountered internal server error. Diagnostic information: timestamp "
                           f"'{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}', subscription id '{seed.subscription_id}', "
                           f"tracking id '{headers['x-ms-request-id']}', request correlation id '{headers['x-ms-correlation-request-id']}'.",
                           {"Retry-After": str(fault.retry_after)} if fault.retry_after else None)  # fmt: skip
        if route.in_group and seed.group(params["resourceGroupName"]) is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{params['resourceGroupName']}' could not be found.")
        base_url = app["base_url"]
        response = await route.handler(Context(request, params, seed, claims, base_url))
    except ArmError as err:
        response = _json({"error": {"code": err.code, "message": err.message}}, status=err.status)
        response.headers.update(err.headers)
        response.headers["x-ms-failure-cause"] = "gateway" if err.status in (401, 403, 429) else "service"
    response.headers.update(headers)
    faults.record(operation=operation, method=request.method, path=request.path, status=response.status, client_id=client_id)
    return response
