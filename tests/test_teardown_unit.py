"""`pipeline teardown`'s plan from hand-made facts (no cluster, no Azure), and the command's asking rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline import teardown
from pipeline.errors import PipelineError
from pipeline.teardown import AzureFacts, AzureResource, Facts, FederatedCredential, KubeFacts, KubeObject, RoleAssignment
from tests.helpers.config import shipped_config

pytestmark = pytest.mark.unit

NS = "temporal-workers"


def obj(kind: str, name: str, *, managed: bool = True, owned: bool = False, api: str = "v1") -> KubeObject:
    return KubeObject(api, kind, NS, name, managed=managed, owned=owned)


def namespace(*, marked: bool) -> KubeObject:
    return KubeObject("v1", "Namespace", "", NS, managed=True, marked=marked)


PIPELINE_OBJECTS = (
    obj("ServiceAccount", "pipeline-worker"),
    obj("ConfigMap", "pipeline-worker-temporal"),
    obj("Role", "pipeline-worker", api="rbac.authorization.k8s.io/v1"),
    obj("RoleBinding", "pipeline-worker", api="rbac.authorization.k8s.io/v1"),
    obj("Deployment", "pipeline-worker", api="apps/v1"),
    obj("ConfigMap", "pipeline-worker-revision"),
    # Kubernetes' own, in every namespace: neither deleted nor listed as left
    obj("ServiceAccount", "default", managed=False),
    obj("ConfigMap", "kube-root-ca.crt", managed=False),
    # owned by a Deployment or Job: goes with it
    obj("Pod", "pipeline-worker-abc", managed=True, owned=True),
)


def kube_facts(*objects: KubeObject, marked: bool = True) -> Facts:
    return Facts(kube=KubeFacts("the cluster of k", NS, namespace(marked=marked), objects))


def names(items: tuple[teardown.Item, ...]) -> list[str]:
    return [f"{i.kind} {i.name}" for i in items]


def test_the_pipelines_objects_go_workloads_first_and_a_namespace_it_created_last() -> None:
    plan = teardown.plan(kube_facts(*PIPELINE_OBJECTS))
    assert names(plan.delete) == [
        f"Deployment {NS}/pipeline-worker",
        f"RoleBinding {NS}/pipeline-worker",
        f"Role {NS}/pipeline-worker",
        f"ConfigMap {NS}/pipeline-worker-revision",
        f"ConfigMap {NS}/pipeline-worker-temporal",
        f"ServiceAccount {NS}/pipeline-worker",
        f"Namespace {NS}",
    ]
    assert plan.leave == ()
    assert plan.delete[0].key == ("apps/v1", "Deployment", NS, "pipeline-worker")


def test_what_is_not_labelled_stays_and_keeps_the_namespace() -> None:
    mine = obj("Secret", "my-own", managed=False)
    plan = teardown.plan(kube_facts(*PIPELINE_OBJECTS, mine))
    assert f"Secret {NS}/my-own" not in names(plan.delete)
    assert [i.line() for i in plan.leave] == [
        f"Secret {NS}/my-own: not the pipeline's (no app.kubernetes.io/managed-by=temporal-deploy-pipeline label)",
        f"Namespace {NS}: created by the pipeline, but it holds 1 object(s) that are not the pipeline's",
    ]


def test_a_namespace_that_existed_before_stays() -> None:
    plan = teardown.plan(kube_facts(*PIPELINE_OBJECTS, marked=False))
    assert names(plan.leave) == [f"Namespace {NS}"]
    assert "existed before the pipeline (no pipeline.temporal.io/created-by annotation)" in plan.leave[0].why
    assert f"Namespace {NS}" not in names(plan.delete) and len(plan.delete) == 6


def test_nothing_left_is_said_once() -> None:
    plan = teardown.plan(Facts(kube=KubeFacts("the cluster of k", NS, None)))
    assert plan.delete == () and plan.leave == ()
    assert plan.lines() == ["nothing to delete: nothing `pipeline bootstrap` made is left"]


SUB = "00000000-0000-0000-0000-000000000000"
RG_ID = f"/subscriptions/{SUB}/resourceGroups/rg"


def resource(kind: str, name: str, *, tagged: bool) -> AzureResource:
    return AzureResource(kind, name, f"{RG_ID}/providers/x/{name}", tagged=tagged)


def azure_facts(
    *, group: bool = True, registry: bool = True, cluster: bool = True, identity: bool = True, **more: object
) -> Facts:
    facts = AzureFacts(
        subscription_id=SUB,
        resource_group="rg",
        group=resource("resource group", "rg", tagged=group),
        registry=resource("registry", "acr", tagged=registry),
        cluster=resource("AKS cluster", "aks", tagged=cluster),
        cluster_issuer="https://oidc/aks/",
        identity=resource("managed identity", "temporal-pipeline", tagged=identity),
        credential=FederatedCredential(
            "ns-pw", "temporal-pipeline", "fic-id", "https://oidc/aks/", "system:serviceaccount:ns:pw"
        ),
        subject="system:serviceaccount:ns:pw",
        role_assignments=(
            RoleAssignment("AcrPull", "for aks's kubelet identity on acr", "ra-1", bootstraps=True),
            RoleAssignment("AcrPush", "for temporal-pipeline on acr", "ra-2", bootstraps=False),
        ),
    )
    return Facts(azure=replace(facts, **more))  # type: ignore[arg-type]


def test_everything_bootstrap_created_goes_in_a_safe_order() -> None:
    plan = teardown.plan(azure_facts())
    assert [i.kind for i in plan.delete] == [
        "AcrPull role assignment",
        "federated identity credential",
        "managed identity",
        "AKS cluster",
        "registry",
        "resource group",
    ]
    assert plan.delete[-1].why.endswith("deleting it deletes anything else in it")
    # The same role under another name was made by someone else.
    assert [i.line() for i in plan.leave] == [
        "AcrPush role assignment for temporal-pipeline on acr: made under another name, not by bootstrap"
    ]
    assert plan.delete[0].key == ("AcrPull role assignment", "ra-1")


def test_what_bootstrap_reused_stays_and_keeps_the_group() -> None:
    plan = teardown.plan(azure_facts(group=False, registry=False))
    assert [i.kind for i in plan.leave] == ["AcrPush role assignment", "registry", "resource group"]
    assert "existed before bootstrap (no tag created-by: temporal-deploy-pipeline)" in plan.leave[1].why
    # A group bootstrap created that holds a registry it did not: left, saying why.
    plan = teardown.plan(azure_facts(registry=False))
    assert plan.leave[-1].line() == "resource group rg: created by bootstrap, but it holds acr, which bootstrap did not create"


def test_a_credential_on_an_existing_identity_goes_only_when_it_trusts_a_cluster_bootstrap_created() -> None:
    kinds = lambda plan: [i.kind for i in plan.delete]  # noqa: E731
    assert "federated identity credential" in kinds(teardown.plan(azure_facts(identity=False)))
    for facts in (azure_facts(identity=False, cluster=False), azure_facts(identity=False, cluster_issuer="https://elsewhere/")):
        plan = teardown.plan(facts)
        assert "federated identity credential" not in kinds(plan)
        assert any(i.why == "may have existed before (credentials carry no tags)" for i in plan.leave)


def test_an_absent_group_is_nothing_to_do() -> None:
    plan = teardown.plan(Facts(azure=AzureFacts(SUB, "rg"), kube_note="AKS cluster aks does not exist"))
    assert plan.lines() == [
        "note: AKS cluster aks does not exist",
        "nothing to delete: nothing `pipeline bootstrap` made is left",
    ]


# ----- the command: when it asks, and what it does without a terminal -----


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> list[teardown.Plan]:
    executed: list[teardown.Plan] = []
    monkeypatch.setattr(teardown, "observe", lambda config, azure: kube_facts(*PIPELINE_OBJECTS))
    monkeypatch.setattr(teardown, "execute", lambda config, plan, say: executed.append(plan))
    return executed


def run(*, yes: bool = False, interactive: bool = False, answer: bool = False) -> tuple[int, list[str]]:
    said: list[str] = []
    code = teardown.run(
        shipped_config(), azure=False, yes=yes, interactive=interactive, confirm=lambda _: answer, say=said.append
    )
    return code, said


def test_without_yes_or_a_terminal_it_refuses_and_deletes_nothing(observed: list[teardown.Plan]) -> None:
    with pytest.raises(PipelineError) as refused:
        run()
    assert refused.value.lines() == [
        "pipeline teardown: not deleting the 7 listed above without confirmation, and there is no terminal to ask on; "
        "run `pipeline teardown --yes`"
    ]
    assert observed == []


def test_it_asks_on_a_terminal_and_a_no_deletes_nothing(observed: list[teardown.Plan]) -> None:
    code, said = run(interactive=True, answer=False)
    assert code == 1 and said[-1] == "nothing deleted" and observed == []
    code, said = run(interactive=True, answer=True)
    assert code == 0 and len(observed) == 1
    code, said = run(yes=True)
    assert code == 0 and len(observed) == 2 and said[0] == "delete (7, in this order):"


def test_azure_needs_target_aks() -> None:
    with pytest.raises(PipelineError, match=r'`pipeline teardown --azure` needs target = "aks" \(it is "local"\)'):
        teardown.run(shipped_config(), azure=True, yes=True, interactive=False, confirm=lambda _: True, say=print)
