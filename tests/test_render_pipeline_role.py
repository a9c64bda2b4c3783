"""The pipeline's own worker as an app: config (`role = "pipeline"`), and its manifests' extra objects.

The Role must grant exactly what the activities' Kubernetes calls need: CALLS
below lists every call pipeline/kube makes on their behalf (function, HTTP
method, resource), and the rendered Role is compared with the verbs those calls
need, nothing more and nothing less.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.inputs import app_spec, pipeline_role
from pipeline.models import HostMount, PipelineRole, RenderInput, WorkloadIdentity
from pipeline.render import PIPELINE_RULES, render_manifests, to_yaml
from tests.helpers.config import SHIPPED_CONFIG, shipped_config
from tests.helpers.render import sample_render_input

IMAGE = "127.0.0.1:5000/pipeline-worker@sha256:" + "ab" * 32

# (kube-layer function, HTTP method, API group, resource) for every call the activities make.
CALLS = [
    # server_side_apply: PATCH (apply-patch) of each kind the pipeline renders, its own included
    ("apply_one", "PATCH", "", "namespaces"),
    ("apply_one", "PATCH", "", "serviceaccounts"),
    ("apply_one", "PATCH", "", "configmaps"),
    ("apply_one", "PATCH", "apps", "deployments"),
    ("apply_one", "PATCH", "rbac.authorization.k8s.io", "roles"),
    ("apply_one", "PATCH", "rbac.authorization.k8s.io", "rolebindings"),
    # read_revision
    ("get_configmap", "GET", "", "configmaps"),
    # wait_for_rollout
    ("_list_deployment", "GET list", "apps", "deployments"),
    ("_watch_deployment", "GET watch", "apps", "deployments"),
    ("_list_pods", "GET list", "", "pods"),
    ("_watch_pods", "GET watch", "", "pods"),
    ("_Rollout replicasets", "GET list", "apps", "replicasets"),
    # verify_polling
    ("list_pods", "GET list", "", "pods"),
    # the readiness gate (pipeline/readiness.py, in the worker process)
    ("list_gated_pods", "GET list", "", "pods"),
    ("start_pod_watch", "GET watch", "", "pods"),
    ("set_pod_condition", "PATCH", "", "pods/status"),
    # the rollout wait's diagnosis of a failing probe
    ("pod_events", "GET list", "", "events"),
    # versioned apps: the survey lists the versions' Deployments; a sunset scales or deletes one
    ("list_objects", "GET list", "apps", "deployments"),
    ("get_deployment", "GET", "apps", "deployments"),
    ("scale_deployment", "PATCH", "apps", "deployments/scale"),
    ("delete_object", "DELETE", "apps", "deployments"),
    ("delete_object", "DELETE", "", "configmaps"),
    # the replay gate: its ConfigMap and Job (apply, get, delete); the Job's pods (list_pods, above)
    ("apply_one", "PATCH", "batch", "jobs"),
    ("get_object", "GET", "batch", "jobs"),
    ("delete_object", "DELETE", "batch", "jobs"),
]
# An apply that creates the object needs `create` as well as `patch`; a Namespace is never created
# by the in-cluster worker (a namespaced Role cannot grant that; bootstrap makes the namespace).
CREATED_BY_APPLY = {"serviceaccounts", "configmaps", "deployments", "roles", "rolebindings", "jobs"}
VERB = {"PATCH": "patch", "GET": "get", "GET list": "list", "GET watch": "watch", "DELETE": "delete"}


def needed() -> dict[tuple[str, str], set[str]]:
    verbs: dict[tuple[str, str], set[str]] = {}
    for _fn, method, group, resource in CALLS:
        verbs.setdefault((group, resource), set()).add(VERB[method])
        if method == "PATCH" and resource in CREATED_BY_APPLY:
            verbs[(group, resource)].add("create")
    return verbs


def pipeline_input(**role: object) -> RenderInput:
    config = shipped_config()
    spec = app_spec(config, config.app("pipeline-worker"))
    if role:
        spec = replace(spec, pipeline_role=PipelineRole(**role))  # type: ignore[arg-type]
    base = sample_render_input()
    return replace(base, app=spec, image=IMAGE, build_id="sha256:" + "ab" * 6)


def by_kind(spec: RenderInput) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_manifests(spec).objects}


def test_the_role_grants_exactly_what_the_calls_need() -> None:
    role = by_kind(pipeline_input())["Role"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames/nonResourceURLs games
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == needed()
    assert not any("*" in verbs for verbs in granted.values())
    assert not any(res in ("secrets", "pods/exec", "pods/log") for _, res in granted)
    assert role["metadata"]["namespace"] == "temporal-workers"


def test_pipeline_rules_table_matches_the_rendered_role() -> None:
    rules = by_kind(pipeline_input())["Role"]["rules"]
    assert [(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in rules] == list(PIPELINE_RULES)


def test_objects_and_order() -> None:
    objects = render_manifests(pipeline_input()).objects
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"]
    binding = objects[3]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pipeline-worker"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-worker", "namespace": "temporal-workers"}]
    assert objects[1]["automountServiceAccountToken"] is True
    assert "Secret" not in {o["kind"] for o in objects}
    assert "secretKeyRef" not in to_yaml(render_manifests(pipeline_input()))


def test_local_target_mounts_docker_and_no_build_context() -> None:
    """Builds read the source the CLI uploaded (pipeline/source.py): no path of the host is mounted but the socket."""
    deploy = by_kind(pipeline_input())["Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["automountServiceAccountToken"] is True
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "docker-socket", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
    ]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "docker-socket", "mountPath": "/var/run/docker.sock"},
    ]
    assert pod["securityContext"]["supplementalGroups"] == [Path("/var/run/docker.sock").stat().st_gid]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["SHUTDOWN_GRACE_SECONDS"]) < pod["terminationGracePeriodSeconds"]
    cm = by_kind(pipeline_input())["ConfigMap"]["data"]
    assert cm["PIPELINE__PIPELINE__TASK_QUEUE"] == "deployments"
    assert "azure.workload.identity/use" not in deploy["spec"]["template"]["metadata"]["labels"]


CLIENT_ID = "6f1c3e2a-3b5d-4c1e-9a7b-1234567890ab"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_aks_target_has_workload_identity_and_no_host_mounts() -> None:
    objects = by_kind(pipeline_input(workload_identity=WorkloadIdentity(CLIENT_ID, TENANT_ID)))
    assert objects["ServiceAccount"]["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": CLIENT_ID,
        "azure.workload.identity/tenant-id": TENANT_ID,
    }
    template = objects["Deployment"]["spec"]["template"]
    # Injected as AKS's webhook would, without its label (so the webhook adds nothing a second time).
    assert "azure.workload.identity/use" not in template["metadata"]["labels"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert not any("hostPath" in v for v in volumes.values())
    assert volumes["azure-identity-token"]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "api://AzureADTokenExchange",
                "expirationSeconds": 3600,
                "path": "azure-identity-token",
            }
        }
    ]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AZURE_CLIENT_ID"] == CLIENT_ID and env["AZURE_TENANT_ID"] == TENANT_ID
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == "/var/run/secrets/azure/tokens/azure-identity-token"
    assert "AZURE_AUTHORITY_HOST" not in env and "AZURE_CA_BUNDLE" not in env
    assert {"name": "azure-identity-token", "mountPath": "/var/run/secrets/azure/tokens", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "supplementalGroups" not in template["spec"]["securityContext"]
    assert template["spec"]["serviceAccountName"] == "pipeline-worker"


def test_a_private_azure_endpoint_gets_its_authority_and_ca_from_a_config_map() -> None:
    identity = WorkloadIdentity(CLIENT_ID, TENANT_ID, authority_host="https://127.0.0.1:8443", ca_bundle_pem=CA_PEM)
    objects = render_manifests(pipeline_input(workload_identity=identity)).objects
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    assert maps["pipeline-worker-azure-ca"]["data"] == {"ca.pem": CA_PEM}
    kinds = [o["kind"] for o in objects]
    assert kinds.index("ConfigMap") < kinds.index("Deployment")
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AZURE_AUTHORITY_HOST"] == "https://127.0.0.1:8443"
    assert env["AZURE_CA_BUNDLE"] == "/etc/pipeline/azure-ca/ca.pem"
    assert "PRIVATE" not in json.dumps(objects)


def test_aks_config_makes_the_role_without_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(
        SHIPPED_CONFIG,
        env={"PIPELINE_TARGET": "aks", "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001"},
    )
    assert pipeline_role(config) == PipelineRole()  # the CLI adds the identity it reads from Azure


def test_plain_apps_are_unchanged() -> None:
    objects = render_manifests(sample_render_input()).objects
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "ConfigMap", "Deployment"]
    assert objects[1]["automountServiceAccountToken"] is False


def test_missing_docker_socket_is_a_clear_bad_request(tmp_path: Path) -> None:
    from pipeline.inputs import BadRequest

    with pytest.raises(BadRequest, match=r"needs the Docker engine's socket .*/absent.sock.*bootstrap/stack up"):
        pipeline_role(shipped_config(), docker_socket=str(tmp_path / "absent.sock"))


def test_host_mounts_are_data() -> None:
    mount = HostMount(name="x", path="/srv/x", read_only=False)
    pod = by_kind(pipeline_input(host_mounts=(mount,)))["Deployment"]["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == {"name": "x", "hostPath": {"path": "/srv/x"}}
    assert pod["containers"][0]["volumeMounts"][-1] == {"name": "x", "mountPath": "/srv/x"}


# ----- config -----


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM x AS pipeline-worker\nFROM x AS sample-worker\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


APP = '[apps.{name}]\nbuild_target = "{target}"\n'


def test_pipeline_app_defaults_to_the_pipeline_task_queue(tmp_path: Path) -> None:
    text = (
        '[pipeline]\ntask_queue = "q"\ndefault_app = "p"\n'
        + APP.format(name="p", target="pipeline-worker")
        + 'role = "pipeline"\n'
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.app("p").task_queue == "q" and config.app("p").role == "pipeline"


def test_pipeline_role_rules(tmp_path: Path) -> None:
    text = (
        '[pipeline]\ntask_queue = "q"\ndefault_app = "a"\n'
        + APP.format(name="a", target="sample-worker")
        + 'task_queue = "q"\n'
        + APP.format(name="p", target="pipeline-worker")
        + 'role = "pipeline"\ntask_queue = "other"\n[apps.p.rollout]\nmax_unavailable = 1\n'
        + APP.format(name="p2", target="pipeline-worker")
        + 'role = "pipeline"\n'
        + APP.format(name="b", target="sample-worker")
        + 'task_queue = "b"\nrole = "boss"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    lines = caught.value.lines()
    expected = [
        '[apps.a].task_queue: must differ from [pipeline].task_queue, got "q"',
        '[apps.p].task_queue: must be [pipeline].task_queue ("q") for role "pipeline" (or left out), got "other"',
        '[apps.p.rollout].max_unavailable: must be 0 for role "pipeline"',
        '[apps.p2].role: "pipeline" is already the role of [apps.p]',
        '[apps.b].role: must be one of "app", "pipeline"',
    ]
    for text_part in expected:
        assert any(text_part in line for line in lines), (text_part, lines)


def test_the_worker_needs_no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={"PIPELINE__PIPELINE__TASK_QUEUE": "q9", "TEMPORAL_ADDRESS": "10.0.0.1:7233"}, worker=True)
    assert (config.pipeline.task_queue, config.temporal.address, config.apps) == ("q9", "10.0.0.1:7233", {})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(None, env={}, worker=False)
    with pytest.raises(ConfigError, match="file not found"):  # an explicit path must exist
        load_config(None, env={"PIPELINE_CONFIG": str(tmp_path / "x.toml")}, worker=True)
