"""Shipping a build's source the way `pipeline deploy` does (pipeline/source.py), for tests that build directly.

The build activity never reads a client path: it builds the archive the CLI
uploaded (BuildSpec.source). Tests that construct a BuildSpec or DeployRequest
themselves pack and upload its context with `ship_spec` / `ship_request` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pipeline import source
from pipeline.models import BuildSpec, DeployRequest


def ship_request(
    request: DeployRequest, context: Path, *, say: Callable[[str], None] = lambda line: None, max_mb: int = 500
) -> DeployRequest:
    """`request` with its build context packed and uploaded (registry blob, or ACR upload for target aks)."""
    return source.ship(request, context, max_mb=max_mb, say=say)


def ship_spec(
    spec: BuildSpec, context: Path, *, app: str = "test", tag: str = "", say: Callable[[str], None] = lambda line: None
) -> BuildSpec:
    """`spec` with its `source` set as `pipeline deploy` would set it, after uploading `context`."""
    from pipeline.models import AppSpec, ClusterRef, DeployRequest, ResourceSpec, RolloutSpec, TemporalTarget

    request = DeployRequest(
        app=AppSpec(
            name=app,
            namespace="ns",
            task_queue=app,
            replicas=1,
            resources=ResourceSpec("100m", "100m", "64Mi", "64Mi"),
            rollout=RolloutSpec(60, 1, 0, 60, True),
            health_port=0,
            termination_grace_period_seconds=10,
            build=spec,
        ),
        environment="aks" if spec.acr is not None else "local",
        temporal=TemporalTarget(address="127.0.0.1:7233", namespace="default"),
        cluster=ClusterRef(),
        tag=tag,
    )
    shipped = ship_request(request, context, say=say).app.build
    assert shipped is not None
    return replace(spec, source=shipped.source)
