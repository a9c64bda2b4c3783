"""The README's quick start command runs its main job against the shared local stack."""

from __future__ import annotations

import subprocess
import sys

import docker
import docker.errors

from bootstrap.quickstart import CONTAINER_NAME
from tests.conftest import REPO_ROOT


def test_quickstart_ships_the_sample_worker_and_prints_the_web_ui_link() -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bootstrap.quickstart", "--workflows", "2"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "pushed 127.0.0.1:5000/sample-worker@sha256:" in out
        assert f"polling as '{CONTAINER_NAME}@sha256:" in out
        assert out.count(" completed: trk-") == 2
        assert "Web UI: http://127.0.0.1:8233/namespaces/default/workflows?query=TaskQueue%3D%22sample-worker%22" in out
    finally:
        engine = docker.from_env()
        try:
            engine.containers.get(CONTAINER_NAME).remove(force=True)
        except docker.errors.NotFound:
            pass
