"""Authentication and RBAC authorization, as kube-apiserver does them (`--authorization-mode=RBAC`).

- Authentication (`authenticate`): the cluster's admin bearer token (the kubeconfig's) is `system:admin`
  in `system:masters` (kube's privileged group: every request allowed, no RBAC lookup); a ServiceAccount
  JWT this cluster issued (tokens.py) is `system:serviceaccount:<ns>:<name>` in `system:serviceaccounts`,
  `system:serviceaccounts:<ns>` and `system:authenticated` when its signature, `exp`/`nbf`, audience (the
  issuer: the API's own audience) hold and the ServiceAccount, and the Pod or Secret it is bound to, still
  exist with the uid the token names (pkg/serviceaccount's validator). Anything else is 401.
- Request attributes (`attributes`): apiserver's RequestInfoFactory: the verb (get, list, watch, create,
  update, patch, delete, deletecollection; for non-resource paths the lowercased method), API group,
  namespace, resource, subresource, name, or the path of a non-resource request.
- Authorization (`authorize`): the RBAC authorizer's rule walk over ClusterRoleBindings, then the
  RoleBindings of the request's namespace (rules: verbs, apiGroups, resources incl. `res/sub` and `*/sub`,
  resourceNames, nonResourceURLs with a trailing `*`; `*` everywhere). A binding whose role is missing
  adds `RBAC: role.rbac.authorization.k8s.io "x" not found` to the denial's reason, as kube does.
- The bootstrap policy (`ensure_bootstrap_policy`): the default ClusterRoles and ClusterRoleBindings kube's
  rbac/bootstrap-roles post-start hook creates that matter here (cluster-admin to system:masters,
  system:discovery, system:basic-user, system:public-info-viewer to system:authenticated, and admin, edit,
  view with their rules written out: aggregation rules are not evaluated).
- `forbidden()`: the 403 Status kube's authorization filter answers.
- SelfSubjectAccessReview, SelfSubjectRulesReview and SelfSubjectReview (`kubectl auth can-i [--list]`,
  `kubectl auth whoami`); kubectl posts the first two as protobuf (decoded by protobuf.py, as every body).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

import jwt

from bootstrap.cluster import errors
from bootstrap.cluster.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
)
from bootstrap.cluster.store import Obj, Store
from bootstrap.cluster.tokens import TokenIssuer

ADMIN_USER = "system:admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def info(self) -> Obj:
        """A UserInfo (authentication.k8s.io/v1), as SelfSubjectReview answers it."""
        out: Obj = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ADMIN = User(ADMIN_USER, (MASTERS, AUTHENTICATED))


def _service_account_user(store: Store, issuer: TokenIssuer, token: str) -> User | None:
    try:
        claims = jwt.decode(
            token,
            issuer.private_key.public_key(),
            algorithms=["RS256"],
            audience=issuer.issuer,
            issuer=issuer.issuer,
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.PyJWTError:
        return None
    private = claims.get("kubernetes.io")
    if not isinstance(private, dict):
        return None
    namespace = str(private.get("namespace") or "")
    sa = private.get("serviceaccount") or {}
    name, uid = str(sa.get("name") or ""), str(sa.get("uid") or "")
    if not namespace or not name or claims.get("sub") != f"{SA_PREFIX}{namespace}:{name}":
        return None
    account = store.try_get(SERVICEACCOUNTS, namespace, name)
    if account is None or account["metadata"].get("uid") != uid or account["metadata"].get("deletionTimestamp"):
        return None
    extra: dict[str, list[str]] = {}
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
    for key, res in (("pod", PODS), ("secret", SECRETS)):
        bound = private.get(key)
        if not isinstance(bound, dict):
            continue
        found = store.try_get(res, namespace, str(bound.get("name") or ""))
        if found is None or found["metadata"].get("uid") != bound.get("uid") or found["metadata"].get("deletionTimestamp"):
            return None
        if key == "pod":
            extra["authentication.kubernetes.io/pod-name"] = [str(bound.get("name"))]
            extra["authentication.kubernetes.io/pod-uid"] = [str(bound.get("uid"))]
    node = private.get("node")
    if isinstance(node, dict) and node.get("name"):
        extra["authentication.kubernetes.io/node-name"] = [str(node["name"])]
        extra["authentication.kubernetes.io/node-uid"] = [str(node.get("uid") or "")]
    return User(
        f"{SA_PREFIX}{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
        uid,
        extra,
    )


def authenticate(token: str, *, admin_token: str, store: Store, issuer: TokenIssuer | None) -> User | None:
    """The user a bearer token stands for; None: 401."""
    if token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return ADMIN
    if issuer is None or token.count(".") != 2:
        return None
    return _service_account_user(store, issuer, token)


# ----- request attributes -----


@dataclass(frozen=True)
class Attributes:
    user: User
    verb: str
    resource_request: bool
    path: str = ""
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


def attributes(user: User, method: str, path: str, query: Any) -> Attributes:
    """apiserver's RequestInfoFactory.NewRequestInfo: the verb and what the request names."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(user, method.lower(), False, path=path)
    verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
        if not rest:
            return Attributes(user, method.lower(), False, path=path)
    namespace = ""
    if rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    if not name and verb in ("get", "watch"):
        verb = "watch" if verb == "watch" or str(query.get("watch", "")).lower() in ("1", "true") else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    elif name and verb == "get" and str(query.get("watch", "")).lower() in ("1", "true"):
        verb = "watch"
    if verb in ("list", "watch") and not name:
        for term in str(query.get("fieldSelector", "")).split(","):
            key, _, value = term.partition("=")
            if key.strip() == "metadata.name" and value and not value.startswith("="):
                name = value.strip()
    return Attributes(user, verb, True, path, namespace, group, version, resource, subresource, name)


# ----- RBAC -----


def _verb_matches(rule: Obj, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _rule_allows(attrs: Attributes, rule: Obj) -> bool:
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.api_group not in groups:
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not any(r == "*" or r == combined or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _applies_to(user: User, subject: Obj, namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == f"{SA_PREFIX}{sa_namespace}:{name}"
    return False


def _describe_subject(subject: Obj, namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _role_rules(store: Store, ref: Obj, namespace: str) -> tuple[list[Obj] | None, str]:
    kind, name = ref.get("kind"), str(ref.get("name") or "")
    if kind == "ClusterRole":
        role = store.try_get(CLUSTERROLES, None, name)
        missing = f'clusterrole.{RBAC_GROUP} "{name}" not found'
    elif kind == "Role" and namespace:
        role = store.try_get(ROLES, namespace, name)
        missing = f'role.{RBAC_GROUP} "{name}" not found'
    else:
        return None, f'unsupported role reference kind: "{kind}"'
    if role is None:
        return None, missing
    return [r for r in role.get("rules") or [] if isinstance(r, dict)], ""


def authorize(store: Store, attrs: Attributes) -> tuple[bool, str]:
    """(allowed, reason) as kube's authorizer chain answers: system:masters, then RBAC."""
    if MASTERS in attrs.user.groups:
        return True, ""
    problems: list[str] = []
    bindings: list[tuple[Obj, str, str]] = [(b, "", "ClusterRoleBinding") for b in store.list(CLUSTERROLEBINDINGS)]
    if attrs.namespace:
        bindings += [(b, attrs.namespace, "RoleBinding") for b in store.list(ROLEBINDINGS, attrs.namespace)]
    for binding, namespace, binding_kind in bindings:
        subjects = [s for s in binding.get("subjects") or [] if isinstance(s, dict)]
        matched = next((s for s in subjects if _applies_to(attrs.user, s, namespace)), None)
        if matched is None:
            continue
        ref = binding.get("roleRef") or {}
        rules, problem = _role_rules(store, ref, namespace)
        if rules is None:
            problems.append(problem)
            continue
        for rule in rules:
            if _rule_allows(attrs, rule):
                name = binding["metadata"]["name"] + (f"/{namespace}" if namespace else "")
                return True, (
                    f'RBAC: allowed by {binding_kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" '
                    f"to {_describe_subject(matched, namespace)}"
                )
    if problems:
        return False, "RBAC: " + (problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
    return False, ""


def forbidden(attrs: Attributes, reason: str) -> errors.ApiError:
    """The authorization filter's 403 (responsewriters.Forbidden)."""
    user = attrs.user.name
    if not attrs.resource_request:
        msg = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        msg = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
        msg += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    if reason:
        msg = f"{msg}: {reason}"
    if not attrs.resource_request or not attrs.resource:
        return errors.ApiError(403, "Forbidden", f"forbidden: {msg}", details={})
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    details: Obj = {"kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return errors.ApiError(403, "Forbidden", f"{subject} is forbidden: {msg}", details=details)


# ----- self-subject reviews -----


def _review_meta() -> Obj:
    return {"creationTimestamp": None}


def self_subject_access_review(store: Store, user: User, body: Any) -> Obj:
    """authorization.k8s.io/v1 SelfSubjectAccessReview create: the spec echoed with status.allowed."""
    kind = "SelfSubjectAccessReview"
    group = "authorization.k8s.io"
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be an object")
    spec = body.get("spec") or {}
    res_attrs, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes") or {}
    if res_attrs and non_res:
        raise errors.invalid(
            kind,
            "",
            [("spec.nonResourceAttributes", "Invalid value: cannot be specified in combination with resourceAttributes")],
            group,
        )
    if not res_attrs and not non_res:
        raise errors.invalid(
            kind,
            "",
            [
                (
                    "spec.resourceAttributes",
                    "Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
            group,
        )
    if res_attrs:
        attrs = Attributes(
            user,
            str(res_attrs.get("verb") or ""),
            True,
            namespace=str(res_attrs.get("namespace") or ""),
            api_group=str(res_attrs.get("group") or ""),
            api_version=str(res_attrs.get("version") or ""),
            resource=str(res_attrs.get("resource") or ""),
            subresource=str(res_attrs.get("subresource") or ""),
            name=str(res_attrs.get("name") or ""),
        )
    else:
        attrs = Attributes(user, str(non_res.get("verb") or ""), False, path=str(non_res.get("path") or ""))
    allowed, reason = authorize(store, attrs)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {
        "kind": kind,
        "apiVersion": f"{group}/v1",
        "metadata": {**(body.get("metadata") or {}), **_review_meta()},
        "spec": spec,
        "status": status,
    }


def rules_for(store: Store, user: User, namespace: str) -> tuple[list[Obj], list[Obj], list[str]]:
    """(resource rules, non-resource rules, errors) that apply to `user` in `namespace` (the RBAC RulesFor)."""
    if MASTERS in user.groups:
        return (
            [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            [],
        )
    resource_rules: list[Obj] = []
    non_resource_rules: list[Obj] = []
    problems: list[str] = []
    bindings: list[tuple[Obj, str]] = [(b, "") for b in store.list(CLUSTERROLEBINDINGS)]
    if namespace:
        bindings += [(b, namespace) for b in store.list(ROLEBINDINGS, namespace)]
    for binding, ns in bindings:
        if not any(_applies_to(user, s, ns) for s in binding.get("subjects") or [] if isinstance(s, dict)):
            continue
        rules, problem = _role_rules(store, binding.get("roleRef") or {}, ns)
        if rules is None:
            problems.append(problem)
            continue
        for rule in rules:
            if rule.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]})
            else:
                out = {k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if rule.get(k)}
                out.setdefault("verbs", [])
                resource_rules.append(out)
    return resource_rules, non_resource_rules, problems


def self_subject_rules_review(store: Store, user: User, body: Any) -> Obj:
    """authorization.k8s.io/v1 SelfSubjectRulesReview create (`kubectl auth can-i --list`)."""
    spec = (body.get("spec") if isinstance(body, dict) else None) or {}
    namespace = str(spec.get("namespace") or "")
    resource_rules, non_resource_rules, problems = rules_for(store, user, namespace)
    status: Obj = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": bool(problems)}
    if problems:
        status["evaluationError"] = "[" + ", ".join(problems) + "]"
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": _review_meta(),
        "spec": spec,
        "status": status,
    }


def self_subject_review(user: User) -> Obj:
    """authentication.k8s.io/v1 SelfSubjectReview create: who the caller is."""
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": _review_meta(),
        "status": {"userInfo": user.info()},
    }


# ----- bootstrap policy -----

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_VIEW_RULES: list[Obj] = [
    {
        "apiGroups": [""],
        "resources": [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": [""],
        "resources": [
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ],
        "verbs": _READ,
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
    {
        "apiGroups": ["apps"],
        "resources": [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
        "verbs": _READ,
    },
    {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], "verbs": _READ},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": _READ},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _READ},
]
_EDIT_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets"], "verbs": _READ},
    {
        "apiGroups": [""],
        "resources": [
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {
        "apiGroups": ["apps"],
        "resources": [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": _WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _WRITE},
    *_VIEW_RULES,
]
_ADMIN_RULES: list[Obj] = [
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
    {"apiGroups": [RBAC_GROUP], "resources": ["rolebindings", "roles"], "verbs": [*_WRITE, *_READ]},
    *_EDIT_RULES,
]
_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
CLUSTER_ROLES: dict[str, list[Obj]] = {
    "cluster-admin": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
    "system:discovery": [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}],
    "system:basic-user": [
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            "verbs": ["create"],
        },
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    ],
    "system:public-info-viewer": [
        {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}
    ],
    "system:service-account-issuer-discovery": [
        {"nonResourceURLs": ["/.well-known/openid-configuration", "/openid/v1/jwks"], "verbs": ["get"]}
    ],
    "view": _VIEW_RULES,
    "edit": _EDIT_RULES,
    "admin": _ADMIN_RULES,
}
CLUSTER_ROLE_BINDINGS: dict[str, list[Obj]] = {
    "cluster-admin": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": MASTERS}],
    "system:discovery": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": AUTHENTICATED}],
    "system:basic-user": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": AUTHENTICATED}],
    "system:public-info-viewer": [
        {"apiGroup": RBAC_GROUP, "kind": "Group", "name": AUTHENTICATED},
        {"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:unauthenticated"},
    ],
    "system:service-account-issuer-discovery": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:serviceaccounts"}],
}
_BOOTSTRAP_META: Obj = {
    "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
}


def ensure_bootstrap_policy(store: Store) -> None:
    """Create the default ClusterRoles and ClusterRoleBindings that are missing (kube's bootstrap-roles hook)."""
    for name, rules in CLUSTER_ROLES.items():
        if store.try_get(CLUSTERROLES, None, name) is None:
            meta = {"name": name, **{k: dict(v) for k, v in _BOOTSTRAP_META.items()}}
            store.create(CLUSTERROLES, {"metadata": meta, "rules": rules})
    for name, subjects in CLUSTER_ROLE_BINDINGS.items():
        if store.try_get(CLUSTERROLEBINDINGS, None, name) is None:
            meta = {"name": name, **{k: dict(v) for k, v in _BOOTSTRAP_META.items()}}
            ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}
            store.create(CLUSTERROLEBINDINGS, {"metadata": meta, "roleRef": ref, "subjects": subjects})
