"""A local imitation of Azure Resource Manager (and of Entra ID and blob storage) for the `aks` target.

One HTTPS server on 127.0.0.1 (`python -m bootstrap.azure_arm serve --state-dir DIR`)
answers exactly the calls the pipeline makes, shaped like Microsoft's published
examples (copied unchanged into `tests/azure/examples/`), and does the real work behind them:

    Entra ID   GET  /{tenant}/v2.0/.well-known/openid-configuration
               POST /{tenant}/oauth2/v2.0/token            (client credentials: secret or federated assertion)
    ARM        ResourceGroups_CreateOrUpdate, ResourceGroups_Get          (2025-04-01, ...)
               Registries_Create (long-running), RoleAssignments_Create/Get (2022-04-01),
               ManagedClusters_CreateOrUpdate (long-running), *_GetOperationStatus
               Registries_Get, Registries_ListCredentials                 (2025-11-01, 2025-04-01, ...)
               Registries_GetBuildSourceUploadUrl, Registries_ScheduleRun,
               Runs_Get, Runs_GetLogSasUrl, Runs_Cancel, Runs_List        (2025-03-01-preview)
               ManagedClusters_Get, ManagedClusters_ListCluster{User,Admin}Credentials (2026-08-01)
               UserAssignedIdentities_*, FederatedIdentityCredentials_*   (2024-11-30, 2026-05-31)
    blobs      PUT/GET /blob/<registry>/{source,logs}/...?<SAS>
    admin      /_imitation/{health,faults,requests,reset}  (loopback only; see faults.py)

Decisions a client must know:

- **Login server.** Registries_Get answers `loginServer = "127.0.0.1:5000"` (the
  `--registry` flag), not `<name>.azurecr.io`: runs push there and
  `outputImages[].registry` says so, so every image reference the pipeline
  builds from the login server is pullable by the local cluster unchanged.
- **AAD clusters.** The seed has a plain cluster (`<name>`, token kubeconfig)
  and an Entra ID one (`<name>-aad`, `aadProfile` set) whose user kubeconfig
  runs `kubelogin` as AKS returns it. The imitation's token endpoint answers a
  request for `6dae42f8-4368-4678-94ff-3960e28e3630/.default` with the local
  cluster's own bearer token (from `--kubeconfig`), since that is the only
  token the local cluster accepts. So replacing the exec entry with an
  azure-identity token works end to end; what is *not* imitated is the
  cluster validating an Entra JWT (any principal with ARM access gets the same
  cluster token, and it does not expire on the cluster side).
- **Identity.** Tokens are HS256 JWTs with `aud`, `exp`, `appid`, `oid`, `tid`.
  The seed has a `pipeline` principal (Owner on the subscription), a
  `contributor` and a `reader` one (Contributor / Reader only; their client
  environments are `DIR/env.contributor` and `DIR/env.reader`) and a
  `no-access` one (tokens, then 403 AuthorizationFailed). Every ARM route
  checks its action against the caller's role assignments (authorization.py). MSAL's instance discovery goes to
  login.microsoftonline.com for an unknown authority host: credentials need
  `disable_instance_discovery=True`.

`--empty` starts DIR with no resource group, registry or cluster (`pipeline
bootstrap --azure` creates them; created resources are saved to the seed).

State in DIR: `seed.json` (0600), `ca.pem` (trust this), `env`/`env.json`
(0600, what a client needs; `env.contributor`, `env.reader` the same for those principals), `endpoint` (written last: the server is up),
`runs/<registry>/<runId>.json`, `blobs/`.
"""

from bootstrap.azure_arm.process import Imitation, ImitationError, attach, start

__all__ = ["Imitation", "ImitationError", "attach", "start"]
