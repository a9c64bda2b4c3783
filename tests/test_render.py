"""pipeline.render: the sample app's manifests, pinned by a golden file, and each promise of the render.

Regenerate the golden file after an intended change with
    UPDATE_GOLDEN=1 pytest tests/test_render.py
and review its diff like code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.models import SecretKeyRef
from pipeline.references import build_id_of, split_reference
from pipeline.render import (
    BUILD_ID_ANNOTATION,
    MANAGED_BY,
    ImageNotPinned,
    RenderError,
    label_value,
    render_manifests,
    to_yaml,
)
from tests.helpers.render import SAMPLE_IMAGE, sample_render_input, with_app

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "sample-worker.yaml"


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def deployment() -> dict[str, Any]:
    return by_kind(render_manifests(sample_render_input()).objects, "Deployment")


def worker(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    return dict(containers[0])


def test_golden_sample_worker_yaml() -> None:
    text = to_yaml(render_manifests(sample_render_input()))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), "no golden file yet: run UPDATE_GOLDEN=1 pytest tests/test_render.py"
    assert text == GOLDEN.read_text(encoding="utf-8"), "rendered YAML differs from tests/golden/sample-worker.yaml"


def test_yaml_is_multi_document_in_apply_order_with_readable_keys() -> None:
    text = to_yaml(render_manifests(sample_render_input()))
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ConfigMap", "Deployment"]
    assert text.startswith("---\napiVersion: v1\nkind: Namespace\nmetadata:\n")
    for doc in docs:
        assert list(doc)[:3] == ["apiVersion", "kind", "metadata"]
    assert docs == render_manifests(sample_render_input()).objects


def test_render_is_deterministic() -> None:
    first = to_yaml(render_manifests(sample_render_input()))
    assert all(to_yaml(render_manifests(sample_render_input())) == first for _ in range(5))


def test_objects_are_named_after_the_app_in_its_namespace() -> None:
    spec = sample_render_input()
    objects = render_manifests(spec).objects
    assert by_kind(objects, "Namespace")["metadata"] == {
        "name": "temporal-workers",
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
    }
    sa = by_kind(objects, "ServiceAccount")
    assert sa["metadata"]["name"] == "sample-worker" and sa["automountServiceAccountToken"] is False
    cm = by_kind(objects, "ConfigMap")
    assert cm["metadata"]["name"] == "sample-worker-temporal"
    assert cm["data"] == {
        "TEMPORAL_ADDRESS": "127.0.0.1:7233",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": "sample-worker",
        "TEMPORAL_DEPLOYMENT_NAME": "temporal-workers/sample-worker",
        "TEMPORAL_TLS": "false",
    }
    assert all(dict(o["metadata"]).get("namespace", "temporal-workers") == "temporal-workers" for o in objects)  # type: ignore[call-overload]


def test_api_key_is_a_secret_reference_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", "super-secret-value")
    monkeypatch.setenv("MY_KEY", "super-secret-value")
    spec = sample_render_input(api_key_secret=SecretKeyRef(name="temporal-api", key="api-key"))
    text = to_yaml(render_manifests(spec))
    assert "super-secret-value" not in text
    assert "kind: Secret" not in text
    env = {e["name"]: e for e in worker(by_kind(render_manifests(spec).objects, "Deployment"))["env"]}
    assert env["TEMPORAL_API_KEY"] == {
        "name": "TEMPORAL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "temporal-api", "key": "api-key"}},
    }
    without = worker(deployment())
    assert "TEMPORAL_API_KEY" not in {e["name"] for e in without["env"]}
    config_map = by_kind(render_manifests(spec).objects, "ConfigMap")
    assert config_map["data"]["TEMPORAL_TLS"] == "true", "an API key turns TLS on: never a key in clear text"


def test_labels_and_an_immutable_selector_without_the_version() -> None:
    dep = deployment()
    expected = {
        "app.kubernetes.io/name": "sample-worker",
        "app.kubernetes.io/instance": "sample-worker",
        "app.kubernetes.io/version": "sha256-" + "4f" * 28,  # a label value: at most 63 characters
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "temporal-workers",
        "app.kubernetes.io/managed-by": "temporal-deploy-pipeline",
    }
    assert dep["metadata"]["labels"] == expected
    assert dep["spec"]["template"]["metadata"]["labels"] == expected
    assert dep["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "sample-worker", "app.kubernetes.io/instance": "sample-worker"}
    }
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[BUILD_ID_ANNOTATION] == "sha256:" + "4f" * 32


@pytest.mark.parametrize(
    ("build_id", "label"),
    [
        ("sha256:0123456789ab", "sha256-0123456789ab"),
        ("v1.2.3", "v1.2.3"),
        ("-weird/tag_", "weird-tag"),
        ("x" * 100, "x" * 63),
    ],
)
def test_version_label_is_label_safe(build_id: str, label: str) -> None:
    assert label_value(build_id) == label
    assert len(label) <= 63 and re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", label), label


def test_build_id_of_is_the_digest_or_the_tag() -> None:
    assert build_id_of("127.0.0.1:5000/app@sha256:" + "ab" * 32) == "sha256:" + "ab" * 32
    assert build_id_of("127.0.0.1:5000/app:v7@sha256:" + "ab" * 32) == "sha256:" + "ab" * 32
    assert build_id_of("127.0.0.1:5000/app:v7") == "v7"
    assert split_reference("127.0.0.1:5000/app:v7") == ("127.0.0.1:5000/app", "v7", "")


@pytest.mark.parametrize(
    "image",
    [
        "127.0.0.1:5000/sample-worker:v1",
        "127.0.0.1:5000/sample-worker",
        "127.0.0.1:5000/sample-worker@sha256:1234",
        "127.0.0.1:5000/sample-worker:v1@md5:" + "0" * 64,
    ],
)
def test_an_image_without_a_digest_is_refused(image: str) -> None:
    with pytest.raises(ImageNotPinned, match="not referenced by digest") as caught:
        render_manifests(sample_render_input(image=image))
    assert isinstance(caught.value, PipelineError)


def test_a_bad_build_id_is_refused() -> None:
    from dataclasses import replace

    with pytest.raises(RenderError, match="build id"):
        render_manifests(replace(sample_render_input(), build_id="has space"))


def test_rolling_update_keeps_every_old_worker_until_its_replacement_is_ready() -> None:
    spec = deployment()["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert spec["replicas"] == 2
    assert spec["progressDeadlineSeconds"] == 120
    assert spec["revisionHistoryLimit"] == 10
    assert spec["minReadySeconds"] == 0


def test_probes_on_the_health_port() -> None:
    c = worker(deployment())
    assert c["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert "readinessProbe" not in c  # the shipped config: readiness is the polling gate, with no probe period
    c = worker(by_kind(render_manifests(with_app(sample_render_input(), readiness_path="/readyz")).objects, "Deployment"))
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert (c["readinessProbe"]["periodSeconds"], c["readinessProbe"]["failureThreshold"]) == (1, 3)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert (c["livenessProbe"]["initialDelaySeconds"], c["livenessProbe"]["periodSeconds"]) == (10, 10)


def test_an_app_without_a_health_endpoint_gets_no_probe_no_port_and_no_health_env() -> None:
    c = worker(by_kind(render_manifests(with_app(sample_render_input(), health_port=0)).objects, "Deployment"))
    assert not {"ports", "readinessProbe", "livenessProbe"} & set(c)
    names = [e["name"] for e in c["env"]]
    assert "HEALTH_HOST" not in names and "HEALTH_PORT" not in names
    assert "TEMPORAL_WORKER_BUILD_ID" in names


def test_a_declared_endpoint_renders_only_the_probes_whose_path_is_set() -> None:
    spec = with_app(sample_render_input(), health_port=9000, readiness_path="", liveness_path="/alive")
    c = worker(by_kind(render_manifests(spec).objects, "Deployment"))
    assert c["ports"] == [{"name": "health", "containerPort": 9000, "protocol": "TCP"}]
    assert "readinessProbe" not in c
    assert c["livenessProbe"]["httpGet"] == {"path": "/alive", "port": "health"}


def test_every_pod_carries_the_polling_gate_and_says_what_to_look_for() -> None:
    spec = with_app(sample_render_input(), queue_types=("activity",))
    template = by_kind(render_manifests(spec).objects, "Deployment")["spec"]["template"]
    assert template["spec"]["readinessGates"] == [{"conditionType": "pipeline.temporal.io/polling"}]
    annotations = template["metadata"]["annotations"]
    assert annotations["pipeline.temporal.io/task-queue"] == "sample-worker"
    assert annotations["pipeline.temporal.io/queue-types"] == "activity"
    assert annotations["pipeline.temporal.io/temporal-namespace"] == "default"


def test_security_context_is_non_root_and_unprivileged() -> None:
    dep = deployment()
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["serviceAccountName"] == "sample-worker"
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 30
    assert worker(dep)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_resources_from_config() -> None:
    assert worker(deployment())["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_container_env_follows_the_sample_worker_contract() -> None:
    c = worker(deployment())
    assert c["image"] == SAMPLE_IMAGE and c["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in c  # the shipped config keeps the image's CMD
    assert c["envFrom"] == [{"configMapRef": {"name": "sample-worker-temporal"}}]
    env = [(e["name"], e.get("value", e.get("valueFrom"))) for e in c["env"]]
    assert env == [
        ("POD_NAME", {"fieldRef": {"fieldPath": "metadata.name"}}),
        ("POD_NAMESPACE", {"fieldRef": {"fieldPath": "metadata.namespace"}}),
        ("POD_IP", {"fieldRef": {"fieldPath": "status.podIP"}}),
        ("HEALTH_HOST", "$(POD_IP)"),
        ("HEALTH_PORT", "8080"),
        ("BUILD_ID", "sha256:" + "4f" * 32),
        ("TEMPORAL_WORKER_BUILD_ID", "sha256:" + "4f" * 32),
        ("SHUTDOWN_GRACE_SECONDS", "25"),
    ]


def test_command_and_short_grace_period() -> None:
    spec = with_app(sample_render_input(), command=("python3", "-m", "x"), termination_grace_period_seconds=3)
    c = worker(by_kind(render_manifests(spec).objects, "Deployment"))
    assert c["command"] == ["python3", "-m", "x"]
    assert {e["name"]: e.get("value") for e in c["env"]}["SHUTDOWN_GRACE_SECONDS"] == "1"


def test_a_changed_temporal_setting_changes_the_pod_template() -> None:
    from dataclasses import replace

    spec = sample_render_input()
    other = replace(spec, temporal=replace(spec.temporal, address="temporal.example:7233"))
    annotations = [
        by_kind(render_manifests(s).objects, "Deployment")["spec"]["template"]["metadata"]["annotations"] for s in (spec, other)
    ]
    assert annotations[0] != annotations[1]
