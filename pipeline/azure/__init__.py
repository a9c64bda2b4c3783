"""The pipeline's Azure layer: the only package that imports `azure.*`.

    from pipeline.azure import acr, aks
    with acr.session(acr.Registry(subscription_id=..., resource_group=..., name=..., endpoint=...)) as s:
        run = s.schedule_docker_build(...)
    kc = aks.connect(AksClusterRef(...))          # a pipeline.kube.KubeClient

Modules: `credentials` (DefaultAzureCredential, CA bundle, custom authority),
`clients` (management clients: endpoint, API version, retries), `acr` (ACR
Tasks and registry credentials), `aks` (kubeconfigs, kubelogin replacement),
`errors` (the `AzureError` tree, translated from azure.core in one place),
`identities` (the workload identity's public ids, for rendering the
pipeline worker), `provision` (`pipeline bootstrap --azure`: ensure the resource group, registry,
AKS cluster, AcrPull and the pipeline worker's workload identity exist; imported only by that command, so the worker
never loads azure-mgmt-resource/-authorization).
Callers get frozen dataclasses and `AzureError`s, never SDK models or
azure.core exceptions.
"""

from pipeline.azure.errors import (
    AcrRunFailed,
    AzureBadRequest,
    AzureError,
    AzureForbidden,
    AzureNotFound,
    AzureThrottled,
    AzureUnauthorized,
    AzureUnavailable,
)

NON_RETRYABLE_ERRORS = ["AzureUnauthorized", "AzureForbidden", "AzureNotFound", "AzureBadRequest", "AcrRunFailed"]

__all__ = [
    "NON_RETRYABLE_ERRORS",
    "AcrRunFailed",
    "AzureBadRequest",
    "AzureError",
    "AzureForbidden",
    "AzureNotFound",
    "AzureThrottled",
    "AzureUnauthorized",
    "AzureUnavailable",
]
