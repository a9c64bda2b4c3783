"""Deployed pods get their Temporal client certificate the way envconfig reads it: [temporal].tls_secret
mounted as files, named by TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH (and _SERVER_CA_CERT_PATH).

Also: the pipeline's own worker, given exactly its pod's environment, connects with those files
(its own credentials, not the CLI's paths from the request), and nothing changes for an app
without tls_secret (the golden file pins that).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from temporalio.service import TLSConfig

from pipeline import temporal_client
from pipeline.config import load_config
from pipeline.inputs import app_spec, temporal_target
from pipeline.models import PipelineRole, RenderInput, TemporalTarget
from pipeline.render import TLS_DIR, render_manifests, to_yaml
from tests.helpers.config import shipped_config
from tests.helpers.render import replay_job_input, sample_render_input, with_app

pytestmark = pytest.mark.unit

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def mtls(spec: RenderInput, *, ca: bool = True, server_name: str = "") -> RenderInput:
    temporal = replace(
        spec.temporal,
        tls_secret="temporal-client-tls",
        tls_client_cert_path="/home/me/client.pem",  # the CLI's files: never what a pod reads
        tls_client_key_path="/home/me/client.key",
        tls_server_ca_cert_path="/home/me/ca.pem" if ca else "",
        tls_server_name=server_name,
    )
    return replace(spec, temporal=temporal)


def objects(spec: RenderInput) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_manifests(spec).objects}


def test_the_secret_is_mounted_and_named_by_envconfig_variables() -> None:
    rendered = objects(mtls(sample_render_input(), server_name="temporal.internal"))
    data = rendered["ConfigMap"]["data"]
    assert {k: v for k, v in data.items() if k.startswith("TEMPORAL_TLS")} == {
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": f"{TLS_DIR}/tls.crt",
        "TEMPORAL_TLS_CLIENT_KEY_PATH": f"{TLS_DIR}/tls.key",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": f"{TLS_DIR}/ca.crt",
        "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
    }
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "temporal-tls", "secret": {"secretName": "temporal-client-tls"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "temporal-tls", "mountPath": TLS_DIR, "readOnly": True}]
    assert "/home/me" not in to_yaml(render_manifests(mtls(sample_render_input())))


def test_without_a_server_ca_the_pods_use_the_system_cas() -> None:
    data = objects(mtls(sample_render_input(), ca=False))["ConfigMap"]["data"]
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" not in data and "TEMPORAL_TLS_SERVER_NAME" not in data


def test_a_versioned_app_keeps_the_mount_in_each_version() -> None:
    spec = mtls(sample_render_input())
    spec = with_app(spec, rollout=replace(spec.app.rollout, strategy="versioned"))
    rendered = objects(spec)
    assert rendered["ConfigMap"]["data"]["TEMPORAL_TLS_CLIENT_CERT_PATH"] == f"{TLS_DIR}/tls.crt"
    assert rendered["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["name"] == "temporal-tls"


def _pipeline_worker(spec: RenderInput) -> RenderInput:
    config = shipped_config()
    # The role itself (the Docker socket's group, read from the host) is not what these tests are about, and the
    # unit tier runs before Docker does: it is replaced by an empty one before app_spec would stat the socket.
    with mock.patch("pipeline.inputs.pipeline_role", return_value=PipelineRole()):
        app = app_spec(config, config.app("pipeline-worker"))
    return replace(spec, app=app)


def test_the_pipeline_worker_keeps_both_its_own_volumes_and_the_secret() -> None:
    pod = objects(_pipeline_worker(mtls(sample_render_input())))["Deployment"]["spec"]["template"]["spec"]
    names = [v["name"] for v in pod["volumes"]]
    assert names[0] == "tmp" and "temporal-tls" in names
    assert TLS_DIR in [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]]


def test_the_pipeline_worker_connects_with_its_pods_files_not_the_requests(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipeline worker` reads its pod's ConfigMap; its activities connect with those files whatever the request says."""
    spec = _pipeline_worker(mtls(sample_render_input()))
    pod_env = {k: v.replace(TLS_DIR, str(tmp_path)) for k, v in objects(spec)["ConfigMap"]["data"].items()}
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_bytes(PEM)
    monkeypatch.chdir(tmp_path)
    own = temporal_target(load_config(None, env=pod_env, worker=True))
    request = spec.temporal  # the CLI's paths under /home/me: absent in the pod
    temporal_client.use_own_credentials(own)
    try:
        creds = temporal_client._own or request
        tls = temporal_client.tls_setting(creds, api_key=None)
    finally:
        temporal_client.use_own_credentials(None)
    assert isinstance(tls, TLSConfig) and tls.client_cert == PEM and tls.server_root_ca_cert == PEM
    with pytest.raises(temporal_client.PipelineError, match="/home/me/ca.pem"):
        temporal_client.tls_setting(request, api_key=None)


def test_no_tls_secret_no_change() -> None:
    plain = sample_render_input()
    assert plain.temporal == TemporalTarget(address=plain.temporal.address, namespace=plain.temporal.namespace)
    pod = objects(plain)["Deployment"]["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]


def test_the_replay_gate_job_mounts_the_secret_too() -> None:
    """The replay gate's Job runs the candidate image against Temporal: with the same files and variables."""
    from pipeline.gates import replay_objects

    request = replay_job_input(temporal=mtls(sample_render_input()).temporal)
    _, job = replay_objects(request)
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["TEMPORAL_TLS_CLIENT_CERT_PATH"] == f"{TLS_DIR}/tls.crt" and env["TEMPORAL_TLS"] == "true"
    assert {"name": "temporal-tls", "secret": {"secretName": "temporal-client-tls"}} in pod["volumes"]
    assert {"name": "temporal-tls", "mountPath": TLS_DIR, "readOnly": True} in pod["containers"][0]["volumeMounts"]
