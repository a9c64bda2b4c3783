"""What `pipeline bootstrap --azure` checks before it creates anything: the caller's permissions and the registry name.

    preflight.check(plan, assign_roles=True)        # raises before any PUT

1. **Permissions.** `GET {scope}/providers/Microsoft.Authorization/permissions` (2022-04-01; GetPermissions.json)
   answers what the caller may do at the resource group (or, while the group does not exist, the subscription):
   one `{actions, notActions}` entry per role assignment there or above. Every action bootstrap performs
   (`roles.READ_ACTIONS`, `roles.WRITE_ACTIONS`, and `Microsoft.Authorization/roleAssignments/write` unless
   `--no-role-assignments`) is evaluated as ARM does (roles.allowed). Any missing one stops the bring-up with one line
   per action naming the built-in roles that grant it, before anything exists: on Azure a Contributor would
   otherwise create the group, the registry and the cluster (minutes, and money) and then fail on the first role
   assignment (`roleAssignments/write` is in Contributor's notActions).
2. **Registry name.** `<name>.azurecr.io` is global. Unless the registry already exists in the group,
   Registries_CheckNameAvailability (RegistryCheckNameAvailable.json / ...NotAvailable.json) must say
   `nameAvailable: true`; a taken name stops the bring-up at once with a free suggestion (checked the same way).

Both raise `PreflightFailed` (an AzureForbidden / IncompatibleResource: exit 2), whose lines the CLI prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError as SdkAzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.containerregistry.v2025_03_01_preview import models as acr_models

from pipeline.azure import roles
from pipeline.azure.clients import acr_client, resource_client
from pipeline.azure.errors import Resource, translate
from pipeline.config import derived_registry_name
from pipeline.errors import AzureForbidden, IncompatibleResource

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from pipeline.azure.provision import Plan

PERMISSIONS_API_VERSION = "2022-04-01"
REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"


class MissingPermissions(AzureForbidden):
    """The caller lacks actions the bring-up performs; nothing was created."""


class RegistryNameTaken(IncompatibleResource):
    """`[acr].name` belongs to another registry somewhere in Azure."""


def _group_exists(client: ResourceManagementClient, plan: Plan) -> bool:
    resource = Resource(
        "resource group", plan.resource_group, plan.resource_group, plan.subscription_id, "[azure].resource_group"
    )
    try:
        client.resource_groups.get(plan.resource_group)
        return True
    except ResourceNotFoundError:
        return False
    except SdkAzureError as exc:
        raise translate(exc, resource) from exc


def caller_permissions(client: ResourceManagementClient, plan: Plan, *, at_group: bool) -> list[roles.Permission]:
    """Permissions_ListForResourceGroup (or, for a group not created yet, the subscription's), every page."""
    scope = f"/subscriptions/{plan.subscription_id}" + (f"/resourceGroups/{plan.resource_group}" if at_group else "")
    url: str | None = f"{scope}/providers/Microsoft.Authorization/permissions?api-version={PERMISSIONS_API_VERSION}"
    resource = Resource("permissions of the caller", scope, plan.resource_group, plan.subscription_id)
    found: list[roles.Permission] = []
    while url:
        try:
            response = client.send_request(HttpRequest("GET", url))
            response.raise_for_status()
        except SdkAzureError as exc:
            raise translate(exc, resource) from exc
        body: dict[str, Any] = response.json()
        found += [roles.permission_of(entry) for entry in body.get("value") or [] if isinstance(entry, dict)]
        url = body.get("nextLink") or None
    return found


def missing_actions(permissions: list[roles.Permission], *, assign_roles: bool, create_group: bool) -> list[str]:
    """The actions bootstrap performs that `permissions` do not allow, in the order it performs them."""
    needed = list(roles.READ_ACTIONS) + [
        a for a in roles.WRITE_ACTIONS if create_group or a != "Microsoft.Resources/subscriptions/resourceGroups/write"
    ]
    if assign_roles:
        needed.append(roles.ASSIGN_ACTION)
    return [action for action in needed if not roles.allowed(permissions, action)]


def check_permissions(client: ResourceManagementClient, plan: Plan, *, assign_roles: bool) -> None:
    group_exists = _group_exists(client, plan)
    permissions = caller_permissions(client, plan, at_group=group_exists)
    missing = missing_actions(permissions, assign_roles=assign_roles, create_group=not group_exists)
    if not missing:
        return
    where = f"resource group {plan.resource_group}" if group_exists else f"subscription {plan.subscription_id}"
    lines = [
        f"the Azure identity running bootstrap lacks {len(missing)} action(s) `pipeline bootstrap --azure` performs "
        f"in {where}; nothing was created:"
    ]
    lines += [f"  missing {action}: granted by {roles.or_list(roles.granted_by(action))}" for action in missing]
    if missing == [roles.ASSIGN_ACTION]:
        lines.append(
            "  run `pipeline bootstrap --azure --no-role-assignments` to create everything else; it prints (and writes "
            "to a file) the role assignments an administrator must make"
        )
    raise MissingPermissions("\n".join(lines), status=403, code="AuthorizationFailed")


def _available(client: ContainerRegistryManagementClient, name: str, resource: Resource) -> tuple[bool, str]:
    try:
        status = client.registries.check_name_availability(acr_models.RegistryNameCheckRequest(name=name, type=REGISTRY_TYPE))
    except HttpResponseError as exc:
        raise translate(exc, resource) from exc
    return bool(status.name_available), str(status.message or status.reason or "")


def suggest_registry_name(client: ContainerRegistryManagementClient, plan: Plan, resource: Resource) -> str:
    """A free name: the derived one, else the taken name with a short hash of subscription and group appended."""
    base = "".join(c for c in plan.registry_name if c.isalnum())[:38] or "temporal"
    for salt in range(5):
        candidate = derived_registry_name(plan.subscription_id, f"{plan.resource_group}{'/' * salt}", prefix=base)
        if _available(client, candidate, resource)[0]:
            return candidate
    return ""


def check_registry_name(client: ContainerRegistryManagementClient, plan: Plan) -> None:
    """Refuse at once a registry name that another registry in Azure has (the group's own registry is fine)."""
    resource = Resource("registry", plan.registry_name, plan.resource_group, plan.subscription_id, "[acr].name")
    try:
        client.registries.get(plan.resource_group, plan.registry_name)
        return
    except ResourceNotFoundError:
        pass
    except HttpResponseError as exc:
        if exc.status_code != 404:  # ResourceGroupNotFound: the group is created later
            raise translate(exc, resource) from exc
    available, message = _available(client, plan.registry_name, resource)
    if available:
        return
    suggestion = suggest_registry_name(client, plan, resource)
    raise RegistryNameTaken(
        f"[acr].name {plan.registry_name}: {plan.registry_name.lower()}.azurecr.io is not available in Azure ({message}); "
        + (f'set [acr].name = "{suggestion}" (free now) ' if suggestion else "choose another [acr].name ")
        + "or leave it out for a name derived from the subscription and resource group; nothing was created"
    )


def check(plan: Plan, *, assign_roles: bool, credential: TokenCredential | None = None) -> None:
    """Both checks, before anything is created (silent when they pass)."""
    sub, endpoint = plan.subscription_id, plan.endpoint
    with resource_client(subscription_id=sub, endpoint=endpoint, credential=credential) as groups:
        check_permissions(groups, plan, assign_roles=assign_roles)
    with acr_client(subscription_id=sub, endpoint=endpoint, credential=credential) as registries:
        check_registry_name(registries, plan)
