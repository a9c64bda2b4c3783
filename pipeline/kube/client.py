"""The connection to one cluster: a `kubernetes.client.ApiClient` made from a kubeconfig, or in-cluster.

    kc = connect(kubeconfig=".stack/cluster/kubeconfig")
    with kc:
        ...

Which kubeconfig to use (bootstrap's for the local target, ~/.kube/config for
AKS) is the caller's decision; this module only loads the one it is given.

The in-cluster rule (how the self-deployed pipeline worker reaches the cluster
it runs in, with its ServiceAccount's token, exactly as
`kubernetes.config.load_incluster_config()` does):

- `kubeconfig=""`: in-cluster config, always;
- a kubeconfig path this process cannot read (absent on this machine, or
  unreadable: the CLI sends the path *it* uses, and the pod may see the
  repository read-only with the file's 0600 mode) while a service-account
  token is mounted (`KUBERNETES_SERVICE_HOST` set and
  `<service_account_dir>/token` present): in-cluster config, `context` ignored;
- a readable kubeconfig: that file, always (even inside a pod);
- otherwise KubeConfigError, naming both what was missing.

In-cluster, the token file is re-read when it changes (projected tokens rotate).
`KubeClient.request` is the one raw-HTTP entry point (server-side apply and
generic reads use it); typed calls go through `kc.core` and `kc.apps`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import yaml
from kubernetes import client as k8s, config as k8s_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from pipeline.kube.errors import KubeConfigError, api_errors

# (connect, read) seconds for ordinary calls; watches set their own.
REQUEST_TIMEOUT = (5.0, 30.0)


class KubeClient:
    """One cluster's API client; close it (or use `with`) to release its connections."""

    def __init__(self, api: k8s.ApiClient, *, source: str, context: str) -> None:
        self.api = api
        self.source = source
        self.context = context

    # Typed APIs are made on first use: importing them costs about half a second
    # (kubernetes 37's pydantic models), which a CLI that only checks the
    # kubeconfig, or an activity that only uses `request`, should not pay.
    @functools.cached_property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @functools.cached_property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def request(
        self,
        *,
        method: str,
        path: str,
        what: str,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> dict[str, Any]:
        """One API call returning the decoded JSON object; failures are KubeErrors about `what`."""
        data = self.request_bytes(
            method=method, path=path, what=what, query=query, body=body, content_type=content_type, timeout=timeout
        )
        decoded: object = json.loads(data) if data else {}
        return cast(dict[str, Any], decoded)

    def request_bytes(
        self,
        *,
        method: str,
        path: str,
        what: str,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> bytes:
        """One API call returning the response body as is (e.g. a pod's log)."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        with api_errors(what):
            serialized = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*serialized, _request_timeout=timeout)
            response.read()  # type: ignore[no-untyped-call]
            if not 200 <= response.status <= 299:
                raise k8s.ApiException.from_response(http_resp=response, body=None, data=None)
            data: bytes = response.data or b""
        return data

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"


def in_cluster(*, service_account_dir: str = SERVICE_ACCOUNT_DIR) -> bool:
    """Whether this process runs in a pod with a mounted service-account token."""
    return bool(os.environ.get(SERVICE_HOST_ENV)) and os.path.isfile(os.path.join(service_account_dir, "token"))


def connect(*, kubeconfig: str, context: str = "", service_account_dir: str = SERVICE_ACCOUNT_DIR) -> KubeClient:
    """A client for `context` ("" = current-context) of the kubeconfig file at `kubeconfig`, or in-cluster.

    See the module docstring for when the in-cluster config is used.
    """
    readable = bool(kubeconfig) and os.path.isfile(kubeconfig) and os.access(kubeconfig, os.R_OK)
    if not readable and (not kubeconfig or in_cluster(service_account_dir=service_account_dir)):
        return _connect_in_cluster(service_account_dir, instead_of=kubeconfig)
    where = f"kubeconfig {kubeconfig}" + (f" (context {context})" if context else "")
    if not readable:
        problem = "no such file" if not os.path.exists(kubeconfig) else "not readable by this process"
        raise KubeConfigError(f"{where}: {problem}, and no service-account token is mounted; {KubeConfigError.hint}")
    try:
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context or None, persist_config=False
        )
    except (ConfigException, yaml.YAMLError, OSError, TypeError, KeyError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise KubeConfigError(f"{where}: unusable: {detail}; {KubeConfigError.hint}") from exc
    return KubeClient(api, source=kubeconfig, context=context)


def _connect_in_cluster(service_account_dir: str, *, instead_of: str) -> KubeClient:
    where = f"in-cluster config ({service_account_dir})" + (f" instead of kubeconfig {instead_of}" if instead_of else "")
    configuration = k8s.Configuration()
    try:
        InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=os.path.join(service_account_dir, "token"),
            cert_filename=os.path.join(service_account_dir, "ca.crt"),
            try_refresh_token=True,
        ).load_and_set(configuration)
    except (ConfigException, OSError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise KubeConfigError(
            f"{where}: unusable: {detail}; outside a pod, give a kubeconfig ([kubernetes].kubeconfig or KUBECONFIG); "
            f"in a pod, its ServiceAccount must mount a token (automountServiceAccountToken) and "
            f"{SERVICE_HOST_ENV}/{SERVICE_PORT_ENV} must be set"
        ) from exc
    return KubeClient(k8s.ApiClient(configuration), source=f"in-cluster:{service_account_dir}", context="")
