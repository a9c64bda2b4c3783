"""The Docker side of the kubelet: images, container configs, labels. Blocking calls: run them in threads.

Contract with Docker (what a restarted kubelet relies on to re-adopt containers):
- name  `k8s_<container>_<pod>_<namespace>_<uid[:8]>_<restartCount>`
- labels `io.kubernetes.pod.{uid,name,namespace}`, `io.kubernetes.container.{name,restartCount}`
  `bootstrap.cluster/node` and `bootstrap.cluster/cluster-id` (the node and the cluster that own it:
  the id is kept in the kubelet's state_dir, so a restarted cluster re-adopts its containers and
  another cluster on the same host, even with the same node name, never touches them);
- host networking only; the pod's loopback IP is in the `bootstrap.cluster/pod-ip` label
  and reaches the container through the downward API (`status.podIP`);
- the container's hostname (its own UTS namespace, even on the host network) is the pod's
  (`pod_hostname`: `spec.hostname` or the pod name, as kubelet's GeneratePodHostNameAndDomain),
  and so is `$HOSTNAME`; a `hostNetwork: true` pod keeps the node's, as in Kubernetes.
Command/args follow Kubernetes: `command` replaces the image ENTRYPOINT (and drops its CMD),
`args` replaces the CMD.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from bootstrap.cluster.kubelet.envs import expand
from bootstrap.cluster.kubelet.quantity import parse_quantity
from bootstrap.cluster.store import Obj

LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"
LABEL_NODE = "bootstrap.cluster/node"
LABEL_CLUSTER = "bootstrap.cluster/cluster-id"
LABEL_POD_IP = "bootstrap.cluster/pod-ip"


CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63  # a Linux nodename is 64 bytes with its NUL
FQDN_MAX = 64


class PullError(Exception):
    """The image could not be pulled (ErrImagePull) or may not be (ErrImageNeverPull)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError), e.g. runAsNonRoot with a root image."""


@dataclass(frozen=True)
class PulledImage:
    image_id: str  # for containerStatuses[].imageID: the repo digest when known
    user: str  # the image's USER, for runAsNonRoot
    pulled: bool  # False when it was already present
    seconds: float
    size: int


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1 :]
    return image, tag, digest


def pull_policy(container: Obj) -> str:
    """The policy the API server defaults: Always for `:latest` or no tag, IfNotPresent otherwise."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    _, tag, digest = split_image(container["image"])
    return "Always" if digest is None and tag in (None, "latest") else "IfNotPresent"


def ensure_image(client: docker.DockerClient, image: str, policy: str) -> PulledImage:
    started = time.monotonic()
    present = None
    if policy != "Always":
        try:
            present = client.images.get(image)
        except docker.errors.ImageNotFound:
            if policy == "Never":
                raise PullError(
                    "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never'
                ) from None
    if present is not None:
        return _pulled(present, image, pulled=False, seconds=0.0)
    repo, tag, digest = split_image(image)
    try:
        if digest:
            pulled = client.images.pull(f"{repo}@{digest}")
        else:
            pulled = client.images.pull(repo, tag=tag or "latest")
    except docker.errors.APIError as err:
        raise PullError("ErrImagePull", str(err.explanation or err)) from err
    return _pulled(pulled, image, pulled=True, seconds=time.monotonic() - started)


def _pulled(img: Any, ref: str, *, pulled: bool, seconds: float) -> PulledImage:
    repo, _, _ = split_image(ref)
    digests: list[str] = img.attrs.get("RepoDigests") or []
    image_id = next((d for d in digests if d.split("@", 1)[0] == repo), digests[0] if digests else img.id)
    user = str((img.attrs.get("Config") or {}).get("User") or "")
    return PulledImage(image_id, user, pulled, seconds, int(img.attrs.get("Size") or 0))


def pod_hostname_and_domain(pod: Obj) -> tuple[str, str]:
    """kubelet's GeneratePodHostNameAndDomain: `spec.hostname` or the pod name, cut to 63 characters
    without a trailing '-' or '.', and the `<subdomain>.<namespace>.svc.<cluster domain>` domain ("" without
    `spec.subdomain`). The API server validated hostname and subdomain as DNS labels."""
    meta, spec = pod["metadata"], pod["spec"]
    hostname = str(spec.get("hostname") or meta["name"])
    if len(hostname) > HOSTNAME_MAX:
        hostname = hostname[:HOSTNAME_MAX].rstrip("-.")
    domain = f"{spec['subdomain']}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}" if spec.get("subdomain") else ""
    return hostname, domain


def pod_hostname(pod: Obj) -> str | None:
    """The container's kernel hostname (kubelet's GetNodenameForKernel: the FQDN with `setHostnameAsFQDN`);
    None for a `hostNetwork` pod, which keeps the node's. Raises ConfigError for an FQDN over 64 characters."""
    if pod["spec"].get("hostNetwork"):
        return None
    hostname, domain = pod_hostname_and_domain(pod)
    if domain and pod["spec"].get("setHostnameAsFQDN"):
        fqdn = f"{hostname}.{domain}"
        if len(fqdn) > FQDN_MAX:
            raise ConfigError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long "
                f"({FQDN_MAX} characters is the max, {len(fqdn)} characters requested)"
            )
        return fqdn
    return hostname


def container_name(pod: Obj, container: str, restart: int) -> str:
    meta = pod["metadata"]
    return f"k8s_{container}_{meta['name']}_{meta['namespace']}_{meta['uid'][:8]}_{restart}"


def labels(pod: Obj, container: str, restart: int, node: str, pod_ip: str, cluster_id: str) -> dict[str, str]:
    meta = pod["metadata"]
    return {
        LABEL_POD_UID: meta["uid"],
        LABEL_POD_NAME: meta["name"],
        LABEL_POD_NAMESPACE: meta["namespace"],
        LABEL_CONTAINER_NAME: container,
        LABEL_RESTART_COUNT: str(restart),
        LABEL_NODE: node,
        LABEL_CLUSTER: cluster_id,
        LABEL_POD_IP: pod_ip,
    }


def _security(pod: Obj, container: Obj, image_user: str) -> dict[str, Any]:
    """Docker options for the pod's and the container's securityContext (the container's wins)."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(field: str) -> Any:
        return sc.get(field, pod_sc.get(field))

    run_as_user, run_as_group = pick("runAsUser"), pick("runAsGroup")
    meta = pod["metadata"]
    where = f'(pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", container: {container["name"]})'
    if pick("runAsNonRoot"):
        if run_as_user is not None:
            if int(run_as_user) == 0:
                raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
        else:
            user = image_user.split(":", 1)[0]
            if user in ("", "root", "0"):
                raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
            if not user.isdigit():
                raise ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {where}"
                )
    opts: dict[str, Any] = {}
    if run_as_user is not None or run_as_group is not None:
        uid = str(run_as_user) if run_as_user is not None else (image_user.split(":", 1)[0] or "0")
        opts["user"] = f"{uid}:{run_as_group}" if run_as_group is not None else uid
    groups = [str(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(str(pod_sc["fsGroup"]))
    if groups:
        opts["group_add"] = groups
    if sc.get("readOnlyRootFilesystem"):
        opts["read_only"] = True
    if sc.get("allowPrivilegeEscalation") is False:
        opts["security_opt"] = ["no-new-privileges"]
    if sc.get("privileged"):
        opts["privileged"] = True
    caps = sc.get("capabilities") or {}
    if caps.get("add"):
        opts["cap_add"] = list(caps["add"])
    if caps.get("drop"):
        opts["cap_drop"] = list(caps["drop"])
    return opts


def _resources(container: Obj) -> dict[str, Any]:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    opts: dict[str, Any] = {}
    if "cpu" in limits:
        opts["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 1e9)
    if "memory" in limits:
        opts["mem_limit"] = int(parse_quantity(limits["memory"]))
    if "cpu" in requests:
        opts["cpu_shares"] = max(2, int(parse_quantity(requests["cpu"]) * 1024))
    return opts


def create_options(
    pod: Obj,
    container: Obj,
    *,
    env: dict[str, str],
    image_user: str,
    node: str,
    cluster_id: str,
    pod_ip: str,
    restart: int,
    binds: list[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create` (raises ConfigError); `binds` are `host:container[:ro]`.

    `env` is the container's own (kubelet's): `$(VAR)` in command and args expands from it alone. The
    runtime adds `HOSTNAME` below it, as containerd does (a container's own `HOSTNAME` wins)."""
    hostname = pod_hostname(pod)
    runtime_env = {"HOSTNAME": hostname, **env} if hostname is not None else dict(env)
    opts: dict[str, Any] = {
        "image": container["image"],
        "name": container_name(pod, container["name"], restart),
        "labels": labels(pod, container["name"], restart, node, pod_ip, cluster_id),
        "environment": [f"{k}={v}" for k, v in runtime_env.items()],
        "network_mode": "host",
        "detach": True,
        "tty": bool(container.get("tty")),
        "stdin_open": bool(container.get("stdin")),
    }
    if container.get("command"):
        opts["entrypoint"] = [expand(str(part), env) for part in container["command"]]
        opts["command"] = [expand(str(part), env) for part in container.get("args") or []]
    elif container.get("args"):
        opts["command"] = [expand(str(part), env) for part in container["args"]]
    if hostname is not None:
        opts["hostname"] = hostname
    if container.get("workingDir"):
        opts["working_dir"] = container["workingDir"]
    if binds:
        opts["volumes"] = list(binds)
    opts.update(_security(pod, container, image_user))
    opts.update(_resources(container))
    return opts


def qos_class(pod: Obj) -> str:
    containers = pod["spec"].get("containers") or []
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
