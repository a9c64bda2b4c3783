"""The README's quick start command, exactly as written, runs its main job on the shared local stack."""

from __future__ import annotations

import subprocess

from tests.helpers import REPO_ROOT


def test_quickstart_deploys_the_sample_worker_and_prints_the_web_ui_link() -> None:
    result = subprocess.run(
        ["bootstrap/stack", "quickstart"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("build", "render", "apply", "rollout", "verify", "record"):
        assert f"-> {step}\n" in out
    assert "Deployed 127.0.0.1:5000/sample-worker@sha256:" in out and ": verified; polling: sample-worker-" in out
    assert "Web UI: http://127.0.0.1:8233/namespaces/default/workflows/deploy-local-sample-worker/" in out
