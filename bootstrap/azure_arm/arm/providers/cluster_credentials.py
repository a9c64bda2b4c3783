"""Microsoft.ContainerService/managedClusters credentials: ManagedClusters_ListCluster{User,Admin}Credentials.

Every imitated cluster hands out the local cluster's kubeconfig (`--kubeconfig`), renamed as AKS names it;
an Entra ID (AAD) cluster's user credentials run `kubelogin` instead of carrying the token.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bootstrap.azure_arm.arm.context import ArmError, Context, json_response
from bootstrap.azure_arm.state import AKS_SERVER_APP_ID

KUBELOGIN_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"  # the Azure CLI's public client, what AKS puts in exec kubeconfigs


def local_cluster(ctx: Context) -> dict[str, Any]:
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


def _kubelogin_user(tenant_id: str) -> dict[str, Any]:
    """The exec user AKS returns in an Entra ID cluster's user kubeconfig."""
    return {
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
                tenant_id,
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


def _credential(ctx: Context, *, admin: bool) -> web.StreamResponse:
    cluster = ctx.cluster()
    local = local_cluster(ctx)
    user_entry = local.pop("_user")
    rg = ctx.seed.group_of(cluster)
    user_name = f"{'clusterAdmin' if admin else 'clusterUser'}_{rg}_{cluster.name}"
    if cluster.aad and not admin:
        user: dict[str, Any] = _kubelogin_user(ctx.seed.tenant_id)
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
    return json_response({"kubeconfigs": [{"name": "clusterAdmin" if admin else "clusterUser", "value": value}]})


async def managed_clusters_list_user(ctx: Context) -> web.StreamResponse:
    fmt = ctx.request.query.get("format")
    if fmt and fmt.lower() not in ("exec", "azure"):
        raise ArmError(400, "InvalidParameter", f"format '{fmt}' is not one of: azure, exec.")
    return _credential(ctx, admin=False)


async def managed_clusters_list_admin(ctx: Context) -> web.StreamResponse:
    return _credential(ctx, admin=True)
