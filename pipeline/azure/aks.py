"""AKS access: a kubeconfig from the AKS API, made usable without the Azure CLI or kubelogin.

    kc = aks.connect(cluster, context="")           # a pipeline.kube.KubeClient, as kube.connect gives
    with aks.kubeconfig_file(cluster) as path:      # or: a 0600 temp file, deleted on exit
        ...

`ManagedClusters_ListClusterUserCredentials` (or `...AdminCredentials` with
`[aks].admin_credentials`) returns the kubeconfig. For an Entra ID (AAD)
cluster its user entry is an `exec` plugin running `kubelogin`, which the
pipeline worker's image does not have (and which would prompt for a device
code). That entry is replaced with a bearer token from this worker's own Azure
identity for the AKS server scope (`6dae42f8-.../.default`).

ARM cost: `ManagedClusters_ListClusterUserCredentials` is an ARM write (a POST
action), and ARM's per-principal write bucket is the smallest (200, refilled at
10 a second). Every activity needs the cluster, so the worker process keeps each
cluster's kubeconfig in memory for `KUBECONFIG_TTL_SECONDS` and concurrent
activities share one fetch: 20 deployments at once cost a few credential calls,
not a hundred. It is kept in this process's memory only, never on disk beyond
`kubeconfig_file`'s block, never logged.

Token lifetime: an AAD cluster's user token is not part of what is kept: it is
asked of azure-identity on every `usable_kubeconfig`, and azure-identity hands out a cached token
only while more than five minutes of it remain, so each call starts with a
token valid for at least that long. A call that outlives it is covered too:
`connect` installs a kubernetes client `refresh_api_key_hook` that re-asks
the credential before every request (a cache hit until the token is within
five minutes of expiry, then a fresh one).

The kubeconfig holds a credential (token or client key), so it only ever
exists as a private temp file for the duration of `kubeconfig_file`, and is
never logged nor returned to a workflow.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from pipeline import kube
from pipeline.azure import acr
from pipeline.azure.clients import aks_client
from pipeline.azure.credentials import AKS_SCOPE, default_credential
from pipeline.azure.errors import AzureError, Resource, azure_errors
from pipeline.models import AksClusterRef


def _resource(cluster: AksClusterRef) -> Resource:
    return Resource("AKS cluster", cluster.cluster_name, cluster.resource_group, cluster.subscription_id, "[aks].cluster_name")


KUBECONFIG_TTL_SECONDS = 300.0
# cluster -> (expires, kubeconfig, the credential that fetched it): kept only for that same identity
# (credentials.reset() after an identity change makes a new credential object, so the next call asks again).
_kept: dict[AksClusterRef, tuple[float, bytes, object]] = {}
_fetching: dict[AksClusterRef, threading.Lock] = {}
_kept_lock = threading.Lock()


def fetch_kubeconfig(cluster: AksClusterRef, *, throttled_wait: float = 15) -> bytes:
    """The cluster's kubeconfig as AKS returns it, kept in memory for KUBECONFIG_TTL_SECONDS (one fetch at a time
    per cluster: concurrent callers wait for it instead of asking ARM too)."""
    with _kept_lock:
        lock = _fetching.setdefault(cluster, threading.Lock())
    with lock:
        who = default_credential()
        kept = _kept.get(cluster)
        if kept is not None and kept[0] > time.monotonic() and kept[2] is who:
            return kept[1]
        # `throttled_wait`: how long to wait out ARM's write bucket (under an activity's 20 s heartbeat timeout: 15 s,
        # then its retry policy; a CLI command longer).
        raw = acr.unthrottled(
            lambda: _fetch_kubeconfig(cluster), say=lambda _: None, first_wait=1.0, give_up_seconds=throttled_wait
        )
        _kept[cluster] = (time.monotonic() + KUBECONFIG_TTL_SECONDS, raw, who)
        return raw


def forget_kubeconfigs() -> None:
    """Drop every kept kubeconfig: the next call asks AKS again (tests that count those calls)."""
    with _kept_lock:
        _kept.clear()


def _fetch_kubeconfig(cluster: AksClusterRef) -> bytes:
    """The cluster's kubeconfig as AKS returns it (user or admin credentials), as YAML bytes."""
    with (
        azure_errors(_resource(cluster)),
        aks_client(subscription_id=cluster.subscription_id, endpoint=cluster.endpoint) as client,
    ):
        ops = client.managed_clusters
        if cluster.admin_credentials:
            result = ops.list_cluster_admin_credentials(cluster.resource_group, cluster.cluster_name)
        else:
            result = ops.list_cluster_user_credentials(cluster.resource_group, cluster.cluster_name)
    for entry in result.kubeconfigs or []:
        if entry.value:
            return bytes(entry.value)
    raise AzureError(f"{_resource(cluster).describe()}: the AKS API returned no kubeconfig; check the cluster is running")


def uses_kubelogin(user: dict[str, Any]) -> bool:
    exec_entry = user.get("exec") or {}
    return os.path.basename(str(exec_entry.get("command", ""))) == "kubelogin"


def aks_token() -> str:
    """A bearer token for the AKS AAD server application, from this worker's Azure identity."""
    with azure_errors(Resource("AKS token", AKS_SCOPE, "-", "-")):
        return default_credential().get_token(AKS_SCOPE).token


def usable_kubeconfig(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The kubeconfig with every kubelogin exec user replaced by an azure-identity token; and whether it was AAD."""
    doc: dict[str, Any] = yaml.safe_load(raw)
    aad = False
    for entry in doc.get("users") or []:
        user = entry.get("user") or {}
        if uses_kubelogin(user):
            entry["user"] = {"token": aks_token()}
            aad = True
    return doc, aad


@contextmanager
def kubeconfig_file(cluster: AksClusterRef) -> Iterator[str]:
    """A private (0600) temp kubeconfig for `cluster`, deleted when the block ends."""
    doc, _ = usable_kubeconfig(fetch_kubeconfig(cluster))
    with _private_file(doc) as path:
        yield path


@contextmanager
def _private_file(doc: dict[str, Any]) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="aks-kubeconfig-", suffix=".yaml")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        yield path
    finally:
        os.unlink(path)


def connect(cluster: AksClusterRef, *, context: str = "", throttled_wait: float = 15) -> kube.KubeClient:
    """A KubeClient for the AKS cluster; for AAD clusters its token is re-asked of azure-identity per request."""
    doc, aad = usable_kubeconfig(fetch_kubeconfig(cluster, throttled_wait=throttled_wait))
    with _private_file(doc) as path:
        kc = kube.connect(kubeconfig=path, context=context)  # reads the file now; it is deleted right after
    if aad:
        configuration = kc.api.configuration

        def refresh(conf: Any) -> None:
            conf.api_key["BearerToken"] = "Bearer " + aks_token()

        configuration.refresh_api_key_hook = refresh
    return kc
