"""`pipeline bootstrap` without the stack: what it refuses, and how it says so (the run itself: tests/e2e/test_self_deploy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.selfdeploy import NoPipelineApp, pipeline_app
from tests.helpers.cli import clean_env, run
from tests.helpers.config import shipped_config, write_config

pytestmark = pytest.mark.unit


def test_the_pipeline_app_is_the_one_with_role_pipeline() -> None:
    assert pipeline_app(shipped_config()).name == "pipeline-worker"


def test_a_config_without_pipeline_app_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    data = path.read_text()
    path.write_text(data.split("\n[apps.pipeline-worker]")[0].rsplit("\n# The pipeline's own worker", 1)[0] + "\n")
    with pytest.raises(NoPipelineApp, match='no app has role = "pipeline"; add \\[apps.pipeline-worker\\]'):
        pipeline_app(load_config(path, env={}))
    result = run(tmp_path, "bootstrap", env=clean_env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        'config.toml: no app has role = "pipeline"; add [apps.pipeline-worker] with role = "pipeline" (see the shipped config.toml)'
    ]
