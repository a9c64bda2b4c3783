"""Azure Resource Manager: routing, ARM's checks before a provider sees a request, and one module per resource provider.

    dispatch.py        `handle`, the entry of every request under `/subscriptions/`, in ARM's order: route
                       (case-insensitive, like ARM) -> bearer token (401) -> `api-version` for that operation (400)
                       -> subscription (404) -> role check (403) -> injected faults (429/500) -> resource group (404)
                       -> the handler (which answers 404 for a missing resource); ARM's headers on every answer
    routing.py         `ROUTES` (method, path, operation, api-versions, RBAC action, handler) and `match`;
                       to add an operation, add a `Route` to `ROUTES`
    api_versions.py    the api-versions each provider accepts
    auth.py            bearer token (401) and role (403) checks
    injected_faults.py an injected HTTP fault as ARM's error answer
    context.py         `Context` (request, path parameters, seed, token claims), `ArmError`, JSON in and out
    creation.py        what every creating PUT checks: known location, tags, no move to another location
    operations.py      long-running operations: start, finish, `*_GetOperationStatus`, `finish_interrupted`
    providers/         resource_groups.py, registries.py, registry_runs.py (upload URL, scheduleRun, runs),
                       managed_clusters.py, cluster_credentials.py, role_assignments.py,
                       managed_identities.py

Creation (`pipeline bootstrap --azure`): ResourceGroups_CreateOrUpdate/Get,
Registries_Create and ManagedClusters_CreateOrUpdate (long-running: 201 with
`Azure-AsyncOperation` and `Retry-After: 1`, provisioningState `Creating` until
the operation's status answers `Succeeded` a short while later, or `Failed`
with an injected `failOperation` fault), RoleAssignments_Create/Get at a
registry's, cluster's or group's scope, user-assigned identities and their
federated identity credentials (providers/managed_identities.py). Created
resources are added to the seed and saved.
"""

from bootstrap.azure_arm.arm.context import ArmError, Context
from bootstrap.azure_arm.arm.dispatch import handle
from bootstrap.azure_arm.arm.operations import OPERATION_SECONDS, finish_interrupted
from bootstrap.azure_arm.arm.routing import ROUTES, Route, match

__all__ = ["OPERATION_SECONDS", "ROUTES", "ArmError", "Context", "Route", "finish_interrupted", "handle", "match"]
