"""The kubelet's own Node object: registered at start, its status heartbeat refreshed every 40 s.

What a kubelet reports about the machine: labels (hostname, os, arch), capacity and
allocatable (cpu, memory from /proc/meminfo, pods, ephemeral storage of the state
dir's filesystem), nodeInfo (kernel, OS image, `docker://<engine version>`, kubelet
version), addresses and the four conditions a healthy node carries.
"""

from __future__ import annotations

import ipaddress
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootstrap.cluster.store import Obj, now_rfc3339

KUBELET_VERSION = "v1.32.0"
MAX_PODS = "110"
HEARTBEAT_SECONDS = 40.0  # node status (nodeStatusUpdateFrequency as kubelet posted it before leases)
LEASE_SECONDS = 40  # the kube-node-lease Lease: renewed every quarter of its duration
LEASE_NAMESPACE = "kube-node-lease"
_EVICTION_MEMORY_KI = 100 * 1024  # kubelet's default hard eviction threshold memory.available<100Mi
_EVICTION_NODEFS = 0.10  # and nodefs.available<10%

# type, reason, message; all False but Ready
CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def arch() -> str:
    """GOARCH of this machine, as kubelet reports it."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError):
        return 8 * 2**20


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def _storage_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_blocks * st.f_frsize


def labels(node_name: str) -> dict[str, str]:
    return {
        "beta.kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
    }


def conditions(now: str, previous: list[Obj] | None = None) -> list[Obj]:
    """The conditions with lastHeartbeatTime `now`; lastTransitionTime kept while a status stays the same."""
    before = {c.get("type"): c for c in previous or []}
    result = []
    for type_, status, reason, message in CONDITIONS:
        old = before.get(type_) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        result.append(
            {
                "type": type_,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": since or now,
                "reason": reason,
                "message": message,
            }
        )
    return result


def node_status(
    node_name: str, *, state_dir: Path, runtime_version: str, previous: Obj | None = None, now: str | None = None
) -> Obj:
    now = now or now_rfc3339()
    cpus = str(os.cpu_count() or 1)
    mem = memory_ki()
    storage = _storage_bytes(state_dir)
    capacity = {
        "cpu": cpus,
        "ephemeral-storage": f"{storage // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{mem}Ki",
        "pods": MAX_PODS,
    }
    allocatable = dict(
        capacity,
        **{"ephemeral-storage": str(int(storage * (1 - _EVICTION_NODEFS))), "memory": f"{max(0, mem - _EVICTION_MEMORY_KI)}Ki"},
    )
    uname = platform.uname()
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions(now, (previous or {}).get("conditions")),
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release,
            "osImage": os_image(),
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    }


def node_object(node_name: str, *, pod_network: ipaddress.IPv4Network, existing: Obj | None = None) -> Obj:
    """The Node's metadata and spec, as the kubelet registers it (merged into an existing Node's)."""
    node: Obj = dict(existing) if existing else {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
    meta: dict[str, Any] = dict(node.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels(node_name)}
    meta["annotations"] = {
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        **(meta.get("annotations") or {}),
    }
    node["metadata"] = meta
    spec = dict(node.get("spec") or {})
    spec.setdefault("podCIDR", str(pod_network))
    spec.setdefault("podCIDRs", [str(pod_network)])
    node["spec"] = spec
    return node


def micro_now() -> str:
    """A MicroTime, as Lease renewTime carries it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_object(node: Obj, existing: Obj | None = None) -> Obj:
    """The node's Lease in kube-node-lease, owned by the Node, renewed now."""
    meta = node["metadata"]
    lease: Obj = dict(existing) if existing else {"metadata": {"name": meta["name"], "namespace": LEASE_NAMESPACE}}
    lease["metadata"] = dict(
        lease["metadata"],
        ownerReferences=[{"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}],
    )
    lease["metadata"].pop("resourceVersion", None)
    lease["spec"] = {
        "holderIdentity": meta["name"],
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": micro_now(),
    }
    return lease
