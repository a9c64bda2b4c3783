"""`pipeline teardown [--azure] [--yes]`: remove what `pipeline bootstrap` made, and only that.

    facts = teardown.observe(config, azure=True)     # reads only (Kubernetes, and with azure=True ARM)
    plan = teardown.plan(facts)                     # pure: what goes, what stays, and why
    print("\\n".join(plan.lines()))
    teardown.execute(config, plan, say=print)        # deletes in plan order, waits until each is gone

Observed state -> a pure plan -> a thin executor (the shape of temporal-worker-controller's
genplan/execplan): tests assert on `plan(...)` with hand-made facts; `execute` only follows it.

What tells the pipeline's own from what existed before:

| what | mark | set by |
|---|---|---|
| Kubernetes objects in `[kubernetes].namespace` | label `app.kubernetes.io/managed-by=temporal-deploy-pipeline` | every object the pipeline applies (render.py, revisions.py, azure/pull_secret.py) |
| that Namespace | annotation `pipeline.temporal.io/created-by` | only when the pipeline created it (kube/apply.py); an existing one only gets the label |
| resource group, registry, AKS cluster, managed identity | tag `created-by: temporal-deploy-pipeline` | only when `bootstrap --azure` created it (azure/provision.py); one it reused is not tagged |
| role assignments (no tags in Azure) | bootstrap's name for it: a GUID of scope + principal + role | `provision.role_assignment_name`; the same role under another name was made by someone else |
| the federated credential (no tags) | its name `<namespace>-<pipeline app>`, trusting the issuer of a cluster bootstrap created | such a credential cannot have existed before that cluster |

Everything the pipeline deployed into its namespace carries the label, so the apps it deployed go
too (the plan lists each). Order: the Kubernetes objects (workloads first, the namespace last;
skipped when the AKS cluster itself goes), then role assignments, the federated credential, the
identity, the cluster, the registry, the resource group. A resource group bootstrap created is
deleted only when nothing it did not create is known to be in it; deleting it deletes whatever else
Azure holds in it (the plan says so). Images in a registry that is left, and the Temporal side
(search attributes, workflow histories), are left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline import kube
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.inputs import cluster_ref
from pipeline.models import ClusterRef
from pipeline.render import MANAGED_BY

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
AZURE_TAG = ("created-by", MANAGED_BY)
"""The tag `bootstrap --azure` puts on what it creates (never on what it reuses)."""
# What Kubernetes itself puts in every namespace: neither the pipeline's nor someone else's.
AUTOMATIC = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})
# Pods and ReplicaSets go with their Deployment or Job (owner references): never listed.
OWNED_KINDS = frozenset({"Pod", "ReplicaSet"})
# Workloads first (their pods stop), then what they use; the Namespace after everything in it.
KUBE_ORDER = ("Deployment", "Job", "Service", "RoleBinding", "Role", "ConfigMap", "Secret", "ServiceAccount")
GONE_TIMEOUT = 180.0  # seconds teardown waits for the deleted Kubernetes objects (pods stopping, the namespace emptying)

Layer = Literal["kubernetes", "azure"]


# ----- what was observed (plain data, built by `observe`, or by hand in tests) -----


@dataclass(frozen=True)
class KubeObject:
    api_version: str
    kind: str
    namespace: str
    name: str
    managed: bool  # labelled app.kubernetes.io/managed-by=temporal-deploy-pipeline
    owned: bool = False  # has ownerReferences: goes with its owner
    marked: bool = False  # a Namespace with kube.CREATED_BY_ANNOTATION = the pipeline's field manager: the pipeline created it


def kube_object(obj: Mapping[str, Any]) -> KubeObject:
    """The facts teardown needs about one live object (with apiVersion and kind set)."""
    meta = obj.get("metadata") or {}
    return KubeObject(
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name", "")),
        managed=(meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY,
        owned=bool(meta.get("ownerReferences")),
        marked=(meta.get("annotations") or {}).get(kube.CREATED_BY_ANNOTATION) == kube.FIELD_MANAGER,
    )


@dataclass(frozen=True)
class KubeFacts:
    cluster: str  # how messages name the cluster
    namespace: str
    namespace_object: KubeObject | None  # None: the namespace does not exist
    objects: tuple[KubeObject, ...] = ()  # what is in it, of the kinds pipeline/kube knows


@dataclass(frozen=True)
class AzureResource:
    kind: str  # "resource group", "registry", "AKS cluster", "managed identity"
    name: str
    id: str
    tagged: bool  # carries AZURE_TAG: bootstrap created it


@dataclass(frozen=True)
class FederatedCredential:
    name: str
    identity: str
    id: str
    issuer: str
    subject: str


@dataclass(frozen=True)
class RoleAssignment:
    role_name: str
    label: str  # "for <identity> on <registry>"
    id: str  # the assignment's ARM id
    bootstraps: bool  # under bootstrap's name for this principal + role + scope


@dataclass(frozen=True)
class AzureFacts:
    subscription_id: str
    resource_group: str
    group: AzureResource | None = None
    registry: AzureResource | None = None
    cluster: AzureResource | None = None
    cluster_issuer: str = ""  # the cluster's OIDC issuer URL
    identity: AzureResource | None = None
    credential: FederatedCredential | None = None  # bootstrap's name for it, when it exists
    subject: str = ""  # the subject bootstrap's credential trusts (the pipeline worker's ServiceAccount)
    role_assignments: tuple[RoleAssignment, ...] = ()


@dataclass(frozen=True)
class Facts:
    kube: KubeFacts | None = None  # None: not looked at (see kube_note)
    azure: AzureFacts | None = None
    kube_note: str = ""  # why the cluster was not looked at


# ----- the plan -----


@dataclass(frozen=True)
class Item:
    layer: Layer
    kind: str
    name: str
    why: str
    key: tuple[str, ...] = ()  # kubernetes: (apiVersion, kind, namespace, name); azure: (kind, ARM id)

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.why}"


@dataclass(frozen=True)
class Plan:
    delete: tuple[Item, ...] = ()  # in the order they are deleted
    leave: tuple[Item, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        out = [f"note: {n}" for n in self.notes]
        if not self.delete:
            out.append("nothing to delete: nothing `pipeline bootstrap` made is left")
        else:
            out.append(f"delete ({len(self.delete)}, in this order):")
            out += [f"  {item.line()}" for item in self.delete]
        if self.leave:
            out.append(f"leave ({len(self.leave)}):")
            out += [f"  {item.line()}" for item in self.leave]
        return out


def plan(facts: Facts) -> Plan:
    """What to delete and what to leave, from the facts alone (no I/O)."""
    delete: list[Item] = []
    leave: list[Item] = []
    notes = [facts.kube_note] if facts.kube_note else []
    if facts.kube is not None:
        kube_delete, kube_leave = _plan_kube(facts.kube)
        delete += kube_delete
        leave += kube_leave
    if facts.azure is not None:
        azure_delete, azure_leave = _plan_azure(facts.azure)
        delete += azure_delete
        leave += azure_leave
    return Plan(tuple(delete), tuple(leave), tuple(notes))


def _kube_item(obj: KubeObject, why: str) -> Item:
    name = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
    return Item("kubernetes", obj.kind, name, why, (obj.api_version, obj.kind, obj.namespace, obj.name))


def _plan_kube(facts: KubeFacts) -> tuple[list[Item], list[Item]]:
    listed = [o for o in facts.objects if not o.owned and o.kind not in OWNED_KINDS and (o.kind, o.name) not in AUTOMATIC]
    ours = sorted((o for o in listed if o.managed), key=lambda o: (_rank(o.kind), o.name))
    others = [o for o in listed if not o.managed]
    delete = [_kube_item(o, f"labelled {MANAGED_BY_LABEL}={MANAGED_BY}") for o in ours]
    leave = [_kube_item(o, f"not the pipeline's (no {MANAGED_BY_LABEL}={MANAGED_BY} label)") for o in others]
    ns = facts.namespace_object
    if ns is not None:
        if not ns.marked:
            leave.append(_kube_item(ns, f"existed before the pipeline (no {kube.CREATED_BY_ANNOTATION} annotation)"))
        elif others:
            leave.append(
                _kube_item(ns, f"created by the pipeline, but it holds {len(others)} object(s) that are not the pipeline's")
            )
        else:
            delete.append(_kube_item(ns, f"created by the pipeline ({kube.CREATED_BY_ANNOTATION})"))
    return delete, leave


def _rank(kind: str) -> int:
    return KUBE_ORDER.index(kind) if kind in KUBE_ORDER else len(KUBE_ORDER)


def _azure_item(resource: AzureResource | FederatedCredential | RoleAssignment, kind: str, name: str, why: str) -> Item:
    return Item("azure", kind, name, why, (kind, resource.id))


TAG_TEXT = f"tag {AZURE_TAG[0]}: {AZURE_TAG[1]}"


def _plan_azure(facts: AzureFacts) -> tuple[list[Item], list[Item]]:
    delete: list[Item] = []
    leave: list[Item] = []
    for ra in facts.role_assignments:
        kind, name = f"{ra.role_name} role assignment", ra.label
        if ra.bootstraps:
            delete.append(_azure_item(ra, kind, name, "made by bootstrap (under its name for this principal, role and scope)"))
        else:
            leave.append(_azure_item(ra, kind, name, "made under another name, not by bootstrap"))
    identity_goes = facts.identity is not None and facts.identity.tagged
    cluster_goes = facts.cluster is not None and facts.cluster.tagged
    cred = facts.credential
    if cred is not None:
        kind, name = "federated identity credential", f"{cred.name} of {cred.identity}"
        if identity_goes:
            delete.append(_azure_item(cred, kind, name, "of the managed identity bootstrap created"))
        elif cluster_goes and cred.issuer == facts.cluster_issuer and cred.subject == facts.subject:
            delete.append(_azure_item(cred, kind, name, "trusts the OIDC issuer of the AKS cluster bootstrap created"))
        else:
            leave.append(_azure_item(cred, kind, name, "may have existed before (credentials carry no tags)"))
    resources = [
        (facts.identity, ""),
        (facts.cluster, "; its Kubernetes objects go with it"),
        (facts.registry, "; its images go with it"),
    ]
    for resource, consequence in resources:
        if resource is None:
            continue
        if resource.tagged:
            delete.append(_azure_item(resource, resource.kind, resource.name, f"created by bootstrap ({TAG_TEXT}){consequence}"))
        else:
            leave.append(_azure_item(resource, resource.kind, resource.name, f"existed before bootstrap (no {TAG_TEXT})"))
    group = facts.group
    if group is not None:
        kept = [r.name for r, _ in resources if r is not None and not r.tagged]
        if not group.tagged:
            leave.append(_azure_item(group, group.kind, group.name, f"existed before bootstrap (no {TAG_TEXT})"))
        elif kept:
            leave.append(
                _azure_item(
                    group,
                    group.kind,
                    group.name,
                    f"created by bootstrap, but it holds {', '.join(kept)}, which bootstrap did not create",
                )
            )
        else:
            delete.append(
                _azure_item(
                    group, group.kind, group.name, f"created by bootstrap ({TAG_TEXT}); deleting it deletes anything else in it"
                )
            )
    return delete, leave


# ----- reading the facts -----


def observe(config: PipelineConfig, *, azure: bool) -> Facts:
    """Read what exists: the pipeline's namespace in its cluster, and with `azure` the resources bootstrap --azure makes.

    With `azure`, an AKS cluster that bootstrap created is not connected to: its objects go with it.
    """
    azure_facts = None
    if azure:
        from pipeline.azure import provision  # only --azure needs the Azure SDKs

        azure_facts = provision.observe(provision.plan_for(config))
        if azure_facts.cluster is None:
            return Facts(
                azure=azure_facts,
                kube_note=f"AKS cluster {config.aks.cluster_name} does not exist: no Kubernetes objects to look at",
            )
        if azure_facts.cluster.tagged:
            return Facts(azure=azure_facts, kube_note=f"the Kubernetes objects go with AKS cluster {config.aks.cluster_name}")
    return Facts(kube=observe_kube(cluster_ref(config), namespace=config.kubernetes.namespace), azure=azure_facts)


def observe_kube(cluster: ClusterRef, *, namespace: str) -> KubeFacts:
    where = f"AKS cluster {cluster.aks.cluster_name}" if cluster.aks else f"the cluster of {cluster.kubeconfig}"
    with _connect(cluster) as kc:
        found = kube.get_object(kc, api_version="v1", kind="Namespace", name=namespace)
        objects = kube.list_namespace(kc, namespace=namespace, skip=OWNED_KINDS) if found is not None else []
    return KubeFacts(
        cluster=where,
        namespace=namespace,
        namespace_object=kube_object({**found, "apiVersion": "v1", "kind": "Namespace"}) if found else None,
        objects=tuple(kube_object(o) for o in objects),
    )


def _connect(cluster: ClusterRef) -> kube.KubeClient:
    if cluster.aks is not None:
        from pipeline.azure import aks  # only target aks needs the Azure SDKs

        return aks.connect(cluster.aks, context=cluster.context)
    return kube.connect(kubeconfig=cluster.kubeconfig, context=cluster.context)


# ----- doing it -----


@dataclass
class Progress:
    """What `execute` did: deleted (or found already gone) and still there after waiting."""

    deleted: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)


def execute(config: PipelineConfig, the_plan: Plan, *, say: Callable[[str], None], timeout: float = GONE_TIMEOUT) -> Progress:
    """Delete the plan's items in order, one line each; wait for Kubernetes objects to be gone and for Azure's
    long-running deletes to end. Raises the first PipelineError (what was deleted before it stays deleted)."""
    progress = Progress()
    kube_items = [i for i in the_plan.delete if i.layer == "kubernetes"]
    azure_items = [i for i in the_plan.delete if i.layer == "azure"]
    if kube_items:
        with _connect(cluster_ref(config)) as kc:
            for item in kube_items:
                api_version, kind, namespace, name = item.key
                gone = not kube.delete_object(
                    kc, api_version=api_version, kind=kind, namespace=namespace, name=name, propagation="Foreground"
                )
                say(f"deleted {item.kind} {item.name}" + (" (it was already gone)" if gone else ""))
                progress.deleted.append(f"{item.kind} {item.name}")
            progress.remaining = _wait_gone(kc, kube_items, timeout=timeout)
        if progress.remaining:
            raise PipelineError(
                f"deleted, but still there after {timeout:.0f}s: {', '.join(progress.remaining)}; "
                "look at them with kubectl (a finalizer or a stuck pod?), then run `pipeline teardown` again"
            )
    if azure_items:
        from pipeline.azure import provision

        for item in azure_items:
            say(f"deleting {item.kind} {item.name} ...")
            existed = provision.delete(provision.plan_for(config), kind=item.key[0], resource_id=item.key[1])
            say(f"deleted {item.kind} {item.name}" + ("" if existed else " (it was already gone)"))
            progress.deleted.append(f"{item.kind} {item.name}")
    return progress


def _wait_gone(kc: kube.KubeClient, items: list[Item], *, timeout: float) -> list[str]:
    """Poll until every deleted object is gone (a Deployment's pods stop, a namespace empties); the ones still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            f"{i.kind} {i.name}"
            for i in items
            if kube.get_object(kc, api_version=i.key[0], kind=i.key[1], namespace=i.key[2], name=i.key[3]) is not None
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def run(
    config: PipelineConfig,
    *,
    azure: bool,
    yes: bool,
    interactive: bool,
    confirm: Callable[[str], bool],
    say: Callable[[str], None],
) -> int:
    """The command: observe, print the plan, ask (or refuse to ask), execute; the exit code (0 done or nothing to do,
    1 declined). Without --yes and without a terminal to ask on: PipelineError, nothing deleted."""
    if azure and config.target != "aks":
        raise PipelineError(
            f'{config.source}: `pipeline teardown --azure` needs target = "aks" (it is "{config.target}"); '
            "run `pipeline teardown` without --azure for the local cluster"
        )
    the_plan = plan(observe(config, azure=azure))
    if config.target == "aks" and not azure:
        the_plan = Plan(the_plan.delete, the_plan.leave, (*the_plan.notes, "Azure resources are not looked at: add --azure"))
    for line in the_plan.lines():
        say(line)
    count = len(the_plan.delete)
    if not count:
        return 0
    again = "pipeline teardown" + (" --azure" if azure else "")
    if not yes:
        if not interactive:
            raise PipelineError(
                f"{again}: not deleting the {count} listed above without confirmation, and there is no terminal to ask on; "
                f"run `{again} --yes`"
            )
        if not confirm(f"Delete these {count}?"):
            say("nothing deleted")
            return 1
    execute(config, the_plan, say=say)
    say(f"teardown done: {count} deleted; `{again}` again finds nothing of them")
    return 0
