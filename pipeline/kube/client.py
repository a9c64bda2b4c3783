"""The connection to one cluster: a `kubernetes.client.ApiClient` made from a kubeconfig.

    kc = connect(kubeconfig=".stack/cluster/kubeconfig")
    with kc:
        ...

Which kubeconfig to use (bootstrap's for the local target, ~/.kube/config for
AKS) is the caller's decision; this module only loads the one it is given.
`KubeClient.request` is the one raw-HTTP entry point (server-side apply and
generic reads use it); typed calls go through `kc.core` and `kc.apps`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from pipeline.kube.errors import KubeConfigError, api_errors

# (connect, read) seconds for ordinary calls; watches set their own.
REQUEST_TIMEOUT = (5.0, 30.0)


class KubeClient:
    """One cluster's API client; close it (or use `with`) to release its connections."""

    def __init__(self, api: k8s.ApiClient, *, source: str, context: str) -> None:
        self.api = api
        self.source = source
        self.context = context
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)

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


def connect(*, kubeconfig: str, context: str = "") -> KubeClient:
    """A client for `context` ("" = current-context) of the kubeconfig file at `kubeconfig`."""
    where = f"kubeconfig {kubeconfig}" + (f" (context {context})" if context else "")
    if not kubeconfig or not os.path.isfile(kubeconfig):
        raise KubeConfigError(f"{where}: no such file; {KubeConfigError.hint}")
    try:
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context or None, persist_config=False
        )
    except (ConfigException, yaml.YAMLError, OSError, TypeError, KeyError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise KubeConfigError(f"{where}: unusable: {detail}; {KubeConfigError.hint}") from exc
    return KubeClient(api, source=kubeconfig, context=context)
