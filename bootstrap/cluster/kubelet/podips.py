"""Pod IPs: every pod gets its own loopback address, because all containers share the host network.

Linux routes all of 127.0.0.0/8 to `lo`, so a pod can bind 127.1.x.y without
any setup, and two pods can both listen on :8080. Addresses come from
127.1.0.0/16, lowest free first, stay with the pod for its life and are
reused once the pod and its containers are gone. The allocation is rebuilt
from the pods' `status.podIP` after a restart. Addresses that containers of
another kubelet on this host carry (their `bootstrap.cluster/pod-ip` label) are
skipped, so two clusters (or a test's and the quick start's) do not collide.
"""

from __future__ import annotations

import ipaddress

NETWORK = ipaddress.IPv4Network("127.1.0.0/16")


class PodIPAllocator:
    def __init__(self, network: ipaddress.IPv4Network = NETWORK) -> None:
        self._network = network
        self._by_uid: dict[str, str] = {}
        self._taken: set[str] = set()

    def reserve(self, uid: str, ip: str) -> None:
        """Keep the address a pod already has (re-adoption after a restart)."""
        if ipaddress.IPv4Address(ip) in self._network:
            self._by_uid[uid] = ip
            self._taken.add(ip)

    def get(self, uid: str) -> str | None:
        return self._by_uid.get(uid)

    def allocate(self, uid: str, *, avoid: frozenset[str] = frozenset()) -> str:
        if uid in self._by_uid:
            return self._by_uid[uid]
        for host in self._network.hosts():
            ip = str(host)
            if ip not in self._taken and ip not in avoid:
                self.reserve(uid, ip)
                return ip
        raise RuntimeError(f"no free pod IP in {self._network}")

    def release(self, uid: str) -> None:
        ip = self._by_uid.pop(uid, None)
        if ip is not None:
            self._taken.discard(ip)
