"""Azure Resource Manager: the routing table, the checks ARM makes before a provider sees a request, and the handlers.

A request under `/subscriptions/` goes through, in ARM's order: route
(case-insensitive, like ARM) -> bearer token (401) -> `api-version` for that
operation (400) -> subscription (404) -> role check (403) -> injected faults
(429/500) -> resource group (404) -> the handler (which answers 404 for a
missing resource). Every answer carries ARM's headers. To add an operation,
add a `Route` to `ROUTES` (a later issue adds PUT/GET/LRO creation).
"""

from __future__ import annotations

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
from bootstrap.azure_arm.state import AKS_SERVER_APP_ID, TERMINAL_STATUSES, ClusterSeed, RegistrySeed, RunStore, Seed

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

    def registry(self) -> RegistrySeed:
        name = self.params["registryName"]
        found = self.seed.registry(name)
        if found is None:
            raise _not_found("Microsoft.ContainerRegistry/registries", name, self.seed.resource_group)
        return found

    def cluster(self) -> ClusterSeed:
        name = self.params["resourceName"]
        found = self.seed.cluster(name)
        if found is None:
            raise _not_found("Microsoft.ContainerService/managedClusters", name, self.seed.resource_group)
        return found


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
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry.name}"
    )


def _cluster_id(seed: Seed, cluster: ClusterSeed) -> str:
    return (
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.resource_group}"
        f"/providers/Microsoft.ContainerService/managedClusters/{cluster.name}"
    )


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
    registry = ctx.registry()
    return _json(
        {
            "id": _registry_id(ctx.seed, registry),
            "name": registry.name,
            "type": "Microsoft.ContainerRegistry/registries",
            "location": registry.location,
            "tags": {},
            "sku": {"name": "Standard", "tier": "Standard"},
            "properties": {
                "loginServer": registry.login_server,
                "creationDate": registry.creation_date,
                "provisioningState": "Succeeded",
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
    )


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
    cluster = ctx.cluster()
    server = _local_cluster(ctx)["server"] if ctx.request.app["kubeconfig"] else ""
    host = urllib.parse.urlsplit(server).hostname or "127.0.0.1"
    properties: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "powerState": {"code": "Running"},
        "kubernetesVersion": cluster.kubernetes_version,
        "currentKubernetesVersion": cluster.kubernetes_version,
        "dnsPrefix": cluster.dns_prefix or cluster.name,
        "fqdn": host,
        "azurePortalFQDN": host,
        "agentPoolProfiles": [
            {
                "name": "nodepool1",
                "count": 1,
                "vmSize": "Standard_D2s_v3",
                "maxPods": 110,
                "osType": "Linux",
                "mode": "System",
                "orchestratorVersion": cluster.kubernetes_version,
                "currentOrchestratorVersion": cluster.kubernetes_version,
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running"},
            }
        ],
        "maxAgentPools": 100,
        "enableRBAC": True,
        "disableLocalAccounts": False,
        "nodeResourceGroup": f"MC_{ctx.seed.resource_group}_{cluster.name}_{cluster.location}",
        "networkProfile": {"networkPlugin": "kubenet", "outboundType": "loadBalancer", "loadBalancerSku": "standard"},
        "servicePrincipalProfile": {"clientId": "msi"},
        "identityProfile": {
            "kubeletidentity": {
                "resourceId": f"/subscriptions/{ctx.seed.subscription_id}/resourceGroups/MC_{ctx.seed.resource_group}_{cluster.name}_{cluster.location}"
                f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{cluster.name}-agentpool",
                "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, cluster.name + "/kubelet")),
                "objectId": str(uuid.uuid5(uuid.NAMESPACE_URL, cluster.name + "/kubelet-object")),
            }
        },
    }
    if cluster.aad:
        properties["aadProfile"] = {
            "managed": True,
            "enableAzureRBAC": True,
            "tenantID": ctx.seed.tenant_id,
            "adminGroupObjectIDs": [],
        }
    return _json(
        {
            "id": _cluster_id(ctx.seed, cluster),
            "name": cluster.name,
            "type": "Microsoft.ContainerService/managedClusters",
            "location": cluster.location,
            "eTag": uuid.uuid5(uuid.NAMESPACE_URL, cluster.name).hex[:8],
            "tags": {},
            "sku": {"name": "Base", "tier": "Free"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, cluster.name + "/principal")),
                "tenantId": ctx.seed.tenant_id,
            },
            "properties": properties,
        }
    )


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
    rg = ctx.seed.resource_group
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


# -- the routing table ---------------------------------------------------

_SUB = r"/subscriptions/(?P<subscriptionId>[^/]+)/resourceGroups/(?P<resourceGroupName>[^/]+)/providers"
_REG = _SUB + r"/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]+)"
_AKS = _SUB + r"/Microsoft\.ContainerService/managedClusters/(?P<resourceName>[^/]+)"
_ACR, _MC = "Microsoft.ContainerRegistry/registries", "Microsoft.ContainerService/managedClusters"


def _route(method: str, pattern: str, operation: str, versions: frozenset[str], action: str, handler: Handler) -> Route:
    resource_type = _ACR if action.startswith(_ACR) else _MC
    return Route(method, re.compile(pattern + "/?$", re.IGNORECASE), operation, versions, action, resource_type, handler)


ROUTES: list[Route] = [
    _route("GET", _REG, "Registries_Get", REGISTRY_VERSIONS, f"{_ACR}/read", registries_get),
    _route("POST", _REG + "/listCredentials", "Registries_ListCredentials", REGISTRY_VERSIONS, f"{_ACR}/listCredentials/action", registries_list_credentials),
    _route("POST", _REG + "/listBuildSourceUploadUrl", "Registries_GetBuildSourceUploadUrl", TASK_VERSIONS, f"{_ACR}/listBuildSourceUploadUrl/action", registries_get_build_source_upload_url),
    _route("POST", _REG + "/scheduleRun", "Registries_ScheduleRun", TASK_VERSIONS, f"{_ACR}/scheduleRun/action", registries_schedule_run),
    _route("GET", _REG + "/runs", "Runs_List", TASK_VERSIONS, f"{_ACR}/runs/read", runs_list),
    _route("GET", _REG + r"/runs/(?P<runId>[^/]+)", "Runs_Get", TASK_VERSIONS, f"{_ACR}/runs/read", runs_get),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/listLogSasUrl", "Runs_GetLogSasUrl", TASK_VERSIONS, f"{_ACR}/runs/listLogSasUrl/action", runs_get_log_sas_url),
    _route("POST", _REG + r"/runs/(?P<runId>[^/]+)/cancel", "Runs_Cancel", TASK_VERSIONS, f"{_ACR}/runs/cancel/action", runs_cancel),
    _route("GET", _AKS, "ManagedClusters_Get", AKS_VERSIONS, f"{_MC}/read", managed_clusters_get),
    _route("POST", _AKS + "/listClusterUserCredential", "ManagedClusters_ListClusterUserCredentials", AKS_VERSIONS, f"{_MC}/listClusterUserCredential/action", managed_clusters_list_user),
    _route("POST", _AKS + "/listClusterAdminCredential", "ManagedClusters_ListClusterAdminCredentials", AKS_VERSIONS, f"{_MC}/listClusterAdminCredential/action", managed_clusters_list_admin),
]  # fmt: skip


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method and (m := route.pattern.match(path)):
            return route, m.groupdict()
    return None


# -- the dispatcher ------------------------------------------------------


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
            raise ArmError(fault.status, "InternalServerError" if fault.status == 500 else "ServiceUnavailable",
                           "Encountered internal server error. Diagnostic information: timestamp "
                           f"'{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}', subscription id '{seed.subscription_id}', "
                           f"tracking id '{headers['x-ms-request-id']}', request correlation id '{headers['x-ms-correlation-request-id']}'.",
                           {"Retry-After": str(fault.retry_after)} if fault.retry_after else None)  # fmt: skip
        if params["resourceGroupName"].lower() != seed.resource_group.lower():
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
