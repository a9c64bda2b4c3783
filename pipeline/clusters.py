"""One way to reach the cluster a ClusterRef names, for the activities and the CLI alike.

Target local (or any kubeconfig): `kube.connect`. Target aks: the kubeconfig (and token) from the
AKS API, kept by the process for a few minutes (`pipeline.azure.aks`, imported only then,
so the CLI on target local never loads the Azure SDKs).
"""

from __future__ import annotations

from pipeline import kube
from pipeline.models import ClusterRef


def connect(cluster: ClusterRef, *, patient: bool = False) -> kube.KubeClient:
    """`patient`: a CLI command, with no heartbeat to keep: wait out ARM's throttling of the AKS credential
    call for up to two minutes (an activity waits 15 s, then its retry policy takes over)."""
    if cluster.aks is not None:
        from pipeline.azure import aks

        return aks.connect(cluster.aks, context=cluster.context, throttled_wait=120 if patient else 15)
    return kube.connect(kubeconfig=cluster.kubeconfig, context=cluster.context)
