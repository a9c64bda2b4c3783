"""The resource types the local cluster serves, as discovery and the REST paths describe them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> str:
        """Stable identifier used by the store and its files, e.g. "apps/deployments"."""
        return f"{self.group or 'core'}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", False, ("ns",), has_status=True, subresources=("status",))
NODES = ResourceType("", "v1", "Node", "nodes", False, ("no",), has_status=True, subresources=("status",))
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",))
SECRETS = ResourceType("", "v1", "Secret", "secrets", True)
SERVICEACCOUNTS = ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), subresources=("token",))
SERVICES = ResourceType("", "v1", "Service", "services", True, ("svc",), has_status=True, subresources=("status",))
EVENTS = ResourceType("", "v1", "Event", "events", True, ("ev",))
PODS = ResourceType(
    "", "v1", "Pod", "pods", True, ("po",), has_status=True, subresources=("status", "log", "exec", "attach", "portforward")
)
DEPLOYMENTS = ResourceType(
    "apps", "v1", "Deployment", "deployments", True, ("deploy",), has_status=True, subresources=("status", "scale")
)
REPLICASETS = ResourceType(
    "apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), has_status=True, subresources=("status", "scale")
)
JOBS = ResourceType("batch", "v1", "Job", "jobs", True, has_status=True, subresources=("status",))
CRONJOBS = ResourceType("batch", "v1", "CronJob", "cronjobs", True, ("cj",), has_status=True, subresources=("status",))
LEASES = ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True)
ROLES = ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True)
ROLEBINDINGS = ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True)
CLUSTERROLES = ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False)
CLUSTERROLEBINDINGS = ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False)
PODDISRUPTIONBUDGETS = ResourceType(
    "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), has_status=True, subresources=("status",)
)
HORIZONTALPODAUTOSCALERS = ResourceType(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    True,
    ("hpa",),
    has_status=True,
    subresources=("status",),
)
# Create-only, never stored (rbac.py): discovery lists them, the API answers their POSTs itself.
SELFSUBJECTACCESSREVIEWS = ResourceType(
    "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False
)
SELFSUBJECTRULESREVIEWS = ResourceType("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False)
SELFSUBJECTREVIEWS = ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False)
CREATE_ONLY: tuple[ResourceType, ...] = (SELFSUBJECTACCESSREVIEWS, SELFSUBJECTRULESREVIEWS, SELFSUBJECTREVIEWS)

ALL: tuple[ResourceType, ...] = (
    NAMESPACES,
    NODES,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    EVENTS,
    PODS,
    DEPLOYMENTS,
    REPLICASETS,
    JOBS,
    CRONJOBS,
    ROLES,
    ROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERROLEBINDINGS,
    LEASES,
    PODDISRUPTIONBUDGETS,
    HORIZONTALPODAUTOSCALERS,
)

BY_KEY = {r.key: r for r in ALL}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for r in ALL:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in ALL:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None


def groups() -> dict[str, list[ResourceType]]:
    """Named API groups (not the core group) with their resources, in discovery order."""
    result: dict[str, list[ResourceType]] = {}
    for r in ALL + CREATE_ONLY:
        if r.group:
            result.setdefault(r.group, []).append(r)
    return result
