"""Azure bring-up for `pipeline bootstrap --azure`: resource group, ACR registry, AKS cluster, AcrPull, workload identity.

    outcomes = provision.provision(provision.plan_for(config), say=print)

Nothing is created before preflight.py has checked that the caller may perform every action below (the
permissions API) and that the registry name is free in Azure (checkNameAvailability). Then each `ensure_*` reads
first (GET) and does exactly one of three things:

- absent: create it with one PUT; a long-running PUT (registry, cluster) is
  polled to its end by azure-core's poller (`begin_...().result()`), which
  waits what ARM's `Retry-After` says, else `Plan.polling_interval`;
- present and compatible: nothing (no PUT: a second run changes nothing);
- present and incompatible: `IncompatibleResource`, one line naming the
  resource and the mismatch, and nothing is changed: the pipeline never
  rewrites a resource someone else may depend on.

"Compatible" means: what the pipeline needs works with it, and the PUT this
module would send would not be refused or change it:

| resource | compatible when | why |
|---|---|---|
| resource group | it exists (any location) | a group's location is only where its metadata lives |
| registry | created with an explicit `roleAssignmentMode` ([acr].role_assignment_mode); provisioningState Succeeded; location = `[azure].location`; login server = `[acr].login_server`; admin user enabled if `[acr].image_pull_secret` is set | ARM refuses to move a resource (InvalidResourceLocation); images are named by the login server; the pull Secret is filled from the admin credentials. Any SKU: Basic, Standard and Premium all run ACR Tasks (a new one is Standard) |
| AKS cluster | provisioningState Succeeded; location = `[azure].location`; OIDC issuer and workload identity enabled; a kubelet managed identity | the pipeline pod authenticates by workload identity (OIDC federation); pulls use the kubelet identity |
| AcrPull (Container Registry Repository Reader for a registry in ABAC mode, read from the registry) | a role assignment to the kubelet identity's objectId at the registry's scope, under our name or any other (ARM's 409 RoleAssignmentExists) | the kubelet pulls the images ACR Tasks pushed; an ABAC registry does not honour AcrPull |
| managed identity `[azure].identity` | it exists (user-assigned) | the pipeline worker's pods are this identity (workload identity) |
| its federated credential `<namespace>-<pipeline app>` | issuer = the cluster's OIDC issuer URL, subject `system:serviceaccount:<namespace>:<pipeline app>`, audiences `[api://AzureADTokenExchange]` | Entra ID exchanges the pods' projected ServiceAccount token for the identity's token |
| the identity's roles | Container Registry Tasks Contributor and AcrPush (Container Registry Repository Writer in ABAC mode) on the registry, Azure Kubernetes Service Cluster User Role on the cluster (each under any name) | the in-cluster worker uploads nothing but schedules and follows ACR runs, pushes a multi-platform build's image index, and fetches the cluster's user kubeconfig |

What this module creates (resource group, registry, cluster, identity) carries the tag `created-by:
temporal-deploy-pipeline` (`teardown.AZURE_TAG`); what it finds and reuses is never tagged (nor changed).
Role assignments have no tags: bootstrap's are the ones under `role_assignment_name(scope, principal, role)`.
`observe` and `delete` (the end of this module) are `pipeline teardown --azure`'s reads and deletes.

A resource still in an operation (ACR's Creating/Updating/Deleting, AKS's also Upgrading/Scaling/Starting/
Stopping/Canceling) is "wait, then run again", never "repair". With `assign_roles=False` (`--no-role-assignments`)
role assignments are only looked for (role_grants.py); the absent ones are returned as pending outcomes.

Role ids are Microsoft's built-in ones (the same GUID in every tenant), copied
from Microsoft's built-in role documentation; tests compare them with that
copy (tests/azure/examples/builtin-roles.json), never with the imitation's.

Failures are one line each: a failed long-running operation is
`AzureOperationFailed` with ARM's error code and message (the resource is
left as ARM left it, typically provisioningState Failed); a 409 Conflict is
`AzureBadRequest` with ARM's code and message; everything else goes through
`errors.translate`. Only names and ids are printed; no credential is ever read
here beyond what `DefaultAzureCredential` does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.exceptions import AzureError as SdkAzureError, HttpResponseError, ResourceNotFoundError
from azure.core.polling.base_polling import OperationFailed
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models
from azure.mgmt.containerservice import models as aks_models
from azure.mgmt.msi.v2024_11_30 import models as msi_models

from pipeline.azure import preflight, role_grants, roles
from pipeline.azure.clients import acr_client, aks_client, authorization_client, msi_client, resource_client
from pipeline.azure.errors import AzureBadRequest, Resource, _arm_error, translate

# The error classes live in pipeline/errors.py (one tree); re-exported here for this layer's callers.
from pipeline.errors import (
    AzureOperationFailed as AzureOperationFailed,
    IncompatibleResource as IncompatibleResource,
    PipelineError as PipelineError,
)
from pipeline.teardown import AZURE_TAG, AzureFacts, AzureResource, FederatedCredential, RoleAssignment

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from pipeline.config import PipelineConfig

ACR_PULL_ROLE = roles.ROLE_IDS["AcrPull"]
"""The built-in AcrPull role definition (the same GUID in every tenant)."""
ACR_TASKS_CONTRIBUTOR_ROLE = roles.ROLE_IDS["Container Registry Tasks Contributor"]
"""Container Registry Tasks Contributor: listBuildSourceUploadUrl, scheduleRun, runs read/write/listLogSasUrl/cancel."""
ACR_PUSH_ROLE = roles.ROLE_IDS["AcrPush"]
"""AcrPush: registries pull/read and push/write (the image index of a multi-platform build goes through the data plane)."""
AKS_CLUSTER_USER_ROLE = roles.ROLE_IDS["Azure Kubernetes Service Cluster User Role"]
"""Azure Kubernetes Service Cluster User Role: managedClusters read and listClusterUserCredential."""
REPOSITORY_READER_ROLE = roles.ROLE_IDS["Container Registry Repository Reader"]
"""Container Registry Repository Reader: what pulls from a registry in ABAC mode (AcrPull is not honoured there)."""
REPOSITORY_WRITER_ROLE = roles.ROLE_IDS["Container Registry Repository Writer"]
"""Container Registry Repository Writer: what pushes to a registry in ABAC mode (AcrPush is not honoured there)."""
ROLE_ASSIGNMENT_MODES = (role_grants.LEGACY, role_grants.ABAC)
"""A registry's `roleAssignmentMode` (azure-mgmt-containerregistry 14 has it in its 2025-03-01-preview models only)."""
# provisioningStates of an operation still running: ACR's (Creating, Updating, Deleting) and AKS's (also
# Upgrading, Scaling, Starting, Stopping, Canceling): wait for it, never repair.
IN_PROGRESS = frozenset({"Creating", "Updating", "Deleting", "Upgrading", "Scaling", "Starting", "Stopping", "Canceling"})
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
"""The audience Entra ID accepts on a federated (workload identity) assertion."""
REGISTRY_SKU = "Standard"
"""A new registry's SKU: Basic's storage and throughput are tight for CI; Premium adds geo-replication we do not use."""
NODE_POOL = "nodepool1"
CREATED_TAGS = {AZURE_TAG[0]: AZURE_TAG[1]}
"""On every resource this module creates; `pipeline teardown --azure` deletes only what carries it."""
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """What must exist in Azure: the config's [azure], [acr] and [aks] settings, and the new cluster's node pool."""

    subscription_id: str
    resource_group: str
    location: str
    endpoint: str
    registry_name: str
    login_server: str  # what [acr].login_server names images with; an existing registry must answer it
    registry_admin_user: bool  # [acr].image_pull_secret is set: the pull Secret is filled from the admin credentials
    cluster_name: str
    identity_name: str = "temporal-pipeline"  # the pipeline worker's user-assigned managed identity
    namespace: str = "temporal-workers"  # the pipeline worker's Kubernetes namespace ...
    service_account: str = "pipeline-worker"  # ... and ServiceAccount: the federated credential's subject
    node_count: int = 2
    vm_size: str = "Standard_D2s_v3"
    polling_interval: float = 10.0  # seconds between LRO polls when ARM sends no Retry-After (the SDK's default is 30)
    role_assignment_mode: str = role_grants.LEGACY  # a new registry's; an existing one's is read and honoured


@dataclass(frozen=True)
class Outcome:
    """One resource's result: created now, or found (compatible)."""

    kind: str  # "resource group", "registry", "AKS cluster", "AcrPull role assignment"
    name: str
    created: bool
    detail: str = ""
    pending: role_grants.Grant | None = None  # a role assignment left to an administrator (--no-role-assignments)

    def line(self) -> str:
        state = "missing (an administrator must make it)" if self.pending else "created" if self.created else "exists"
        return f"{self.kind} {self.name}: {state}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class RegistryInfo:
    id: str
    login_server: str
    role_assignment_mode: str = role_grants.LEGACY


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    kubelet_object_id: str
    oidc_issuer_url: str


@dataclass(frozen=True)
class IdentityInfo:
    id: str
    client_id: str
    principal_id: str
    tenant_id: str


def plan_for(config: PipelineConfig) -> Plan:
    """The Plan of a target = "aks" configuration."""
    return Plan(
        subscription_id=config.azure.subscription_id,
        resource_group=config.azure.resource_group,
        location=config.azure.location,
        endpoint=config.azure.endpoint,
        registry_name=config.acr.name,
        login_server=config.acr.login_server,
        registry_admin_user=bool(config.acr.image_pull_secret),
        cluster_name=config.aks.cluster_name,
        identity_name=config.azure.identity,
        namespace=config.kubernetes.namespace,
        service_account=next((app.name for app in config.apps.values() if app.role == "pipeline"), "pipeline-worker"),
        role_assignment_mode=config.acr.role_assignment_mode,
    )


def _resource(plan: Plan, kind: str, name: str, config_key: str = "") -> Resource:
    return Resource(kind, name, plan.resource_group, plan.subscription_id, config_key)


def _same_location(a: str | None, b: str) -> bool:
    """ARM compares locations without case or spaces ("West Europe" = "westeurope")."""
    return (a or "").replace(" ", "").lower() == b.replace(" ", "").lower()


@contextmanager
def _arm(resource: Resource, action: str, *, again: str = "pipeline bootstrap --azure") -> Iterator[None]:
    """Translate what a create (or a read) raises into one-line AzureErrors about `resource`.

    A long-running operation that ended Failed raises HttpResponseError from
    the poller with the *status* response (HTTP 200) and ARM's error in its
    body, caused by azure-core's OperationFailed: that is AzureOperationFailed.
    A 409 gets its own message (the hint of AzureBadRequest is about config values).
    """
    try:
        yield
    except HttpResponseError as exc:
        code, message = _arm_error(exc)
        message = message.rstrip(".")
        if isinstance(exc.__cause__, OperationFailed) or (exc.status_code or 0) < 400:
            raise AzureOperationFailed(
                f"{action} {resource.describe()} failed: {code or 'Failed'}: {message}; {AzureOperationFailed.hint}",
                status=exc.status_code,
                code=code,
            ) from exc
        if exc.status_code == 409:
            raise AzureBadRequest(
                f"{action} {resource.describe()}: 409 {code}: {message}; something else holds or changes it: "
                f"wait for (or settle) that, then run `{again}` again",
                status=409,
                code=code,
            ) from exc
        raise translate(exc, resource) from exc
    except SdkAzureError as exc:
        raise translate(exc, resource) from exc


def _settled(resource: Resource, state: str | None) -> None:
    """A resource that is still being created/updated, or whose last operation failed, is not usable yet."""
    if (state or "Succeeded") == "Succeeded":
        return
    if state in IN_PROGRESS:
        raise IncompatibleResource(
            f"{resource.describe()} is still {state} (another operation runs); wait for it to finish, "
            "then run `pipeline bootstrap --azure` again"
        )
    raise IncompatibleResource(
        f"{resource.describe()} is in provisioningState {state}; repair or delete it, then run `pipeline bootstrap --azure` again"
    )


def ensure_resource_group(client: ResourceManagementClient, *, plan: Plan) -> Outcome:
    """The resource group: created in [azure].location when absent; any existing one will do."""
    resource = _resource(plan, "resource group", plan.resource_group, "[azure].resource_group")
    with _arm(resource, "reading"):
        try:
            group = client.resource_groups.get(plan.resource_group)
        except ResourceNotFoundError:
            group = None
    if group is not None:
        return Outcome("resource group", plan.resource_group, created=False, detail=str(group.location or ""))
    with _arm(resource, "creating"):
        created = client.resource_groups.create_or_update(plan.resource_group, {"location": plan.location, "tags": CREATED_TAGS})
    return Outcome("resource group", plan.resource_group, created=True, detail=str(created.location or plan.location))


def _check_registry(resource: Resource, registry: acr_models.Registry, plan: Plan) -> None:
    _settled(resource, registry.provisioning_state)
    if not _same_location(registry.location, plan.location):
        raise IncompatibleResource(
            f"{resource.describe()} is in location {registry.location}, not [azure].location {plan.location}; "
            "set [azure].location to it or choose another [acr].name (ARM cannot move a registry)"
        )
    if plan.login_server and registry.login_server and registry.login_server.lower() != plan.login_server.lower():
        raise IncompatibleResource(
            f"{resource.describe()} has login server {registry.login_server}, not [acr].login_server {plan.login_server}; "
            f'set [acr].login_server = "{registry.login_server}"'
        )
    if plan.registry_admin_user and not registry.admin_user_enabled:
        raise IncompatibleResource(
            f"{resource.describe()} has its admin user disabled, but [acr].image_pull_secret needs its credentials; "
            'enable it (az acr update --admin-enabled true) or set [acr].image_pull_secret = "" (the kubelet identity pulls)'
        )


def ensure_registry(client: ContainerRegistryManagementClient, *, plan: Plan) -> tuple[Outcome, RegistryInfo]:
    """The ACR registry: created (Standard, in [azure].location) when absent, polled until Succeeded; checked when present."""
    resource = _resource(plan, "registry", plan.registry_name, "[acr].name")
    with _arm(resource, "reading"):
        try:
            registry = client.registries.get(plan.resource_group, plan.registry_name)
        except ResourceNotFoundError:
            registry = None
    created = registry is None
    if registry is None:
        body = acr_models.Registry(
            location=plan.location,
            tags=CREATED_TAGS,
            sku=acr_models.Sku(name=REGISTRY_SKU),
            admin_user_enabled=plan.registry_admin_user,
            role_assignment_mode=plan.role_assignment_mode,  # explicit: Azure's default is to become ABAC
        )
        with _arm(resource, "creating"):
            poller = client.registries.begin_create(
                plan.resource_group, plan.registry_name, body, polling_interval=plan.polling_interval
            )
        with _arm(resource, "creating"):
            registry = poller.result()
    _check_registry(resource, registry, plan)
    # No roleAssignmentMode in the answer: a registry older than the mode (legacy permissions).
    mode = str(registry.role_assignment_mode or role_grants.LEGACY)
    info = RegistryInfo(id=str(registry.id), login_server=str(registry.login_server or ""), role_assignment_mode=mode)
    detail = info.login_server + (", ABAC repository permissions" if mode == role_grants.ABAC else "")
    if mode != plan.role_assignment_mode:  # the in-cluster builds cannot read the mode (no registries/read): say it
        detail += f'; set [acr].role_assignment_mode = "{mode}" so its builds run as ABAC needs'
    return Outcome("registry", plan.registry_name, created=created, detail=detail), info


def _cluster_body(plan: Plan) -> aks_models.ManagedCluster:
    """A small cluster with what the pipeline needs: system-assigned identity, OIDC issuer, workload identity, RBAC."""
    dns_prefix = "".join(c if c.isalnum() or c == "-" else "-" for c in plan.cluster_name)[:54].strip("-") or "aks"
    return aks_models.ManagedCluster(
        location=plan.location,
        tags=CREATED_TAGS,
        identity=aks_models.ManagedClusterIdentity(type="SystemAssigned"),
        properties=aks_models.ManagedClusterProperties(
            dns_prefix=dns_prefix,
            enable_rbac=True,
            agent_pool_profiles=[
                aks_models.ManagedClusterAgentPoolProfile(
                    name=NODE_POOL,
                    count=plan.node_count,
                    vm_size=plan.vm_size,
                    mode="System",
                    os_type="Linux",
                    type="VirtualMachineScaleSets",
                )
            ],
            oidc_issuer_profile=aks_models.ManagedClusterOIDCIssuerProfile(enabled=True),
            security_profile=aks_models.ManagedClusterSecurityProfile(
                workload_identity=aks_models.ManagedClusterSecurityProfileWorkloadIdentity(enabled=True)
            ),
        ),
    )


def _properties(cluster: aks_models.ManagedCluster) -> aks_models.ManagedClusterProperties:
    return cluster.properties or aks_models.ManagedClusterProperties()


def _kubelet_object_id(cluster: aks_models.ManagedCluster) -> str:
    identity = (_properties(cluster).identity_profile or {}).get("kubeletidentity")
    return str(identity.object_id or "") if identity else ""


def _check_cluster(resource: Resource, cluster: aks_models.ManagedCluster, plan: Plan) -> None:
    properties = _properties(cluster)
    _settled(resource, properties.provisioning_state)
    if not _same_location(cluster.location, plan.location):
        raise IncompatibleResource(
            f"{resource.describe()} is in location {cluster.location}, not [azure].location {plan.location}; "
            "set [azure].location to it or choose another [aks].cluster_name"
        )
    missing = []
    if not (properties.oidc_issuer_profile and properties.oidc_issuer_profile.enabled):
        missing.append("the OIDC issuer")
    workload = properties.security_profile.workload_identity if properties.security_profile else None
    if not (workload and workload.enabled):
        missing.append("workload identity")
    if missing:
        raise IncompatibleResource(
            f"{resource.describe()} has {' and '.join(missing)} disabled, which the pipeline worker's workload identity "
            f"needs; enable it (az aks update -g {plan.resource_group} -n {plan.cluster_name} "
            "--enable-oidc-issuer --enable-workload-identity), then run `pipeline bootstrap --azure` again"
        )
    if not _kubelet_object_id(cluster):
        raise IncompatibleResource(
            f"{resource.describe()} has no kubelet managed identity (a service-principal cluster?), "
            "so AcrPull cannot be granted to it; use a cluster with managed identity"
        )


def ensure_cluster(client: ContainerServiceClient, *, plan: Plan) -> tuple[Outcome, ClusterInfo]:
    """The AKS cluster: created with OIDC issuer + workload identity when absent (LRO polled to the end); checked when present."""
    resource = _resource(plan, "AKS cluster", plan.cluster_name, "[aks].cluster_name")
    with _arm(resource, "reading"):
        try:
            cluster = client.managed_clusters.get(plan.resource_group, plan.cluster_name)
        except ResourceNotFoundError:
            cluster = None
    created = cluster is None
    if cluster is None:
        with _arm(resource, "creating"):
            poller = client.managed_clusters.begin_create_or_update(
                plan.resource_group, plan.cluster_name, _cluster_body(plan), polling_interval=plan.polling_interval
            )
        with _arm(resource, "creating"):
            cluster = poller.result()
    _check_cluster(resource, cluster, plan)
    oidc = _properties(cluster).oidc_issuer_profile
    issuer = str(oidc.issuer_url or "") if oidc else ""
    info = ClusterInfo(id=str(cluster.id), kubelet_object_id=_kubelet_object_id(cluster), oidc_issuer_url=issuer)
    return Outcome("AKS cluster", plan.cluster_name, created=created, detail=f"OIDC issuer {issuer}"), info


def role_assignment_name(*, scope: str, principal_id: str, role: str = ACR_PULL_ROLE) -> str:
    """A GUID that is the same for the same scope, principal and role, so a second run finds (GETs) the first's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{principal_id.lower()}|{role}"))


def ensure_role(
    client: AuthorizationManagementClient, *, plan: Plan, role: str, role_name: str, scope: str, principal_id: str, label: str
) -> Outcome:
    """One role assignment (`role` for `principal_id` at `scope`): read under our deterministic name, created if absent.

    The same principal and role under another name is ARM's 409 RoleAssignmentExists: that counts as present.
    """
    kind = f"{role_name} role assignment"
    name = role_assignment_name(scope=scope, principal_id=principal_id, role=role)
    resource = _resource(plan, kind, label)
    with _arm(resource, "reading"):
        try:
            client.role_assignments.get(scope, name)
            return Outcome(kind, label, created=False)
        except ResourceNotFoundError:
            pass
    parameters = RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{plan.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        principal_id=principal_id,
        # A just-created identity may not have replicated yet; with principalType ARM does not look it up.
        principal_type="ServicePrincipal",
    )
    try:
        with _arm(resource, "creating"):
            client.role_assignments.create(scope, name, parameters)
    except AzureBadRequest as error:
        if error.code != "RoleAssignmentExists":
            raise
        return Outcome(kind, label, created=False, detail="under another name")
    return Outcome(kind, label, created=True)


def ensure_grant(client: AuthorizationManagementClient, *, plan: Plan, grant: role_grants.Grant, assign: bool = True) -> Outcome:
    """One of role_grants.wanted's assignments: made (ensure_role), or with `assign` False only looked for
    (RoleAssignments_ListForScope) and, when absent, reported as pending for an administrator."""
    if assign:
        return ensure_role(
            client,
            plan=plan,
            role=grant.role_id,
            role_name=grant.role_name,
            scope=grant.scope,
            principal_id=grant.principal_id,
            label=grant.label,
        )
    kind = f"{grant.role_name} role assignment"
    if role_grants.exists(client, grant, _resource(plan, kind, grant.label)):
        return Outcome(kind, grant.label, created=False)
    return Outcome(kind, grant.label, created=False, pending=grant)


def ensure_acr_pull(
    client: AuthorizationManagementClient, *, plan: Plan, registry: RegistryInfo, cluster: ClusterInfo, assign: bool = True
) -> Outcome:
    """The kubelet identity's pull role at the registry's scope (so nodes pull without a Secret): AcrPull, or
    Container Registry Repository Reader for a registry in ABAC mode (which does not honour AcrPull)."""
    grant = role_grants.Grant(
        role_grants.pull_role(registry.role_assignment_mode),
        cluster.kubelet_object_id,
        registry.id,
        f"for {plan.cluster_name}'s kubelet identity on {plan.registry_name}",
    )
    return ensure_grant(client, plan=plan, grant=grant, assign=assign)


def ensure_identity(client: ManagedServiceIdentityClient, *, plan: Plan) -> tuple[Outcome, IdentityInfo]:
    """The pipeline worker's user-assigned managed identity: created in [azure].location when absent."""
    resource = _resource(plan, "managed identity", plan.identity_name, "[azure].identity")
    with _arm(resource, "reading"):
        try:
            found = client.user_assigned_identities.get(plan.resource_group, plan.identity_name)
        except ResourceNotFoundError:
            found = None
    created = found is None
    if found is None:
        with _arm(resource, "creating"):
            found = client.user_assigned_identities.create_or_update(
                plan.resource_group, plan.identity_name, msi_models.Identity(location=plan.location, tags=CREATED_TAGS)
            )
    info = IdentityInfo(
        id=str(found.id or ""),
        client_id=str(found.client_id or ""),
        principal_id=str(found.principal_id or ""),
        tenant_id=str(found.tenant_id or ""),
    )
    if not (info.client_id and info.principal_id):
        raise IncompatibleResource(f"{resource.describe()} has no clientId/principalId; ARM answered an incomplete identity")
    return Outcome("managed identity", plan.identity_name, created=created, detail=f"client id {info.client_id}"), info


def federated_credential_name(plan: Plan) -> str:
    """`<namespace>-<serviceaccount>`: letters, digits, '-' and '_' (Azure's rule for the name), 3-120 characters."""
    text = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{plan.namespace}-{plan.service_account}")
    return text[:120]


def ensure_federated_credential(client: ManagedServiceIdentityClient, *, plan: Plan, cluster: ClusterInfo) -> Outcome:
    """The identity trusts the pipeline worker's ServiceAccount tokens from the cluster's OIDC issuer.

    Issuer, subject and audience must match the projected token exactly; an existing credential of the
    same name that names anything else is left alone and reported (it may serve another cluster).
    """
    name = federated_credential_name(plan)
    subject = f"system:serviceaccount:{plan.namespace}:{plan.service_account}"
    label = f"{name} of {plan.identity_name}"
    resource = _resource(plan, "federated identity credential", label, "[azure].identity")
    if not cluster.oidc_issuer_url:
        raise IncompatibleResource(f"AKS cluster {plan.cluster_name} reports no OIDC issuer URL; enable its OIDC issuer")
    with _arm(resource, "reading"):
        try:
            found = client.federated_identity_credentials.get(plan.resource_group, plan.identity_name, name)
        except ResourceNotFoundError:
            found = None
    if found is not None:
        wanted = (cluster.oidc_issuer_url, subject, [TOKEN_EXCHANGE_AUDIENCE])
        have = (str(found.issuer or ""), str(found.subject or ""), list(found.audiences or []))
        if have != wanted:
            raise IncompatibleResource(
                f"{resource.describe()} trusts issuer {have[0]}, subject {have[1]}, audiences {have[2]}, not issuer "
                f"{wanted[0]}, subject {wanted[1]}, audience {TOKEN_EXCHANGE_AUDIENCE}; delete it or set another "
                "[azure].identity, then run `pipeline bootstrap --azure` again"
            )
        return Outcome("federated identity credential", label, created=False, detail=subject)
    body = msi_models.FederatedIdentityCredential(
        issuer=cluster.oidc_issuer_url, subject=subject, audiences=[TOKEN_EXCHANGE_AUDIENCE]
    )
    with _arm(resource, "creating"):
        client.federated_identity_credentials.create_or_update(plan.resource_group, plan.identity_name, name, body)
    return Outcome("federated identity credential", label, created=True, detail=subject)


def ensure_identity_roles(
    client: AuthorizationManagementClient,
    *,
    plan: Plan,
    identity: IdentityInfo,
    registry: RegistryInfo,
    cluster: ClusterInfo,
    assign: bool = True,
) -> list[Outcome]:
    """What the in-cluster pipeline worker does as itself: ACR Tasks and pushes (image indexes; in ABAC mode its
    runs push as the caller) on the registry, user credentials of the cluster."""
    grants = role_grants.wanted(
        registry_name=plan.registry_name,
        registry_id=registry.id,
        registry_mode=registry.role_assignment_mode,
        cluster_name=plan.cluster_name,
        cluster_id=cluster.id,
        kubelet_object_id=cluster.kubelet_object_id,
        identity_name=plan.identity_name,
        identity_principal_id=identity.principal_id,
    )[1:]  # the first is the kubelet's (ensure_acr_pull)
    return [ensure_grant(client, plan=plan, grant=grant, assign=assign) for grant in grants]


def provision(
    plan: Plan,
    *,
    say: Callable[[str], None],
    credential: TokenCredential | None = None,
    assign_roles: bool = True,
) -> list[Outcome]:
    """Check first (preflight: permissions, registry name; nothing is created when they fail), then ensure each in
    order (each needs the ones before), saying one line per resource as it is settled. With `assign_roles` False
    role assignments are only looked for; the absent ones come back as outcomes with `pending` set."""
    sub, endpoint = plan.subscription_id, plan.endpoint
    preflight.check(plan, assign_roles=assign_roles, credential=credential)
    outcomes: list[Outcome] = []

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        say(outcome.line())

    with resource_client(subscription_id=sub, endpoint=endpoint, credential=credential) as groups:
        done(ensure_resource_group(groups, plan=plan))
    with acr_client(subscription_id=sub, endpoint=endpoint, credential=credential) as registries:
        outcome, registry = ensure_registry(registries, plan=plan)
        done(outcome)
    with aks_client(subscription_id=sub, endpoint=endpoint, credential=credential) as clusters:
        outcome, cluster = ensure_cluster(clusters, plan=plan)
        done(outcome)
    with msi_client(subscription_id=sub, endpoint=endpoint, credential=credential) as identities:
        outcome, identity = ensure_identity(identities, plan=plan)
        done(outcome)
        done(ensure_federated_credential(identities, plan=plan, cluster=cluster))
    with authorization_client(subscription_id=sub, endpoint=endpoint, credential=credential) as roles_client:
        done(ensure_acr_pull(roles_client, plan=plan, registry=registry, cluster=cluster, assign=assign_roles))
        for outcome in ensure_identity_roles(
            roles_client, plan=plan, identity=identity, registry=registry, cluster=cluster, assign=assign_roles
        ):
            done(outcome)
    return outcomes


def pending_grants(outcomes: list[Outcome]) -> list[role_grants.Grant]:
    """The role assignments a `--no-role-assignments` run left to an administrator."""
    return [o.pending for o in outcomes if o.pending is not None]


# ----- `pipeline teardown --azure`: what bootstrap made, as it is now, and deleting it -----

_TEARDOWN = "pipeline teardown --azure"


def _found(resource: Resource, read: Callable[[], T]) -> T | None:
    """`read()`, or None when ARM answers 404; other failures as one-line AzureErrors."""
    with _arm(resource, "reading", again=_TEARDOWN):
        try:
            return read()
        except ResourceNotFoundError:
            return None


def _fact(kind: str, name: str, found: Any) -> AzureResource | None:
    if found is None:
        return None
    tagged = (getattr(found, "tags", None) or {}).get(AZURE_TAG[0]) == AZURE_TAG[1]
    return AzureResource(kind=kind, name=name, id=str(found.id or ""), tagged=tagged)


def observe(plan: Plan, *, credential: TokenCredential | None = None) -> AzureFacts:
    """Reads only: the resource group and what bootstrap makes in it (tags included), and bootstrap's role assignments."""
    sub, endpoint, rg = plan.subscription_id, plan.endpoint, plan.resource_group
    with resource_client(subscription_id=sub, endpoint=endpoint, credential=credential) as groups:
        group = _found(_resource(plan, "resource group", rg), lambda: groups.resource_groups.get(rg))
    if group is None:  # nothing bootstrap makes can be in a group that does not exist
        return AzureFacts(subscription_id=sub, resource_group=rg)
    with acr_client(subscription_id=sub, endpoint=endpoint, credential=credential) as registries:
        registry = _found(
            _resource(plan, "registry", plan.registry_name), lambda: registries.registries.get(rg, plan.registry_name)
        )
    with aks_client(subscription_id=sub, endpoint=endpoint, credential=credential) as clusters:
        cluster = _found(
            _resource(plan, "AKS cluster", plan.cluster_name), lambda: clusters.managed_clusters.get(rg, plan.cluster_name)
        )
    credential_name = federated_credential_name(plan)
    fic = None
    with msi_client(subscription_id=sub, endpoint=endpoint, credential=credential) as msi:
        identity = _found(
            _resource(plan, "managed identity", plan.identity_name),
            lambda: msi.user_assigned_identities.get(rg, plan.identity_name),
        )
        if identity is not None:
            label = f"{credential_name} of {plan.identity_name}"
            fic = _found(
                _resource(plan, "federated identity credential", label),
                lambda: msi.federated_identity_credentials.get(rg, plan.identity_name, credential_name),
            )
    oidc = _properties(cluster).oidc_issuer_profile if cluster is not None else None
    grants = role_grants.wanted(
        registry_name=plan.registry_name,
        registry_id=str(registry.id or "") if registry is not None else "",
        registry_mode=str(registry.role_assignment_mode or role_grants.LEGACY) if registry is not None else role_grants.LEGACY,
        cluster_name=plan.cluster_name,
        cluster_id=str(cluster.id or "") if cluster is not None else "",
        kubelet_object_id=_kubelet_object_id(cluster) if cluster is not None else "",
        identity_name=plan.identity_name,
        identity_principal_id=str(identity.principal_id or "") if identity is not None else "",
    )
    with authorization_client(subscription_id=sub, endpoint=endpoint, credential=credential) as roles_client:
        assignments = [a for g in grants if g.scope and g.principal_id for a in _assignments(roles_client, plan, g)]
    return AzureFacts(
        subscription_id=sub,
        resource_group=rg,
        group=_fact("resource group", rg, group),
        registry=_fact("registry", plan.registry_name, registry),
        cluster=_fact("AKS cluster", plan.cluster_name, cluster),
        cluster_issuer=str(oidc.issuer_url or "") if oidc else "",
        identity=_fact("managed identity", plan.identity_name, identity),
        credential=_credential_fact(plan, fic),
        subject=f"system:serviceaccount:{plan.namespace}:{plan.service_account}",
        role_assignments=tuple(assignments),
    )


def _credential_fact(plan: Plan, fic: msi_models.FederatedIdentityCredential | None) -> FederatedCredential | None:
    if fic is None:
        return None
    return FederatedCredential(
        name=federated_credential_name(plan),
        identity=plan.identity_name,
        id=str(fic.id or ""),
        issuer=str(fic.issuer or ""),
        subject=str(fic.subject or ""),
    )


def _assignments(client: AuthorizationManagementClient, plan: Plan, grant: role_grants.Grant) -> list[RoleAssignment]:
    """The grant's assignment under bootstrap's name; else those of the same principal and role at exactly its scope."""
    resource = _resource(plan, f"{grant.role_name} role assignment", grant.label)
    name = role_assignment_name(scope=grant.scope, principal_id=grant.principal_id, role=grant.role_id)
    ours = _found(resource, lambda: client.role_assignments.get(grant.scope, name))
    if ours is not None:
        return [RoleAssignment(grant.role_name, grant.label, str(ours.id or ""), bootstraps=True)]
    with _arm(resource, "reading", again=_TEARDOWN):
        found = client.role_assignments.list_for_scope(grant.scope, filter=f"principalId eq '{grant.principal_id}'")
        return [
            RoleAssignment(grant.role_name, grant.label, str(a.id or ""), bootstraps=False)
            for a in found
            if str(a.role_definition_id or "").rstrip("/").rsplit("/", 1)[-1].lower() == grant.role_id
            and str(a.scope or "").rstrip("/").lower() == grant.scope.lower()
        ]


def delete(plan: Plan, *, kind: str, resource_id: str, credential: TokenCredential | None = None) -> bool:
    """Delete one resource `observe` found, waiting for a long-running delete to end; False when it was already gone.

    `kind` is the AzureResource's, "federated identity credential" or "<role> role assignment".
    """
    sub, endpoint, rg = plan.subscription_id, plan.endpoint, plan.resource_group
    parts = resource_id.rstrip("/").split("/")
    name = parts[-1]
    wait: dict[str, Any] = {"polling_interval": plan.polling_interval}
    with _arm(_resource(plan, kind, name), "deleting", again=_TEARDOWN):
        try:
            if kind.endswith("role assignment"):
                with authorization_client(subscription_id=sub, endpoint=endpoint, credential=credential) as roles_client:
                    return roles_client.role_assignments.delete_by_id(resource_id) is not None
            if kind in ("federated identity credential", "managed identity"):
                with msi_client(subscription_id=sub, endpoint=endpoint, credential=credential) as msi:
                    if kind == "managed identity":
                        msi.user_assigned_identities.delete(rg, name)
                    else:
                        msi.federated_identity_credentials.delete(rg, parts[-3], name)
            elif kind == "AKS cluster":
                with aks_client(subscription_id=sub, endpoint=endpoint, credential=credential) as clusters:
                    clusters.managed_clusters.begin_delete(rg, name, **wait).result()
            elif kind == "registry":
                with acr_client(subscription_id=sub, endpoint=endpoint, credential=credential) as registries:
                    registries.registries.begin_delete(rg, name, **wait).result()
            elif kind == "resource group":
                with resource_client(subscription_id=sub, endpoint=endpoint, credential=credential) as groups:
                    groups.resource_groups.begin_delete(name, **wait).result()
            else:
                raise PipelineError(f"{kind} {name}: `pipeline teardown` does not delete this kind of resource")
        except ResourceNotFoundError:
            return False
    return True
