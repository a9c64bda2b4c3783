"""The node: scheduler and kubelet running pods as Docker containers (see kubelet.py and runtime.py)."""

from bootstrap.cluster.kubelet.kubelet import Kubelet
from bootstrap.cluster.kubelet.podips import NETWORK as POD_NETWORK

__all__ = ["POD_NETWORK", "Kubelet"]
