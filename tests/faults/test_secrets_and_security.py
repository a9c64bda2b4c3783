"""Secrets and pod security (issue 7, items 9 and 10), with the real pipeline on the local stack.

v1 (no API key) is deployed and verified: its running pod is checked as the
API sees it and as Docker enforces it. Then a Secret `temporal-api-key` with a
random canary is created in the namespace and a deployment references it via
`[temporal].api_key_secret = "temporal-api-key/api-key"`. An API key turns
TLS on in the rendered pods (never a key in clear text), and the local dev
server has no TLS, so the new pod cannot connect and the deployment rolls back
to v1 (exit 3). That run still carries the reference end to end; then the canary
is searched for in every DeploymentWorkflow history of the app, all CLI output,
the pipeline worker's log, the cluster's log, `pipeline render` and the layers
of the deployed image: it must appear nowhere.

The pipeline worker's Role (verbs it uses only) is tests/test_render_pipeline_role.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client

from pipeline import kube
from tests.e2e.support import CANARY_SECRET, EXIT_ROLLED_BACK, KUBECONFIG, Deployed, E2eApp, deployed, readable_text
from tests.helpers import REPO_ROOT
from tests.helpers.secrets import never_leak

pytestmark = pytest.mark.e2e

SECRET_CANARY = "canary-" + uuid.uuid4().hex
never_leak("the canary value of the temporal-api-key Secret", SECRET_CANARY)
SECRET_REF = "temporal-api-key/api-key"
UID = 10001


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(fault_app: E2eApp) -> Deployed:
    return deployed(await fault_app.cli("deploy", "--follow", config=fault_app.config(replicas=1)), fault_app)


def with_api_key_secret(app: E2eApp) -> Path:
    base = app.config(replicas=1)
    path = app.directory / "with-api-key-secret.toml"
    path.write_text(base.read_text().replace('api_key_secret = ""', f'api_key_secret = "{SECRET_REF}"'))
    assert f'api_key_secret = "{SECRET_REF}"' in path.read_text()
    return path


async def test_running_pods_are_locked_down_in_the_spec_and_in_docker(fault_app: E2eApp, v1: Deployed) -> None:
    live = [
        p for p in fault_app.raw_pods() if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    assert live, "no running pod"
    for pod in live:
        spec = pod["spec"]
        assert spec["securityContext"].get("runAsNonRoot") is True, spec["securityContext"]
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc.get("runAsNonRoot", spec["securityContext"].get("runAsNonRoot")) is True
        assert sc.get("runAsUser", spec["securityContext"].get("runAsUser")) == UID, (sc, spec["securityContext"])
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, sc
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), sc
        resources = container["resources"]
        assert set(resources["requests"]) >= {"cpu", "memory"} and set(resources["limits"]) >= {"cpu", "memory"}, resources

        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"name=k8s_{container['name']}_{name}_{ns}_"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(ids) == 1, f"expected one running Docker container for {ns}/{name}, got {ids}"
        (info,) = json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True, check=True).stdout)
        host = info["HostConfig"]
        assert info["Config"]["User"].split(":")[0] == str(UID), info["Config"]["User"]
        assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
        assert [c.upper().removeprefix("CAP_") for c in host["CapDrop"] or []] == ["ALL"], host["CapDrop"]
        assert not host.get("CapAdd"), host["CapAdd"]
        assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"] or []), host["SecurityOpt"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 * 2**20, (host["NanoCpus"], host["Memory"])


async def test_an_api_key_secret_is_only_referenced_and_never_leaks(
    fault_app: E2eApp, v1: Deployed, stack_client: Client
) -> None:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        kc.request(
            method="POST",
            path=f"/api/v1/namespaces/{fault_app.namespace}/secrets",
            what="the API key Secret",
            body={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "temporal-api-key", "namespace": fault_app.namespace},
                "data": {"api-key": base64.b64encode(SECRET_CANARY.encode()).decode()},
            },
        )
    config = with_api_key_secret(fault_app)

    render = (await fault_app.cli("render", config=config)).expect(0)
    objects = [o for o in yaml.safe_load_all(render.stdout) if o]
    assert "Secret" not in [o["kind"] for o in objects], "render printed a Secret object"
    env = objects[-1]["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = {"name": "TEMPORAL_API_KEY", "valueFrom": {"secretKeyRef": {"name": "temporal-api-key", "key": "api-key"}}}
    assert ref in env, env

    run = await fault_app.cli("deploy", "--follow", config=config)
    # An API key turns TLS on in the pods; the local dev server speaks no TLS: the new pod cannot connect, rolled back.
    tls = {"name": "TEMPORAL_TLS", "value": "true"}
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config_map["data"]["TEMPORAL_TLS"] == "true" or tls in env, "an API key would be sent without TLS"
    run.expect(EXIT_ROLLED_BACK, diagnose=fault_app.diagnose)
    assert f"Rolled back to {v1.image}" in run.stderr, run.output
    live = fault_app.deployment()["spec"]["template"]["spec"]["containers"][0]
    assert live["image"] == v1.image

    places: dict[str, str] = {f"`pipeline {' '.join(r.args)}`": r.output for r in fault_app.runs}
    places["pipeline worker log"] = fault_app.worker_log.read_text(errors="replace")
    places["cluster log"] = (REPO_ROOT / ".stack" / "logs" / "cluster.log").read_text(errors="replace")
    histories = 0
    async for execution in stack_client.list_workflows(f"WorkflowType='DeploymentWorkflow' AND DeploymentApp='{fault_app.name}'"):
        history = await stack_client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        places[f"history {execution.id}/{execution.run_id}"] = readable_text(history)
        histories += 1
    assert histories == 2, f"expected the v1 and the api-key deployments, found {histories}"
    assert SECRET_REF.split("/")[0] in places[f"history {fault_app.workflow_id}/{run.run_id}"], "the reference travels"
    layers = subprocess.run(["docker", "save", v1.image], capture_output=True, check=True, timeout=120).stdout
    assert SECRET_CANARY.encode() not in layers and CANARY_SECRET.encode() not in layers, f"image {v1.image} holds a secret"
    for place, text in places.items():
        assert SECRET_CANARY not in text, f"the Secret's value appears in {place}"
        assert CANARY_SECRET not in text, f"the pipeline's TEMPORAL_API_KEY appears in {place}"
