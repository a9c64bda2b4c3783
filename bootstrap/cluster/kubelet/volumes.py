"""A container's volumes, as kubelet mounts them: `hostPath`, `emptyDir`, `configMap`, `secret`, `downwardAPI`,
`projected`, the service-account token, /etc/hosts.

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
  plugin's `kube-api-access-<random>` projected volume and kubelet do together,
  plugin/pkg/admission/serviceaccount): unless the pod's
  `automountServiceAccountToken` or its ServiceAccount's is false, the kubelet
  writes `token` (a token of the pod's own ServiceAccount, `spec.serviceAccountName`,
  for the API server's audience, expirationSeconds 3607, bound to the pod and
  its node, which the API server signs as its extended token: see tokens.py),
  `ca.crt` (the cluster CA, what the `kube-root-ca.crt` ConfigMap holds) and
  `namespace` under its state dir (`<state_dir>/pods/<uid>/serviceaccount/`,
  files 0644) and bind-mounts that directory read-only at
  `/var/run/secrets/kubernetes.io/serviceaccount`, and
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

The API server authenticates that token as `system:serviceaccount:<ns>:<name>`
and authorizes it by RBAC (rbac.py): a pod can do what its ServiceAccount's
Roles grant, as on AKS; only the kubeconfig's admin token has every right. The
token is rotated like any projected token (below): kubelet's token manager
refreshes at 80% of the 3607 s it asked for, though the signed token is valid
for a year. Unlike Kubernetes, the volume is not added to the pod's spec.

- `configMap`, `secret`, `downwardAPI` and `projected` (sources
  `serviceAccountToken`, `configMap`, `secret`, `downwardAPI`): rendered into
  `<state_dir>/pods/<uid>/volumes/<name>/` (directory 0755, files `defaultMode`
  or an item's `mode`, default 0644 as kubelet's) and bind-mounted read-only,
  as kubelet always mounts them. `items` select and rename keys; a missing
  ConfigMap or Secret (or key) is a MountError unless `optional`, reported as
  kubelet reports it (`MountVolume.SetUp failed for volume "x" : configmap "y"
  not found`). downwardAPI `fieldRef`s: metadata.name/namespace/uid,
  metadata.labels/annotations (kubelet's `key="value"` lines, sorted) and
  `['key']` of them, spec.nodeName, spec.serviceAccountName, status.podIP(s),
  status.hostIP(s). A `serviceAccountToken` source is a token of the pod's
  ServiceAccount (`spec.serviceAccountName`, default "default") for its
  `audience` (default: the issuer) and `expirationSeconds` (default 3600, at
  least 600), bound to the pod (`kubernetes.io.pod`), signed by the API
  server's issuer (tokens.py). The pod worker keeps these volumes current
  (`refresh_volumes`, podworker.py): a token is replaced once
  TOKEN_REFRESH_FRACTION (0.8; env CLUSTER_TOKEN_REFRESH_FRACTION of the cluster
  process) of its lifetime has passed or it is 24 h old, and changed ConfigMaps,
  Secrets and labels are rewritten within a minute. Files are replaced
  atomically (rename), so a container reading through the directory mount sees
  the old or the new content, never half of it (a `subPath` mount, as in
  kubelet, keeps the file it started with).

Any other volume type (persistentVolumeClaim, nfs, ...) is a MountError naming
the volume: the cluster does not support it.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jwt

from bootstrap.cluster import errors
from bootstrap.cluster.kubelet.runtime import pod_hostname_and_domain
from bootstrap.cluster.resources import CONFIGMAPS, NODES, SECRETS, SERVICEACCOUNTS
from bootstrap.cluster.store import Obj, Store
from bootstrap.cluster.tokens import (
    DEFAULT_EXPIRATION_SECONDS,
    MIN_EXPIRATION_SECONDS,
    WARN_ONLY_EXPIRATION_SECONDS,
    TokenIssuer,
    service_account,
)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ETC_HOSTS = "/etc/hosts"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_BYTES = 4096  # kubelet's maxTerminationMessageLogLength for the file
DEFAULT_MODE = 0o644  # kubelet's default defaultMode (420)
# kubelet's token manager refreshes a projected token once 80% of its lifetime has passed, or after 24 h.
# CLUSTER_TOKEN_REFRESH_FRACTION (read by the cluster process) lowers it for tests.
TOKEN_REFRESH_FRACTION = float(os.environ.get("CLUSTER_TOKEN_REFRESH_FRACTION", "0.8"))
TOKEN_MAX_TTL = 24 * 3600.0
PROJECTED_KINDS = ("projected", "configMap", "secret", "downwardAPI")


class MountError(Exception):
    """A volume cannot be mounted (FailedMount); the message names the volume and why."""


@dataclass(frozen=True)
class ApiAccess:
    """What an in-cluster client needs: where the API server listens, its CA, and who signs the pods' tokens."""

    port: int
    ca_pem: bytes
    issuer: TokenIssuer | None  # signs the pods' ServiceAccount tokens; None: no token can be mounted
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
        elif any(kind in volume for kind in PROJECTED_KINDS):
            source = str(write_volume(store, pod, volume, state_dir=state_dir, api=api))
        else:
            kinds = ", ".join(k for k in volume if k != "name") or "no source"
            raise MountError(
                f'volume "{name}": unsupported volume type ({kinds}); this cluster mounts only hostPath, emptyDir, '
                "configMap, secret, downwardAPI and projected volumes"
            )
        sub = mount.get("subPath") or ""
        if sub:
            if PurePosixPath(sub).is_absolute() or ".." in PurePosixPath(sub).parts:
                raise MountError(f'volume "{name}": subPath {sub!r} must be a relative path without ".."')
            source = str(PurePosixPath(source) / sub)
        read_only = mount.get("readOnly") or any(kind in volume for kind in PROJECTED_KINDS)  # kubelet: always read-only
        binds.append(f"{source}:{target}:ro" if read_only else f"{source}:{target}")
        taken.add(os.path.normpath(target))
    env: dict[str, str] = {}
    if api is not None and os.path.normpath(SERVICE_ACCOUNT_DIR) not in taken and automounts_token(store, pod):
        directory, _ = write_service_account(store, pod, state_dir=state_dir, api=api)
        binds.append(f"{directory}:{SERVICE_ACCOUNT_DIR}:ro")
        env = {"KUBERNETES_SERVICE_HOST": api.host, "KUBERNETES_SERVICE_PORT": str(api.port)}
    if pod_ip and not pod["spec"].get("hostNetwork") and ETC_HOSTS not in taken:
        binds.append(f"{_ensure_hosts_file(pod_dir(state_dir, pod['metadata']['uid']), pod, pod_ip)}:{ETC_HOSTS}")
    message_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    if os.path.normpath(message_path) not in taken:
        binds.append(f"{new_termination_log(state_dir, pod, container['name'])}:{message_path}")
    return Mounts(binds, env)


def termination_log(state_dir: Path, pod: Obj, container: str) -> Path:
    return pod_dir(state_dir, pod["metadata"]["uid"]) / "containers" / container / "termination-log"


def new_termination_log(state_dir: Path, pod: Obj, container: str) -> Path:
    """kubelet's per-run termination message file: empty, writable by any user (0666), bind-mounted at the
    container's terminationMessagePath; what the container wrote there is its status' message."""
    path = termination_log(state_dir, pod, container)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)
    return path


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


def write_service_account(store: Store, pod: Obj, *, state_dir: Path, api: ApiAccess) -> tuple[Path, float]:
    """The automounted `kube-api-access-*` files: token (the pod's ServiceAccount's, rotated when due), ca.crt
    and namespace, readable by the container's (non-root) user, read-only in the pod (raises MountError).
    Returns the directory and when the token is due for a refresh."""
    target = pod_dir(state_dir, pod["metadata"]["uid"]) / "serviceaccount"
    token, due = _pod_token(
        store,
        pod,
        "kube-api-access",
        audience=api.issuer.issuer if api.issuer is not None else "",
        expiration=WARN_ONLY_EXPIRATION_SECONDS,
        current=target / "token",
        api=api,
    )
    files = {
        "token": (token.encode(), DEFAULT_MODE),
        "ca.crt": (api.ca_pem, DEFAULT_MODE),
        "namespace": (pod["metadata"]["namespace"].encode(), DEFAULT_MODE),
    }
    _write_files(target, files)
    return target, due


# ----- configMap, secret, downwardAPI and projected volumes -----


def _volume_kind(volume: Obj) -> str:
    return next(kind for kind in PROJECTED_KINDS if kind in volume)


def _mode(value: object, default: int) -> int:
    return int(value) & 0o777 if isinstance(value, int) and not isinstance(value, bool) else default


def _relative(volume: str, path: object) -> str:
    text = str(path or "")
    parts = PurePosixPath(text).parts
    if not text or PurePosixPath(text).is_absolute() or ".." in parts or text.startswith("..") or not parts:
        raise MountError(f'volume "{volume}" : invalid path {text!r}: must be a relative path without ".."')
    return text


def _key_files(
    volume: str, kind: str, source: Obj, data: dict[str, bytes] | None, default_mode: int
) -> dict[str, tuple[bytes, int]]:
    """The files of a configMap or secret source: every key, or the `items`; a missing optional source is empty."""
    name = source.get("secretName" if kind == "secret" and "secretName" in source else "name") or ""
    optional = bool(source.get("optional"))
    if data is None:
        if optional:
            return {}
        raise MountError(f'volume "{volume}" : {kind.lower()} "{name}" not found')
    items = source.get("items") or []
    if not items:
        return {_relative(volume, key): (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise MountError(f'volume "{volume}" : {kind.lower()} references non-existent config key: {key}')
        files[_relative(volume, item.get("path"))] = (data[key], _mode(item.get("mode"), default_mode))
    return files


def _config_map_data(store: Store, namespace: str, name: str) -> dict[str, bytes] | None:
    found = store.try_get(CONFIGMAPS, namespace, name)
    if found is None:
        return None
    data = {k: str(v).encode() for k, v in (found.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()})
    return data


def _secret_data(store: Store, namespace: str, name: str) -> dict[str, bytes] | None:
    found = store.try_get(SECRETS, namespace, name)
    if found is None:
        return None
    return {k: base64.b64decode(v or "") for k, v in (found.get("data") or {}).items()}


def _format_map(values: dict[str, str]) -> str:
    """kubelet's fieldpath.FormatMap: sorted `key="value"` lines."""
    return "\n".join(f'{k}="{values[k]}"' for k in sorted(values))


def _downward_value(volume: str, pod: Obj, path: str) -> str:
    from bootstrap.cluster.kubelet.envs import EnvError, _field_ref

    meta = pod["metadata"]
    if path in ("metadata.labels", "metadata.annotations"):
        return _format_map({k: str(v) for k, v in (meta.get(path.split(".")[1]) or {}).items()})
    try:
        return _field_ref(pod, path)
    except EnvError as err:
        raise MountError(f'volume "{volume}" : {err}') from None


def _downward_files(volume: str, pod: Obj, source: Obj, default_mode: int) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in source.get("items") or []:
        if "fieldRef" not in item:
            raise MountError(f'volume "{volume}" : only fieldRef downwardAPI items are supported, not {sorted(item)}')
        value = _downward_value(volume, pod, str(item["fieldRef"].get("fieldPath", "")))
        files[_relative(volume, item.get("path"))] = (value.encode(), _mode(item.get("mode"), default_mode))
    return files


def _expiry(claims: Obj) -> tuple[int, int]:
    """(iat, the expiration the token was asked for): `kubernetes.io.warnafter` of an extended token, else exp."""
    iat = int(claims.get("iat", 0))
    warn_after = (claims.get("kubernetes.io") or {}).get("warnafter")
    return iat, int(warn_after) if warn_after else int(claims.get("exp", 0))


def token_needs_refresh(token: str, *, audience: str, expiration_seconds: int, pod_uid: str, now: float) -> bool:
    """kubelet's token manager (requiresRefresh): a new token once TOKEN_REFRESH_FRACTION of its lifetime has
    passed or it is 24 h old, and whenever the spec asks for another audience, lifetime or pod."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return True
    iat, exp = _expiry(claims)
    pod = (claims.get("kubernetes.io") or {}).get("pod") or {}
    if claims.get("aud") != [audience] or exp - iat != expiration_seconds or pod.get("uid") != pod_uid:
        return True
    return now >= _refresh_at(iat, exp)


def _refresh_at(iat: int, exp: int) -> float:
    return min(iat + (exp - iat) * TOKEN_REFRESH_FRACTION, iat + TOKEN_MAX_TTL)


def _pod_token(
    store: Store, pod: Obj, volume: str, *, audience: str, expiration: int, current: Path, api: ApiAccess | None
) -> tuple[str, float]:
    """A token of the pod's ServiceAccount bound to the pod (and its node): the one at `current` unless it is due
    for a refresh, else a new one; and when it will be due."""
    if api is None or api.issuer is None:
        raise MountError(f'volume "{volume}" : this cluster issues no ServiceAccount tokens to its kubelet')
    meta = pod["metadata"]
    now = time.time()
    if current.is_file():
        token = current.read_text()
        if not token_needs_refresh(token, audience=audience, expiration_seconds=expiration, pod_uid=meta["uid"], now=now):
            return token, _refresh_at(*_expiry(jwt.decode(token, options={"verify_signature": False})))
    account_name = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
    try:
        account = service_account(store, meta["namespace"], account_name)
    except errors.ApiError as err:
        raise MountError(f'volume "{volume}" : failed to fetch token: {err.message}') from None
    node_name = pod["spec"].get("nodeName")
    node = store.try_get(NODES, None, node_name) if node_name else None
    token, exp = api.issuer.service_account_token(
        account, audiences=[audience], expiration_seconds=expiration, pod=pod, node=node, now=now
    )
    return token, _refresh_at(int(now), exp)


def _token_file(
    store: Store, pod: Obj, volume: str, source: Obj, existing: Path, api: ApiAccess | None, default_mode: int
) -> tuple[str, tuple[bytes, int], float]:
    """A projected serviceAccountToken: (path, (token, mode), when it needs a refresh); reuses the token on disk."""
    if api is None or api.issuer is None:
        raise MountError(f'volume "{volume}" : this cluster issues no ServiceAccount tokens to its kubelet')
    path = _relative(volume, source.get("path"))
    audience = str(source.get("audience") or api.issuer.issuer)
    expiration = source.get("expirationSeconds")
    expiration = DEFAULT_EXPIRATION_SECONDS if expiration is None else int(expiration)
    if expiration < MIN_EXPIRATION_SECONDS:
        raise MountError(f'volume "{volume}" : expirationSeconds {expiration}: may not specify a duration less than 10 minutes')
    token, due = _pod_token(store, pod, volume, audience=audience, expiration=expiration, current=existing / path, api=api)
    return path, (token.encode(), default_mode), due


def _render(
    store: Store, pod: Obj, volume: Obj, directory: Path, api: ApiAccess | None
) -> tuple[dict[str, tuple[bytes, int]], float | None]:
    """The files of a configMap, secret, downwardAPI or projected volume, and when its token (if any) is due."""
    name = volume["name"]
    namespace = pod["metadata"]["namespace"]
    kind = _volume_kind(volume)
    spec = volume[kind] or {}
    default_mode = _mode(spec.get("defaultMode"), DEFAULT_MODE)
    if kind == "configMap":
        return _key_files(name, kind, spec, _config_map_data(store, namespace, spec.get("name") or ""), default_mode), None
    if kind == "secret":
        return _key_files(name, kind, spec, _secret_data(store, namespace, spec.get("secretName") or ""), default_mode), None
    if kind == "downwardAPI":
        return _downward_files(name, pod, spec, default_mode), None
    files: dict[str, tuple[bytes, int]] = {}
    due: float | None = None
    for source in spec.get("sources") or []:
        if "serviceAccountToken" in source:
            path, content, refresh_at = _token_file(store, pod, name, source["serviceAccountToken"], directory, api, default_mode)
            files[path] = content
            due = refresh_at if due is None else min(due, refresh_at)
        elif "configMap" in source:
            cm = source["configMap"]
            files.update(
                _key_files(name, "configMap", cm, _config_map_data(store, namespace, cm.get("name") or ""), default_mode)
            )
        elif "secret" in source:
            sec = source["secret"]
            files.update(_key_files(name, "secret", sec, _secret_data(store, namespace, sec.get("name") or ""), default_mode))
        elif "downwardAPI" in source:
            files.update(_downward_files(name, pod, source["downwardAPI"], default_mode))
        else:
            kinds = ", ".join(source) or "no source"
            raise MountError(f'volume "{name}" : unsupported projected source ({kinds})')
    return files, due


def _write_files(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Write each file atomically (a temporary file renamed over it), only when its content or mode changed."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory.parent.parent, 0o755)  # the pod's directory
    os.chmod(directory.parent, 0o755)
    os.chmod(directory, 0o755)
    for relative, (data, mode) in files.items():
        path = directory / relative
        if path.is_file() and path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == mode:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(directory).parents:
            os.chmod(directory / parent, 0o755)
        tmp = path.parent / f".{path.name}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)


def write_volume(store: Store, pod: Obj, volume: Obj, *, state_dir: Path, api: ApiAccess | None) -> Path:
    """Render a configMap, secret, downwardAPI or projected volume into `<pod dir>/volumes/<name>` (raises MountError)."""
    directory = pod_dir(state_dir, pod["metadata"]["uid"]) / "volumes" / volume["name"]
    files, _ = _render(store, pod, volume, directory, api)
    _write_files(directory, files)
    return directory


def refresh_volumes(store: Store, pod: Obj, *, state_dir: Path, api: ApiAccess | None) -> float | None:
    """Re-render the pod's mounted configMap, secret, downwardAPI and projected volumes (what kubelet's volume
    manager does on its periodic resync): tokens due for rotation are replaced, changed ConfigMaps and Secrets
    rewritten. A volume that cannot be rendered now keeps its files. Returns when the next token is due."""
    due: float | None = None
    if api is not None and (pod_dir(state_dir, pod["metadata"]["uid"]) / "serviceaccount").is_dir():
        try:
            _, due = write_service_account(store, pod, state_dir=state_dir, api=api)
        except (MountError, OSError):
            pass
    for volume in pod["spec"].get("volumes") or []:
        if not any(kind in volume for kind in PROJECTED_KINDS):
            continue
        directory = pod_dir(state_dir, pod["metadata"]["uid"]) / "volumes" / volume["name"]
        if not directory.is_dir():
            continue  # not mounted (yet)
        try:
            files, refresh_at = _render(store, pod, volume, directory, api)
            _write_files(directory, files)
        except (MountError, OSError):
            continue
        if refresh_at is not None:
            due = refresh_at if due is None else min(due, refresh_at)
    return due
