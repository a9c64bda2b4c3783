"""Shared inputs for the render and kube tests: the shipped sample app as the workflow would see it.

`sample_render_input` builds the RenderInput from the shipped config.toml (no
environment overrides), so the golden file follows the documented example.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from bootstrap.cluster.child import ClusterChild
from pipeline.config import PipelineConfig, load_config
from pipeline.models import RenderInput, SecretKeyRef, TemporalTarget
from pipeline.render import build_id_for
from pipeline.requests import app_spec
from tests.conftest import kubeconfig_tokens, never_leak

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO_ROOT / "config.toml"
# A fixed, made-up digest: the golden file must not depend on any build.
SAMPLE_IMAGE = "127.0.0.1:5000/sample-worker@sha256:" + "4f" * 32


def shipped_config() -> PipelineConfig:
    return load_config(SHIPPED_CONFIG, env={})


def sample_render_input(*, image: str = SAMPLE_IMAGE, api_key_secret: SecretKeyRef | None = None) -> RenderInput:
    config = shipped_config()
    temporal = TemporalTarget(
        address=config.temporal.address,
        namespace=config.temporal.namespace,
        tls=config.temporal.tls,
        api_key_env=config.temporal.api_key_env,
        api_key_secret=api_key_secret,
    )
    return RenderInput(app=app_spec(config, config.app(None)), temporal=temporal, image=image, build_id=build_id_for(image))


def with_app(spec: RenderInput, **changes: object) -> RenderInput:
    return replace(spec, app=replace(spec.app, **changes))  # type: ignore[arg-type]


# ----- a real local cluster with its kubelet, for tests/test_kube.py and the self-deploy tests -----


@dataclass
class LocalCluster(ClusterChild):
    """A cluster of the test's own (bootstrap/cluster/child.py) whose bearer token joins the history scan."""

    namespaces: list[str] = field(default_factory=list)  # what the test made, to delete at the end

    def start(self, *, timeout: float = 30.0) -> None:
        super().start(timeout=timeout)
        for token in kubeconfig_tokens(self.kubeconfig):
            never_leak(f"the bearer token of the test cluster {self.kubeconfig}", token)

    def stop(self, *, grace: float = 20.0) -> int | None:
        return super().stop(grace=grace)


def push_base_image(docker_client: object, *, repository: str, tag: str = "v1", base: str = "pipeline-base:bookworm") -> str:
    """Tag `base` as repository:tag, push it, and return `repository@sha256:...`."""
    client = docker_client
    image = client.images.get(base)  # type: ignore[attr-defined]
    image.tag(repository, tag)
    digest = ""
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):  # type: ignore[attr-defined]
        if "error" in chunk:
            raise RuntimeError(f"push of {repository}:{tag} failed: {chunk['error']}")
        digest = str((chunk.get("aux") or {}).get("Digest") or digest)
    if not digest:
        raise RuntimeError(f"push of {repository}:{tag} reported no digest")
    return f"{repository}@{digest}"


# A worker stand-in that keeps the sample worker's health contract: /readyz and
# /healthz answer 200 on HEALTH_HOST:HEALTH_PORT (both set by the rendered env).
HEALTHY_COMMAND = (
    "python3",
    "-c",
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200 if self.path in ('/readyz', '/healthz') else 404)\n"
    "        self.end_headers()\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.HTTPServer((os.environ['HEALTH_HOST'], int(os.environ['HEALTH_PORT'])), H).serve_forever()\n",
)
# Serves files, so /readyz is a 404 forever: running but never ready.
NEVER_READY_COMMAND = ("python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080")
CRASHING_COMMAND = ("python3", "-c", "import sys; print('boom: no TEMPORAL_ADDRESS', file=sys.stderr); sys.exit(3)")
