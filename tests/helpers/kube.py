"""Images and worker stand-ins for pods on a real local cluster (tests/test_kube.py)."""

from __future__ import annotations


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
