"""The optional imagePullSecret of target "aks" ([acr].image_pull_secret): an ACR credential kept in the cluster.

By default AKS pulls from ACR with the kubelet identity (AcrPull on the
registry) and nothing is rendered. With `[acr].image_pull_secret = "name"`
the rendered Deployment references that Secret by name, and the apply
activity calls `ensure` first: it reads the registry's credential
(Registries_ListCredentials, the admin user) and server-side-applies a
`kubernetes.io/dockerconfigjson` Secret in the app's namespace. The value
exists only in this activity's memory and in the cluster: not in the
workflow's input, result or history, and it is never logged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from pipeline import kube
from pipeline.azure import acr
from pipeline.models import ImagePullSecretRef

FIELD_MANAGER = kube.FIELD_MANAGER


def secret_object(*, name: str, namespace: str, login: acr.RegistryLogin) -> dict[str, Any]:
    auth = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    config = {"auths": {login.login_server: {"username": login.username, "password": login.password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def ensure(kc: kube.KubeClient, ref: ImagePullSecretRef, *, manifests: Sequence[dict[str, Any]]) -> None:
    """Write the pull Secret into every namespace of `manifests` that has a Deployment (creating the Namespace first)."""
    namespaces = {str(o["metadata"].get("namespace", "")) for o in manifests if o.get("kind") == "Deployment"}
    if not namespaces:
        return
    registry = acr.Registry(
        subscription_id=ref.registry.subscription_id,
        resource_group=ref.registry.resource_group,
        name=ref.registry.name,
        endpoint=ref.registry.endpoint,
    )
    with acr.session(registry) as session:
        login = session.admin_login()
    ns_objects = [o for o in manifests if o.get("kind") == "Namespace" and o["metadata"]["name"] in namespaces]
    if ns_objects:
        kube.server_side_apply(kc, ns_objects, field_manager=FIELD_MANAGER, force=True)
    kube.server_side_apply(
        kc,
        [secret_object(name=ref.name, namespace=ns, login=login) for ns in sorted(namespaces)],
        field_manager=FIELD_MANAGER,
        force=True,
    )
