"""A container's volumes, as kubelet mounts them: `hostPath`, `emptyDir`, the service-account token, /etc/hosts.

The kinds of volume a pipeline worker pod needs:

- `hostPath` (`spec.volumes[].hostPath`): a Docker bind mount of the host path
  at each `volumeMounts[].mountPath` (with `subPath`, read-only when
  `readOnly: true`). `type` is checked as kubelet checks it: "" (no check),
  `DirectoryOrCreate`, `Directory`, `FileOrCreate`, `File`, `Socket`,
  `CharDevice`, `BlockDevice`. A failed check is a MountError, which the pod
  worker reports as a `FailedMount` event while the container stays
  `ContainerCreating`, as kubelet does.
- `emptyDir`: a directory of the pod's own under the kubelet's state dir
  (`<state_dir>/pods/<uid>/volumes/<name>`, mode 0777, as kubelet makes it),
  shared by the pod's containers, kept across container restarts and removed
  with the pod; `medium` and `sizeLimit` are ignored (always disk, no limit).
- the service-account token projection (what the ServiceAccount admission
  plugin and kubelet do together): unless the pod's
  `automountServiceAccountToken` or its ServiceAccount's is false, the kubelet
  writes `token`, `ca.crt` and `namespace` under its state dir
  (`<state_dir>/pods/<uid>/serviceaccount/`, files 0644) and bind-mounts that
  directory read-only at `/var/run/secrets/kubernetes.io/serviceaccount`, and
  the container gets `KUBERNETES_SERVICE_HOST=127.0.0.1` and
  `KUBERNETES_SERVICE_PORT=<API port>` (below its own env, which wins), so
  `kubernetes.config.load_incluster_config()` works unchanged. A ServiceAccount
  that does not exist counts as automounting (the "default" ServiceAccount every
  real namespace has). A container that already mounts something at that path
  keeps its own mount.
- the kubelet-managed `/etc/hosts` (kubelet's makeHostsMount): unless the pod
  is `hostNetwork` or the container mounts something at /etc/hosts itself,
  `<state_dir>/pods/<uid>/etc-hosts` (written once per pod, 0644) is mounted
  there, with localhost, the pod IP under the pod's hostname (and FQDN with a
  `subdomain`) and the `hostAliases`, so that the hostname resolves to the pod
  IP as in Kubernetes (without it, on the host network, Docker would copy the
  node's /etc/hosts, where the pod's hostname does not resolve).

The token is the cluster's one bearer token: this cluster authenticates but
does not authorize (RBAC objects are stored, never enforced), so every pod with
a mounted token can do what the kubeconfig can. Roles and RoleBindings are
still worth rendering: a real cluster (AKS) enforces them.

Any other volume type (configMap, secret, projected, ...) is a MountError
naming the volume: the cluster does not support it.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootstrap.cluster.kubelet.runtime import pod_hostname_and_domain
from bootstrap.cluster.resources import SERVICEACCOUNTS
from bootstrap.cluster.store import Obj, Store

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ETC_HOSTS = "/etc/hosts"


class MountError(Exception):
    """A volume cannot be mounted (FailedMount); the message names the volume and why."""


@dataclass(frozen=True)
class ApiAccess:
    """What an in-cluster client needs: where the API server listens, its CA, and the bearer token."""

    port: int
    ca_pem: bytes
    token: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Mounts:
    """Docker binds (`host:container[:ro]`) and the environment a container gets from its volumes."""

    binds: list[str]
    env: dict[str, str]


def automounts_token(store: Store, pod: Obj) -> bool:
    """Kubernetes' rule: the pod's `automountServiceAccountToken` wins, else its ServiceAccount's, else true."""
    spec = pod["spec"]
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    account = store.try_get(SERVICEACCOUNTS, pod["metadata"]["namespace"], name)
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def pod_dir(state_dir: Path, uid: str) -> Path:
    return state_dir / "pods" / uid


def remove_pod_dir(state_dir: Path, uid: str) -> None:
    shutil.rmtree(pod_dir(state_dir, uid), ignore_errors=True)


def container_mounts(
    store: Store, pod: Obj, container: Obj, *, state_dir: Path, api: ApiAccess | None, pod_ip: str | None = None
) -> Mounts:
    """The binds and env for `container` of `pod` (raises MountError); writes the token files when needed,
    and the pod's /etc/hosts when `pod_ip` is given."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    binds: list[str] = []
    taken: set[str] = set()
    for mount in container.get("volumeMounts") or []:
        name = mount.get("name", "")
        target = mount.get("mountPath", "")
        volume = volumes.get(name)
        if volume is None:
            raise MountError(f'volumeMount "{name}": no volume named "{name}" in the pod spec')
        if "hostPath" in volume:
            source = _host_path(name, volume["hostPath"])
        elif "emptyDir" in volume:
            source = str(_empty_dir(pod_dir(state_dir, pod["metadata"]["uid"]), name))
        else:
            kinds = ", ".join(k for k in volume if k != "name") or "no source"
            raise MountError(
                f'volume "{name}": unsupported volume type ({kinds}); this cluster mounts only hostPath and emptyDir volumes'
            )
        sub = mount.get("subPath") or ""
        if sub:
            if PurePosixPath(sub).is_absolute() or ".." in PurePosixPath(sub).parts:
                raise MountError(f'volume "{name}": subPath {sub!r} must be a relative path without ".."')
            source = str(PurePosixPath(source) / sub)
        binds.append(f"{source}:{target}:ro" if mount.get("readOnly") else f"{source}:{target}")
        taken.add(os.path.normpath(target))
    env: dict[str, str] = {}
    if api is not None and os.path.normpath(SERVICE_ACCOUNT_DIR) not in taken and automounts_token(store, pod):
        directory = _write_service_account(pod_dir(state_dir, pod["metadata"]["uid"]), api, pod["metadata"]["namespace"])
        binds.append(f"{directory}:{SERVICE_ACCOUNT_DIR}:ro")
        env = {"KUBERNETES_SERVICE_HOST": api.host, "KUBERNETES_SERVICE_PORT": str(api.port)}
    if pod_ip and not pod["spec"].get("hostNetwork") and ETC_HOSTS not in taken:
        binds.append(f"{_ensure_hosts_file(pod_dir(state_dir, pod['metadata']['uid']), pod, pod_ip)}:{ETC_HOSTS}")
    return Mounts(binds, env)


def hosts_file_content(pod: Obj, pod_ip: str) -> str:
    """kubelet's managedHostsFileContent."""
    hostname, domain = pod_hostname_and_domain(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{pod_ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{pod_ip}\t{hostname}",
    ]
    aliases = pod["spec"].get("hostAliases") or []
    if aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += ["\t".join([str(alias.get("ip", "")), *(alias.get("hostnames") or [])]) for alias in aliases]
    return "\n".join(lines) + "\n"


def _ensure_hosts_file(directory: Path, pod: Obj, pod_ip: str) -> Path:
    """Write the pod's hosts file unless it exists (kubelet's ensureHostsFile: a container may have edited it)."""
    path = directory / "etc-hosts"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        tmp = directory / ".etc-hosts.tmp"
        tmp.write_text(hosts_file_content(pod, pod_ip))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path


_TYPE_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _host_path(name: str, source: Obj) -> str:
    path = str(source.get("path") or "")
    kind = str(source.get("type") or "")
    if not path.startswith("/"):
        raise MountError(f'volume "{name}": hostPath.path must be absolute, got {path!r}')
    if kind == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
        Path(path).touch(mode=0o644)
    check = _TYPE_CHECKS.get(kind.removesuffix("OrCreate"))
    if check is not None:
        test, what = check
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise MountError(f'volume "{name}": hostPath type check failed: {path} does not exist') from None
        if not test(mode):
            raise MountError(f'volume "{name}": hostPath type check failed: {path} is not {what}')
    elif kind not in ("", "DirectoryOrCreate", "FileOrCreate"):
        raise MountError(f'volume "{name}": unknown hostPath type {kind!r}')
    return path


def _empty_dir(directory: Path, name: str) -> Path:
    path = directory / "volumes" / name
    if not path.is_dir():
        path.mkdir(parents=True)
        os.chmod(directory, 0o755)
        os.chmod(directory / "volumes", 0o755)
        os.chmod(path, 0o777)
    return path


def _write_service_account(directory: Path, api: ApiAccess, namespace: str) -> Path:
    """token, ca.crt and namespace, readable by the container's (non-root) user, read-only in the pod."""
    target = directory / "serviceaccount"
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    os.chmod(target, 0o755)
    for filename, data in (("token", api.token.encode()), ("ca.crt", api.ca_pem), ("namespace", namespace.encode())):
        path = target / filename
        tmp = target / f".{filename}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return target
