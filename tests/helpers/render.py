"""The shipped sample app as the workflow would see it, for the render and kube tests.

`sample_render_input` builds the RenderInput from the shipped config.toml (no
environment overrides), so the golden file follows the documented example.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from pipeline.inputs import app_spec
from pipeline.models import GateSpec, Manifests, RenderInput, ReplayJobInput, ReplayTarget, SecretKeyRef, TemporalTarget
from pipeline.references import build_id_of
from tests.helpers.config import shipped_config

# A fixed, made-up digest: the golden file must not depend on any build.
SAMPLE_IMAGE = "127.0.0.1:5000/sample-worker@sha256:" + "4f" * 32


def sample_render_input(*, image: str = SAMPLE_IMAGE, api_key_secret: SecretKeyRef | None = None) -> RenderInput:
    config = shipped_config()
    temporal = TemporalTarget(
        address=config.temporal.address,
        namespace=config.temporal.namespace,
        tls=config.temporal.tls,
        api_key_env=config.temporal.api_key_env,
        api_key_secret=api_key_secret,
    )
    return RenderInput(app=app_spec(config, config.app(None)), temporal=temporal, image=image, build_id=build_id_of(image))


def with_app(spec: RenderInput, **changes: object) -> RenderInput:
    return replace(spec, app=replace(spec.app, **changes))  # type: ignore[arg-type]


def ungated(manifests: Manifests) -> Manifests:
    """The manifests without the pods' readiness gate: for tests of the Kubernetes layer alone, whose stand-in
    workers never poll Temporal (the gate and its controller are tested with real workers: tests/e2e)."""
    objects = copy.deepcopy(manifests.objects)
    for obj in objects:
        if obj.get("kind") == "Deployment":
            obj["spec"]["template"]["spec"].pop("readinessGates", None)
    return Manifests(objects=objects)


def replay_job_input(**changes: object) -> ReplayJobInput:
    """The replay gate Job's input for the sample render input (an API-key Secret, two replay modules, one target)."""
    spec = sample_render_input(api_key_secret=SecretKeyRef("temporal", "api-key"))
    app = replace(spec.app, replay_modules=("worker", "app.flows"))
    base = ReplayJobInput(
        app=app,
        temporal=spec.temporal,
        cluster=None,  # type: ignore[arg-type]
        image=spec.image,
        build_id=spec.build_id,
        gate=GateSpec("replay", "replay", timeout_seconds=90),
        targets=(ReplayTarget("wf-1", "run-1", "ApprovalWorkflow"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]
