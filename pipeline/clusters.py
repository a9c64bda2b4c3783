"""One way to reach the cluster a ClusterRef names, for the activities and the CLI alike.

Target local (or any kubeconfig): `kube.connect`. Target aks: a fresh kubeconfig
(and token) from the AKS API per call (`pipeline.azure.aks`, imported only then,
so the CLI on target local never loads the Azure SDKs).
"""

from __future__ import annotations

from pipeline import kube
from pipeline.models import ClusterRef


def connect(cluster: ClusterRef) -> kube.KubeClient:
    if cluster.aks is not None:
        from pipeline.azure import aks

        return aks.connect(cluster.aks, context=cluster.context)
    return kube.connect(kubeconfig=cluster.kubeconfig, context=cluster.context)
