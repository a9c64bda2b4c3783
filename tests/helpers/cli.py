"""The `pipeline` CLI run for real in a subprocess, with an environment that cannot override config.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything that would override config.toml."""
    prefixes = ("PIPELINE", "TEMPORAL_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | extra


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = (sys.executable, "-m", "pipeline.cli")
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=60)
