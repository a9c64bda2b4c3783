"""Microsoft.ContainerService/managedClusters: ManagedClusters_Get, ManagedClusters_CreateOrUpdate and
ManagedClusters_Delete (long-running).

Credentials (listClusterUserCredential, listClusterAdminCredential) are in cluster_credentials.py. A cluster's
identities (system-assigned principal, kubelet identity) are GUIDs derived from its name, so they are stable
across restarts and known to role assignments (role_assignments.py).
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bootstrap.azure_arm.arm import creation
from bootstrap.azure_arm.arm.context import ArmError, Context, json_response, read_body
from bootstrap.azure_arm.arm.operations import delete_settled, in_progress, start_operation
from bootstrap.azure_arm.arm.providers.cluster_credentials import local_cluster
from bootstrap.azure_arm.state import ClusterSeed, Seed

_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$")
_DNS_PREFIX = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-a-zA-Z0-9]{0,52}[a-zA-Z0-9]$")


def cluster_id(seed: Seed, cluster: ClusterSeed) -> str:
    return (
        f"/subscriptions/{seed.subscription_id}/resourceGroups/{seed.group_of(cluster)}"
        f"/providers/Microsoft.ContainerService/managedClusters/{cluster.name}"
    )


def identity_key(seed: Seed, cluster: ClusterSeed) -> str:
    """What a cluster's identities' GUIDs derive from: its name (seeded clusters), or group/name (created ones)."""
    return f"{cluster.resource_group}/{cluster.name}" if cluster.resource_group else cluster.name


def kubelet_object_id(seed: Seed, cluster: ClusterSeed) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, identity_key(seed, cluster) + "/kubelet-object"))


def principal_id(seed: Seed, cluster: ClusterSeed) -> str:
    """The object id of the cluster's system-assigned managed identity."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, identity_key(seed, cluster) + "/principal"))


# -- the cluster as ARM answers it -----------------------------------------


def _agent_pool(cluster: ClusterSeed) -> dict[str, Any]:
    return {
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


def _identity_profile(seed: Seed, cluster: ClusterSeed, group: str) -> dict[str, Any]:
    return {
        "kubeletidentity": {
            "resourceId": f"/subscriptions/{seed.subscription_id}/resourceGroups/MC_{group}_{cluster.name}_{cluster.location}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{cluster.name}-agentpool",
            "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, identity_key(seed, cluster) + "/kubelet")),
            "objectId": kubelet_object_id(seed, cluster),
        }
    }


def _oidc_issuer_profile(seed: Seed, cluster: ClusterSeed, local_issuer: str | None) -> dict[str, Any]:
    """With --kubeconfig, the issuer is the local cluster's (its discovery document's `issuer`, the `iss` of its
    ServiceAccount tokens: federated credentials must name it byte for byte); without, an AKS-shaped URL."""
    profile: dict[str, Any] = {"enabled": cluster.oidc_issuer}
    if cluster.oidc_issuer and local_issuer:
        profile["issuerURL"] = local_issuer
    elif cluster.oidc_issuer:
        issuer = uuid.uuid5(uuid.NAMESPACE_URL, identity_key(seed, cluster) + "/oidc")
        profile["issuerURL"] = f"https://{cluster.location}.oic.prod-aks.azure.com/{seed.tenant_id}/{issuer}/"
    return profile


def _cluster_properties(ctx: Context, cluster: ClusterSeed) -> dict[str, Any]:
    server = local_cluster(ctx)["server"] if ctx.request.app["kubeconfig"] else ""
    host = urllib.parse.urlsplit(server).hostname or "127.0.0.1"
    group = ctx.seed.group_of(cluster)
    properties: dict[str, Any] = {
        "provisioningState": cluster.provisioning_state,
        "powerState": {"code": "Running"},
        "kubernetesVersion": cluster.kubernetes_version,
        "currentKubernetesVersion": cluster.kubernetes_version,
        "dnsPrefix": cluster.dns_prefix or cluster.name,
        "fqdn": host,
        "azurePortalFQDN": host,
        "agentPoolProfiles": [_agent_pool(cluster)],
        "maxAgentPools": 100,
        "enableRBAC": True,
        "disableLocalAccounts": False,
        "nodeResourceGroup": f"MC_{group}_{cluster.name}_{cluster.location}",
        "networkProfile": {"networkPlugin": "kubenet", "outboundType": "loadBalancer", "loadBalancerSku": "standard"},
        "servicePrincipalProfile": {"clientId": "msi"},
        "identityProfile": _identity_profile(ctx.seed, cluster, group),
        "oidcIssuerProfile": _oidc_issuer_profile(ctx.seed, cluster, ctx.request.app["oidc"].cluster_issuer()),
        "securityProfile": {"workloadIdentity": {"enabled": cluster.workload_identity}},
    }
    if cluster.aad:
        properties["aadProfile"] = {
            "managed": True,
            "enableAzureRBAC": True,
            "tenantID": ctx.seed.tenant_id,
            "adminGroupObjectIDs": [],
        }
    return properties


def cluster_body(ctx: Context, cluster: ClusterSeed) -> dict[str, Any]:
    properties = _cluster_properties(ctx, cluster)
    return {
        "id": cluster_id(ctx.seed, cluster),
        "name": cluster.name,
        "type": "Microsoft.ContainerService/managedClusters",
        "location": cluster.location,
        "eTag": uuid.uuid5(uuid.NAMESPACE_URL, identity_key(ctx.seed, cluster)).hex[:8],
        "tags": dict(cluster.tags),
        "sku": {"name": "Base", "tier": "Free"},
        "identity": {"type": "SystemAssigned", "principalId": principal_id(ctx.seed, cluster), "tenantId": ctx.seed.tenant_id},
        "properties": properties,
    }


async def managed_clusters_get(ctx: Context) -> web.StreamResponse:
    return json_response(cluster_body(ctx, ctx.cluster()))


# -- ManagedClusters_CreateOrUpdate ----------------------------------------


@dataclass(frozen=True)
class _CreateRequest:
    """A ManagedClusters_CreateOrUpdate body, checked as AKS checks it."""

    body: dict[str, Any]
    properties: dict[str, Any]
    location: str
    dns_prefix: str
    system_pool: dict[str, Any]
    oidc: bool
    workload: bool


def _check_name(name: str) -> None:
    if not _CLUSTER_NAME.match(name):
        raise ArmError(
            400,
            "InvalidParameter",
            f"The value of parameter resourceName '{name}' is invalid: 1-63 letters, digits, '-' and '_', "
            "starting and ending with a letter or digit.",
        )


def _dns_prefix(properties: dict[str, Any]) -> str:
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
    return dns_prefix


def _check_pools_and_identity(body: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """A System agent pool (returned) and a managed identity or service principal are required."""
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
    return next(p for p in pools if (p or {}).get("mode") == "System")


def _oidc_and_workload_identity(properties: dict[str, Any]) -> tuple[bool, bool]:
    oidc = bool((properties.get("oidcIssuerProfile") or {}).get("enabled", False))
    workload = bool(((properties.get("securityProfile") or {}).get("workloadIdentity") or {}).get("enabled", False))
    if workload and not oidc:
        raise ArmError(
            400,
            "InvalidParameter",
            "Enabling workload identity requires enabling OIDC issuer profile (properties.oidcIssuerProfile.enabled).",
        )
    return oidc, workload


async def _create_request(ctx: Context, name: str) -> _CreateRequest:
    _check_name(name)
    body = await read_body(ctx)
    location = creation.known_location(body.get("location"), "managedClusters")
    properties = body.get("properties") or {}
    dns_prefix = _dns_prefix(properties)
    system = _check_pools_and_identity(body, properties)
    oidc, workload = _oidc_and_workload_identity(properties)
    return _CreateRequest(body, properties, location, dns_prefix, system, oidc, workload)


def _update(ctx: Context, existing: ClusterSeed, wanted: _CreateRequest) -> ClusterSeed:
    """The existing cluster, changed as asked and `Updating`."""
    name = ctx.params["resourceName"]
    if creation.normal_location(existing.location) != wanted.location:
        raise creation.moved("managed cluster", name, ctx.group, existing.location, wanted.location)
    if existing.provisioning_state in ("Creating", "Updating"):
        raise in_progress("managed cluster", name)
    if existing.oidc_issuer and not wanted.oidc:
        raise ArmError(400, "InvalidParameter", "OIDC issuer cannot be disabled once it has been enabled.")
    existing.oidc_issuer, existing.workload_identity = wanted.oidc, wanted.workload
    existing.node_count = int(wanted.system_pool.get("count") or existing.node_count)
    existing.vm_size = str(wanted.system_pool.get("vmSize") or existing.vm_size)
    existing.tags = creation.tags(wanted.body)
    existing.provisioning_state = "Updating"
    return existing


def _new(ctx: Context, wanted: _CreateRequest) -> ClusterSeed:
    """A new cluster, `Creating`, added to the seed."""
    name = ctx.params["resourceName"]
    cluster = ClusterSeed(
        name=name,
        location=wanted.location,
        aad=bool((wanted.properties.get("aadProfile") or {}).get("managed", False)),
        kubernetes_version=str(wanted.properties.get("kubernetesVersion") or "1.32.0"),
        dns_prefix=wanted.dns_prefix or name,
        resource_group=ctx.group,
        oidc_issuer=wanted.oidc,
        workload_identity=wanted.workload,
        provisioning_state="Creating",
        node_count=int(wanted.system_pool.get("count") or 3),
        vm_size=str(wanted.system_pool.get("vmSize") or "Standard_DS2_v2"),
        tags=creation.tags(wanted.body),
    )
    ctx.seed.clusters.append(cluster)
    return cluster


async def managed_clusters_create_or_update(ctx: Context) -> web.StreamResponse:
    """ManagedClusters_CreateOrUpdate: new -> 201 Creating, existing -> 200 Updating; both end by the async operation."""
    name = ctx.params["resourceName"]
    wanted = await _create_request(ctx, name)
    existing = ctx.seed.cluster(name, ctx.group)
    if existing is not None:
        cluster, status = _update(ctx, existing, wanted), 200
    else:
        cluster, status = _new(ctx, wanted), 201
    ctx.save()
    _, headers = start_operation(ctx, kind="cluster", name=name, operation="ManagedClusters_CreateOrUpdate")
    response = json_response(cluster_body(ctx, cluster), status=status)
    response.headers.update(headers)
    return response


async def managed_clusters_delete(ctx: Context) -> web.StreamResponse:
    """ManagedClustersDelete.json: 204 absent; else 202 + `location` (an operationresults URL under the cluster's
    location), provisioningState Deleting until the cluster is gone."""
    cluster = ctx.seed.cluster(ctx.params["resourceName"], ctx.group)
    if cluster is None:
        return web.Response(status=204)
    sub = ctx.seed.subscription_id
    location = (
        f"{ctx.base_url}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{cluster.location}/operationresults"
    )
    return delete_settled(ctx, cluster, kind="cluster", operation="ManagedClusters_Delete", location=location)
