"""Azure workload identity in the ARM imitation, through the real SDKs only.

azure-mgmt-msi creates user-assigned identities and federated identity credentials (FICs), shaped after
Microsoft's 2026-05-31 examples (tests/azure/examples/2026-05-31/); azure-mgmt-authorization gives the identity
built-in roles of builtin-roles.json at a registry's, a cluster's and a group's scope; azure-identity's
WorkloadIdentityCredential exchanges a ServiceAccount token of the local cluster (its TokenRequest API) for an ARM
token at the imitation's token endpoint, and ARM then lets the identity do exactly what its roles allow.
Assertions no FIC matches (another ServiceAccount, audience or issuer), signed by a foreign key, or expired are
refused with Entra ID's AADSTS codes.

The exchange needs the local cluster's OIDC discovery and TokenRequest API; `cluster_oidc` skips those tests when
the running cluster does not serve them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import WorkloadIdentityCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.v2024_11_30.models import FederatedIdentityCredential, Identity
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client as k8s, config as k8s_config

from bootstrap.azure_arm import Imitation
from tests.azure.test_arm_creation import _cluster
from tests.helpers.azure import AKS_SCOPE, ARM_SCOPE, TASKS_API_VERSION, Clients, credential

EXAMPLES = Path(__file__).resolve().parent / "examples"
REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = {r["roleName"]: r["id"] for r in json.loads((EXAMPLES / "builtin-roles.json").read_text())}
TASKS_CONTRIBUTOR = ROLES["Container Registry Tasks Contributor"]
AKS_CLUSTER_USER = ROLES["Azure Kubernetes Service Cluster User Role"]
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
MSI_API_VERSION = "2024-11-30"  # azure-mgmt-msi 7.1.0's default


def _example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "2026-05-31" / name).read_text()))


def _kwargs(imitation: Imitation) -> dict[str, Any]:
    return {"base_url": imitation.endpoint, "connection_verify": str(imitation.ca_bundle), "credential_scopes": [ARM_SCOPE]}


def _msi(imitation: Imitation) -> ManagedServiceIdentityClient:
    return ManagedServiceIdentityClient(credential(imitation), imitation.subscription_id, **_kwargs(imitation))


def _role(az: Clients, scope: str, role: str, principal: str) -> None:
    az.roles.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{az.arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )


@pytest.fixture
def az(nothing: Imitation) -> Clients:
    return Clients(nothing)


@pytest.fixture
def group(az: Clients) -> str:
    name = f"rg-{uuid.uuid4().hex[:8]}"
    az.groups.create_or_update(name, {"location": "westeurope"})
    return name


# -- Microsoft.ManagedIdentity -------------------------------------------------


def test_builtin_roles_are_the_shared_file_byte_for_byte() -> None:
    data = (REPO_ROOT / "bootstrap/azure_arm/builtin-roles.json").read_bytes()
    assert data == (EXAMPLES / "builtin-roles.json").read_bytes()
    assert ROLES["AcrPull"] == "7f951dda-4ed3-4680-a7ca-43fe172d538d"


def test_identities_are_created_once_shaped_after_the_examples(az: Clients, group: str) -> None:
    msi = _msi(az.arm).user_assigned_identities
    created = msi.create_or_update(group, "pipeline-worker", Identity(location="westeurope", tags={"a": "b"}))
    assert created.client_id and created.principal_id and created.tenant_id == az.arm.tenant_id
    again = msi.create_or_update(group, "pipeline-worker", Identity(location="westeurope"))
    assert (again.client_id, again.principal_id, again.tags) == (created.client_id, created.principal_id, {})
    assert msi.get(group, "pipeline-worker").principal_id == created.principal_id
    seed = json.loads((az.arm.state_dir / "seed.json").read_text())
    assert {"client_id": created.client_id, "principal_id": created.principal_id}.items() <= next(
        i for i in seed["identities"] if i["name"] == "pipeline-worker" and i["resource_group"] == group
    ).items()

    example = _example("IdentityCreate.json")
    path = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/example-id"
    first = az.raw("PUT", path, "2026-05-31", example["parameters"]["parameters"])
    second = az.raw("PUT", path, "2026-05-31", example["parameters"]["parameters"])
    assert (first.status_code, second.status_code) == (201, 200), first.text
    for response, status in ((first, "201"), (second, "200")):
        body, shown = response.json(), example["responses"][status]["body"]
        assert body.keys() == shown.keys() and body["properties"].keys() == shown["properties"].keys()
        assert body["type"] == shown["type"] and body["tags"] == shown["tags"] and body["location"] == "eastus"
        assert body["id"].lower() == path.lower()
    assert first.json()["properties"] == second.json()["properties"]

    deleted = az.raw("DELETE", path, "2026-05-31")
    assert (deleted.status_code, az.raw("DELETE", path, "2026-05-31").status_code) == (200, 204)
    with pytest.raises(ResourceNotFoundError):
        msi.get(group, "example-id")
    assert az.raw("PUT", path, "2026-05-31", {"location": "nowhere"}).status_code == 400


def test_federated_credentials_are_checked_listed_and_deleted(az: Clients, group: str) -> None:
    msi = _msi(az.arm)
    msi.user_assigned_identities.create_or_update(group, "worker", Identity(location="westeurope"))
    fics = msi.federated_identity_credentials
    example = _example("FederatedIdentityCredentialCreate.json")
    wanted = example["parameters"]["parameters"]["properties"]
    path = (
        f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity"
        "/userAssignedIdentities/worker/federatedIdentityCredentials/ficResourceName"
    )
    first = az.raw("PUT", path, "2026-05-31", example["parameters"]["parameters"])
    assert first.status_code == 201, first.text
    shown = example["responses"]["201"]["body"]
    assert first.json()["properties"] == shown["properties"] and first.json()["type"] == shown["type"]
    assert first.json()["name"] == shown["name"] and first.json()["id"].lower() == path.lower()
    assert az.raw("PUT", path, "2026-05-31", example["parameters"]["parameters"]).status_code == 200
    got = az.raw("GET", path, "2026-05-31").json()
    assert got == {**_example("FederatedIdentityCredentialGet.json")["responses"]["200"]["body"], "id": got["id"]}

    second = fics.create_or_update(
        group,
        "worker",
        "pipeline-worker",
        FederatedIdentityCredential(
            issuer="https://127.0.0.1:6443", subject="system:serviceaccount:pipeline:worker", audiences=[EXCHANGE_AUDIENCE]
        ),
    )
    assert (second.issuer, second.subject, second.audiences) == (
        "https://127.0.0.1:6443",
        "system:serviceaccount:pipeline:worker",
        [EXCHANGE_AUDIENCE],
    )
    assert [f.name for f in fics.list(group, "worker")] == ["ficResourceName", "pipeline-worker"]
    assert [f.name for f in fics.list(group, "worker", top=1)] == ["ficResourceName", "pipeline-worker"]  # nextLink

    refused = [
        ("x", wanted),  # name: 3-120 characters
        ("bad.name", wanted),
        ("plain-http", {**wanted, "issuer": "http://127.0.0.1:6443"}),
        ("no-url", {**wanted, "issuer": "kubernetes"}),
        ("two-audiences", {**wanted, "audiences": [EXCHANGE_AUDIENCE, "other"]}),
        ("no-audience", {**wanted, "audiences": []}),
        ("no-subject", {**wanted, "subject": ""}),
        ("same-issuer-and-subject", wanted),  # ficResourceName has them
    ]
    for name, properties in refused:
        answer = az.raw("PUT", path.rsplit("/", 1)[0] + "/" + name, MSI_API_VERSION, {"properties": properties})
        assert answer.status_code == 400 and answer.json()["error"]["code"], (name, answer.text)
    missing = path.replace("/worker/", "/nobody/")
    assert az.raw("PUT", missing, MSI_API_VERSION, {"properties": wanted}).status_code == 404

    fics.delete(group, "worker", "ficResourceName")
    assert az.raw("DELETE", path, "2026-05-31").status_code == 204
    with pytest.raises(ResourceNotFoundError):
        fics.get(group, "worker", "ficResourceName")
    assert [f.name for f in fics.list(group, "worker")] == ["pipeline-worker"]


def test_identities_get_builtin_roles_at_registry_cluster_and_group_scope(az: Clients, group: str) -> None:
    identity = _msi(az.arm).user_assigned_identities.create_or_update(group, "roles", Identity(location="westeurope"))
    principal = str(identity.principal_id)
    registry = az.acr.registries.begin_create(
        group, f"acr{uuid.uuid4().hex[:8]}", {"location": "westeurope", "sku": {"name": "Basic"}}
    ).result()
    cluster = az.aks.begin_create_or_update(group, "aks-wi", _cluster()).result()
    group_id = f"/subscriptions/{az.arm.subscription_id}/resourceGroups/{group}"
    for scope, role in (
        (str(registry.id), TASKS_CONTRIBUTOR),
        (str(cluster.id), AKS_CLUSTER_USER),
        (group_id, ROLES["Reader"]),
        (str(registry.id), ROLES["AcrPull"]),
    ):
        name = str(uuid.uuid4())
        params = RoleAssignmentCreateParameters(
            role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        )
        created = az.roles.create(scope, name, params)
        assert created.scope == scope and str(created.role_definition_id).endswith(role)
        assert az.roles.get(scope, name).principal_id == principal
        with pytest.raises(HttpResponseError) as twice:
            az.roles.create(scope, str(uuid.uuid4()), params)
        assert twice.value.status_code == 409 and twice.value.error is not None
        assert twice.value.error.code == "RoleAssignmentExists"
    with pytest.raises(HttpResponseError) as invented:  # the id once hard-coded as AcrPull is no role at all
        _role(az, str(registry.id), "7f951dca-d1b7-4d0a-9b11-ce1bf1cd58da", principal)
    assert invented.value.error is not None and invented.value.error.code == "RoleDefinitionDoesNotExist"
    with pytest.raises(ResourceNotFoundError) as no_group:
        az.roles.get(f"/subscriptions/{az.arm.subscription_id}/resourceGroups/rg-nowhere", str(uuid.uuid4()))
    assert no_group.value.error is not None and no_group.value.error.code == "ResourceGroupNotFound"


# -- the token exchange (needs the local cluster's OIDC discovery and TokenRequest) --------------


@pytest.fixture(scope="module")
def cluster_oidc(arm_kubeconfig: Path | None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The local cluster's discovery document; skips when the cluster does not serve it (an older cluster)."""
    if arm_kubeconfig is None:
        pytest.skip("no local cluster kubeconfig (bootstrap/stack up)")
    cluster = yaml.safe_load(arm_kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = tmp_path_factory.mktemp("cluster-ca") / "ca.pem"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    try:
        answer = requests.get(cluster["server"].rstrip("/") + "/.well-known/openid-configuration", verify=str(ca), timeout=5)
        doc = answer.json() if answer.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        doc = {}
    if not doc.get("issuer") or not doc.get("jwks_uri"):
        pytest.skip(
            "the local cluster does not serve /.well-known/openid-configuration unauthenticated yet "
            "(bootstrap/cluster's OIDC discovery and TokenRequest API); restart the cluster with them"
        )
    return dict(doc)


@pytest.fixture
def core(arm_kubeconfig: Path) -> Iterator[k8s.CoreV1Api]:
    api = k8s_config.new_client_from_config(config_file=str(arm_kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield k8s.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def namespace(core: k8s.CoreV1Api, cluster_oidc: dict[str, Any]) -> Iterator[str]:
    """A namespace with ServiceAccounts `pipeline-worker` and `other`, deleted afterwards."""
    name = f"wi-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        for account in ("pipeline-worker", "other"):
            core.create_namespaced_service_account(name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=account)))
        yield name
    finally:
        core.delete_namespace(name)


def _sa_token(core: k8s.CoreV1Api, namespace: str, account: str, audience: str = EXCHANGE_AUDIENCE) -> str:
    request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[audience], expiration_seconds=3600))
    answer = core.create_namespaced_service_account_token(account, namespace, request)
    assert answer.status is not None
    return str(answer.status.token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))


def _forged(claims: dict[str, Any], kid: str) -> str:
    """A JWT with `claims`, signed RS256 by a key of our own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_input = f"{_b64(json.dumps({'alg': 'RS256', 'kid': kid, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


@pytest.fixture
def worker_identity(arm: Imitation, namespace: str, cluster_oidc: dict[str, Any]) -> Iterator[dict[str, str]]:
    """A user-assigned identity in the seeded group with a FIC for `<namespace>:pipeline-worker` on the seeded
    cluster's OIDC issuer, Tasks Contributor on the registry and AKS Cluster User on the cluster."""
    az = Clients(arm)
    cluster = az.aks.get(arm.resource_group, arm.cluster_name)
    deadline = time.monotonic() + 15  # an imitation started before the cluster served discovery catches up
    while cluster.properties.oidc_issuer_profile.issuer_url != cluster_oidc["issuer"] and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(1)
        cluster = az.aks.get(arm.resource_group, arm.cluster_name)
    issuer = str(cluster.properties.oidc_issuer_profile.issuer_url)  # type: ignore[union-attr]
    assert issuer == cluster_oidc["issuer"]
    msi = _msi(arm)
    name = f"worker-{uuid.uuid4().hex[:8]}"
    identity = msi.user_assigned_identities.create_or_update(arm.resource_group, name, Identity(location=arm.location))
    msi.federated_identity_credentials.create_or_update(
        arm.resource_group,
        name,
        "pipeline-worker",
        FederatedIdentityCredential(
            issuer=issuer, subject=f"system:serviceaccount:{namespace}:pipeline-worker", audiences=[EXCHANGE_AUDIENCE]
        ),
    )
    registry = az.acr.registries.get(arm.resource_group, arm.registry_name)
    _role(az, str(registry.id), TASKS_CONTRIBUTOR, str(identity.principal_id))
    _role(az, str(cluster.id), AKS_CLUSTER_USER, str(identity.principal_id))
    try:
        yield {"client_id": str(identity.client_id), "principal_id": str(identity.principal_id), "issuer": issuer}
    finally:
        msi.user_assigned_identities.delete(arm.resource_group, name)


def _workload_credential(arm: Imitation, client_id: str, token_file: Path) -> WorkloadIdentityCredential:
    return WorkloadIdentityCredential(
        tenant_id=arm.tenant_id,
        client_id=client_id,
        token_file_path=str(token_file),
        authority=arm.endpoint,
        disable_instance_discovery=True,
        connection_verify=str(arm.ca_bundle),
    )


def test_seeded_and_created_clusters_name_the_local_clusters_issuer(
    arm: Imitation, az: Clients, group: str, cluster_oidc: dict[str, Any]
) -> None:
    created = az.aks.begin_create_or_update(group, "aks-issuer", _cluster()).result()
    assert created.properties.oidc_issuer_profile.issuer_url == cluster_oidc["issuer"]  # type: ignore[union-attr]
    seeded = Clients(arm).aks.get(arm.resource_group, arm.cluster_name)
    assert seeded.properties.oidc_issuer_profile.issuer_url == cluster_oidc["issuer"]  # type: ignore[union-attr]
    plain = az.aks.begin_create_or_update(group, "aks-no-oidc", _cluster(oidc=False, workload=False)).result()
    assert plain.properties.oidc_issuer_profile.issuer_url is None  # type: ignore[union-attr]


def test_workload_identity_credential_acts_as_the_identity(
    arm: Imitation,
    core: k8s.CoreV1Api,
    namespace: str,
    worker_identity: dict[str, str],
    tmp_path: Path,
    arm_kubeconfig: Path,
) -> None:
    token = _sa_token(core, namespace, "pipeline-worker")
    claims = _claims(token)
    assert claims["iss"] == worker_identity["issuer"] and claims["sub"] == f"system:serviceaccount:{namespace}:pipeline-worker"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    cred = _workload_credential(arm, worker_identity["client_id"], token_file)
    arm_token = cred.get_token(ARM_SCOPE).token
    issued = _claims(arm_token)
    assert (issued["appid"], issued["oid"], issued["tid"]) == (
        worker_identity["client_id"],
        worker_identity["principal_id"],
        arm.tenant_id,
    )

    acr = ContainerRegistryManagementClient(cred, arm.subscription_id, api_version=TASKS_API_VERSION, **_kwargs(arm))
    assert acr.registries.get(arm.resource_group, arm.registry_name).login_server == arm.login_server
    upload = acr.registries.get_build_source_upload_url(arm.resource_group, arm.registry_name)
    assert upload.upload_url and upload.relative_path
    with pytest.raises(HttpResponseError) as no_credentials:  # not an action of Container Registry Tasks Contributor
        acr.registries.list_credentials(arm.resource_group, arm.registry_name)
    assert no_credentials.value.status_code == 403 and no_credentials.value.error is not None
    assert no_credentials.value.error.code == "AuthorizationFailed"
    assert worker_identity["client_id"] in str(no_credentials.value.error.message)

    aks = ContainerServiceClient(cred, arm.subscription_id, **_kwargs(arm)).managed_clusters
    kubeconfig = aks.list_cluster_user_credentials(arm.resource_group, arm.cluster_name).kubeconfigs[0].value  # type: ignore[index]
    assert yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"]
    with pytest.raises(HttpResponseError) as no_admin:
        aks.list_cluster_admin_credentials(arm.resource_group, arm.cluster_name)
    assert no_admin.value.status_code == 403
    with pytest.raises(HttpResponseError) as elsewhere:  # no role in the group itself
        AuthorizationManagementClient(cred, arm.subscription_id, **_kwargs(arm)).role_assignments.get(
            f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}", str(uuid.uuid4())
        )
    assert elsewhere.value.status_code == 403

    cluster_token = str(yaml.safe_load(arm_kubeconfig.read_text())["users"][0]["user"]["token"])
    assert cred.get_token(AKS_SCOPE).token == cluster_token  # as the client-secret path answers the AKS scope


def _refusal(arm: Imitation, client_id: str, assertion: str, tmp_path: Path) -> str:
    token_file = tmp_path / f"token-{uuid.uuid4().hex[:6]}"
    token_file.write_text(assertion)
    with pytest.raises(ClientAuthenticationError) as refused:
        _workload_credential(arm, client_id, token_file).get_token(ARM_SCOPE)
    return str(refused.value)


def test_assertions_no_federated_credential_matches_are_refused(
    arm: Imitation, core: k8s.CoreV1Api, namespace: str, worker_identity: dict[str, str], tmp_path: Path
) -> None:
    client_id = worker_identity["client_id"]
    other_account = _sa_token(core, namespace, "other")
    message = _refusal(arm, client_id, other_account, tmp_path)
    assert "AADSTS70021" in message and f"system:serviceaccount:{namespace}:other" in message

    other_audience = _sa_token(core, namespace, "pipeline-worker", audience="https://kubernetes.default.svc")
    message = _refusal(arm, client_id, other_audience, tmp_path)
    assert "AADSTS70021" in message and "Assertion Audience: 'https://kubernetes.default.svc'" in message

    claims = _claims(_sa_token(core, namespace, "pipeline-worker"))
    message = _refusal(arm, client_id, _forged({**claims, "iss": "https://issuer.example.com"}, "mine"), tmp_path)
    assert "AADSTS70021" in message and "Assertion Issuer: 'https://issuer.example.com'" in message

    message = _refusal(arm, str(uuid.uuid4()), _sa_token(core, namespace, "pipeline-worker"), tmp_path)
    assert "AADSTS700016" in message


def test_forged_and_expired_assertions_are_refused(
    arm: Imitation, core: k8s.CoreV1Api, namespace: str, worker_identity: dict[str, str], tmp_path: Path
) -> None:
    client_id = worker_identity["client_id"]
    genuine = _sa_token(core, namespace, "pipeline-worker")
    claims = _claims(genuine)
    cluster_kid = json.loads(base64.urlsafe_b64decode(genuine.split(".")[0] + "=="))["kid"]

    message = _refusal(arm, client_id, _forged(claims, "forged-key"), tmp_path)  # right claims, a key of our own
    assert "AADSTS7000272" in message and "forged-key" in message
    message = _refusal(arm, client_id, _forged(claims, cluster_kid), tmp_path)  # the cluster's kid, our signature
    assert "AADSTS700027" in message and "signature" in message
    head, body, signature = genuine.split(".")
    tampered = f"{head}.{_b64(json.dumps({**claims, 'exp': claims['exp'] + 3600}).encode())}.{signature}"
    assert "AADSTS700027" in _refusal(arm, client_id, tampered, tmp_path)

    now = int(time.time())
    expired = _forged({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, cluster_kid)
    message = _refusal(arm, client_id, expired, tmp_path)
    assert "AADSTS700024" in message and "not within its valid time range" in message

    token_file = tmp_path / "token"
    token_file.write_text(genuine)
    assert _workload_credential(arm, client_id, token_file).get_token(ARM_SCOPE).token  # the genuine one still works
