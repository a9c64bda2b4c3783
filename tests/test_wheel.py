"""What `pip install .` gives a user: the product (pipeline/ and the workers' health helper), never the local stack.

The wheel is built from this checkout and installed into a new, empty virtual
environment that sees the test venv's third-party packages (a .pth line, so
nothing is downloaded) but not this checkout: `pipeline --help`, `pipeline
config` and `pipeline render` work there, and `import bootstrap` fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only the wheel installed (plus a view of the test venv's dependencies); its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"pipeline", "worker_health"}, tops

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "test-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return env_dir / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE", "TEMPORAL_", "PYTHON"))}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, cwd=cwd, env={**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    )


def test_the_installed_cli_runs_help_config_and_render(installed: Path, tmp_path: Path) -> None:
    assert run(installed, "pipeline", "--help", cwd=tmp_path).returncode == 0
    config = ("--config", str(REPO_ROOT / "config.toml"))
    shown = run(installed, "pipeline", *config, "config", cwd=tmp_path)
    assert shown.returncode == 0 and "[apps.sample-worker]" in shown.stdout, shown.stderr
    image = "127.0.0.1:5000/sample-worker@sha256:" + "a" * 64
    rendered = run(installed, "pipeline", *config, "render", "--image", image, cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Deployment" in rendered.stdout and image in rendered.stdout
    where = run(installed, "python", "-c", "import pipeline; print(pipeline.__file__)", cwd=tmp_path).stdout
    assert str(installed.parent) in where, f"pipeline imported from {where}, not from the installed wheel"


def test_the_local_stack_is_not_installed(installed: Path, tmp_path: Path) -> None:
    found = run(installed, "python", "-c", "import bootstrap", cwd=tmp_path)
    assert found.returncode != 0 and "No module named 'bootstrap'" in found.stderr, found.stderr
    cli = (installed / "pipeline").read_text()
    assert "bootstrap" not in cli
