"""Helpers shared by the pipeline-side Azure tests: build inputs against the imitation, a heartbeat recorder."""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from bootstrap.azure_arm import Imitation
from pipeline.azure import credentials
from pipeline.models import AcrRegistryRef, AksClusterRef, BuildImageInput, BuildSpec, SourceRef
from tests.helpers.source import ship_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def azure_env(arm_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The imitation's client environment, with the pipeline's credential cache cleared before and after."""
    credentials.reset()
    yield arm_env
    credentials.reset()


def registry_ref(arm: Imitation, *, name: str | None = None) -> AcrRegistryRef:
    return AcrRegistryRef(
        subscription_id=arm.subscription_id,
        resource_group=arm.resource_group,
        name=name or arm.registry_name,
        login_server=arm.login_server,
        endpoint=arm.endpoint,
    )


def cluster_ref(arm: Imitation, *, name: str | None = None, admin: bool = False) -> AksClusterRef:
    return AksClusterRef(
        subscription_id=arm.subscription_id,
        resource_group=arm.resource_group,
        cluster_name=name or arm.cluster_name,
        admin_credentials=admin,
        endpoint=arm.endpoint,
    )


def build_input(
    arm: Imitation,
    *,
    context: Path = REPO_ROOT,
    target: str = "sample-worker",
    build_args: dict[str, str] | None = None,
    registry: str | None = None,
    tag: str = "",
    uploaded: bool = True,
) -> BuildImageInput:
    """The build activity's input for `context`, its source uploaded to the registry as the CLI does (ship_spec).

    `uploaded=False`: a source reference nothing was uploaded for, for tests of what the activity's own
    Azure calls (scheduleRun) answer: it fails before the run could look for the archive.
    """
    app = f"acr-test-{uuid.uuid4().hex[:8]}"
    spec = BuildSpec(
        dockerfile="Dockerfile",
        target=target,
        repository=f"{arm.login_server}/{app}",
        build_args={"BASE_IMAGE": "pipeline-base:bookworm"} if build_args is None else build_args,
        acr=registry_ref(arm, name=registry),
    )
    if not uploaded:
        never = SourceRef(source_hash="0" * 64, digest="sha256:" + "0" * 64, size=1, location="source/never/uploaded.tar.gz")
        return BuildImageInput(app=app, target="aks", tag=tag, build=replace(spec, source=never))
    return BuildImageInput(app=app, target="aks", tag=tag, build=ship_spec(spec, context, app=app, tag=tag))


def registry_digest(repository: str, tag: str) -> str:
    """The digest the local registry itself reports for repository:tag (repository includes the host)."""
    host, _, name = repository.partition("/")
    request = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Docker-Content-Digest"])


@dataclass
class Heartbeats:
    """Records what an ActivityEnvironment's activity heartbeats; `stop_after_run_id` simulates a killed worker."""

    details: list[Any] = field(default_factory=list)
    stop_after_run_id: bool = False

    def __call__(self, *details: Any) -> None:
        self.details.append(details[0] if len(details) == 1 else details)
        if self.stop_after_run_id and isinstance(details[0], dict) and details[0].get("run_id"):
            raise WorkerKilled(details[0]["run_id"])

    def run_ids(self) -> set[str]:
        return {d["run_id"] for d in self.details if isinstance(d, dict) and d.get("run_id")}


class WorkerKilled(BaseException):
    """Raised from a heartbeat to stop the activity the way a dying worker would (not caught as an Exception)."""


def activity_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
