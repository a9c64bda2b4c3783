"""The pipeline's Kubernetes layer: the only package that imports `kubernetes`.

    from pipeline import kube
    with kube.connect(kubeconfig=path, context="") as kc:
        kube.server_side_apply(kc, manifests.objects, field_manager=kube.FIELD_MANAGER)
        outcome = kube.wait_for_rollout(kc, namespace=ns, name=app, generation=gen, timeout=300,
                                        on_progress=print, cancelled=lambda: False)

Every function takes the client first and everything else by keyword, returns
plain dicts or small frozen dataclasses, and raises only `KubeError`s (see
`pipeline.kube.errors` for the tree), translated from the client's errors in
one place (`errors.api_errors`).
"""

from pipeline.kube.apply import (
    CREATED_BY_ANNOTATION,
    ObjectChange,
    apply_one,
    create_marked,
    diff_for_dry_run,
    normalize,
    server_side_apply,
)
from pipeline.kube.client import KubeClient, connect, in_cluster
from pipeline.kube.errors import (
    KubeConfigError,
    KubeConflict,
    KubeError,
    KubeExpired,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeUnauthorized,
    KubeUnavailable,
    RolloutCancelled,
    RolloutFailed,
    RolloutTimedOut,
)
from pipeline.kube.objects import (
    delete_object,
    get_configmap,
    get_deployment,
    get_object,
    list_namespace,
    list_objects,
    scale_deployment,
)
from pipeline.kube.pods import ContainerState, PodInfo, ReplicaSetInfo, list_pods, pod_logs, replica_sets_of
from pipeline.kube.rollout import RolloutOutcome, RolloutProgress, wait_for_rollout

FIELD_MANAGER = "temporal-deploy-pipeline"

__all__ = [
    "CREATED_BY_ANNOTATION",
    "FIELD_MANAGER",
    "ContainerState",
    "KubeClient",
    "KubeConfigError",
    "KubeConflict",
    "KubeError",
    "KubeExpired",
    "KubeForbidden",
    "KubeInvalid",
    "KubeNotFound",
    "KubeUnauthorized",
    "KubeUnavailable",
    "ObjectChange",
    "PodInfo",
    "ReplicaSetInfo",
    "RolloutCancelled",
    "RolloutFailed",
    "RolloutOutcome",
    "RolloutProgress",
    "RolloutTimedOut",
    "apply_one",
    "connect",
    "create_marked",
    "in_cluster",
    "delete_object",
    "diff_for_dry_run",
    "get_configmap",
    "get_deployment",
    "get_object",
    "list_namespace",
    "list_objects",
    "list_pods",
    "normalize",
    "pod_logs",
    "replica_sets_of",
    "scale_deployment",
    "server_side_apply",
    "wait_for_rollout",
]
