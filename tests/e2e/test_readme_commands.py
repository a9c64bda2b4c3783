"""The README's "Deploy your own worker" commands, as written, deploy a worker directory from a fresh clone (issue 23, item 6).

The commands are not copied here: the fenced ```sh block(s) under the README's
"## Deploy your own worker" heading are extracted when the test runs, so an edit
of the README changes what is tested (and a missing section or block fails the
test, saying so). They run with `bash -euo pipefail`, cwd = a fresh-clone-like
copy of this repository, in a clean environment (a login shell's PATH, an empty
HOME, nothing of PIPELINE_*/TEMPORAL_*/K8S_*/KUBECONFIG of the test process).

The copy (in tmp_path) holds what a clone would: the files
`git ls-files --cached --others --exclude-standard` lists (tracked and
new-but-not-ignored, as they are in the working tree, so it works before a
commit), plus what `bootstrap/stack quickstart` would have made in that clone but
which cannot be made twice on this machine, because the stack is shared:

    .venv       symlink to REPO_ROOT's (the `pipeline` console script, `temporal`)
    .stack      symlink to REPO_ROOT's (the running stack's state: the cluster's kubeconfig)
    wheelhouse  REPO_ROOT's wheels, hard-linked (or copied) into a real directory: Docker does not
                follow a symlink in a build context (`COPY wheelhouse/` fails on one), and the
                README's `docker build --target deps .` needs them.

How the deploy runs: with the default config.toml, exactly as a user has it after
the quick start. `pipeline deploy` uploads the packed build context to the
registry and starts the deployment workflow on the `deployments` task queue,
which the stack's own in-cluster pipeline worker (Deployment
temporal-workers/pipeline-worker) serves; no `pipeline worker` is started here
and no override of namespace or task queue is set, so this is the path a user
takes. Two concessions to the shared stack, neither a user needs:

  * the app name: `greeter` becomes `greeter-<random>` in the extracted text (the
    name in `pipeline app add NAME`, every other occurrence of it, and its
    PIPELINE__APPS__<NAME>__ form), so two runs, or an engineer's own `greeter`,
    never share a Deployment or a workflow id;
  * cleanup: the app's Deployment, ConfigMaps and ServiceAccount in temporal-workers
    are deleted afterwards (its pods go with the Deployment). The Docker tags the
    README builds (`sdk-deps:local`, `python-sdk:local`) are left: they are the
    same offline `deps` stage every time.

Then it checks what the user would see: exit 0, `Deployed ...: verified`, the Web
UI link, `pipeline doctor` printing `ok` for each of its checks, and Temporal
listing the deployed pods (SDK identity `1@<pod>`) polling the guessed queue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from pipeline.doctor import NAMES as DOCTOR_CHECKS
from pipeline.verify import describe_pollers, identity_names_pod
from tests.e2e.support import KUBECONFIG, TEMPORAL_NAMESPACE, UI_URL, pollers_of
from tests.helpers import REPO_ROOT
from tests.helpers.cluster import kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

README = REPO_ROOT / "README.md"
SECTION = "Deploy your own worker"
TASK_QUEUE = "sdk-greetings"  # what tests/fixtures/sdk_worker/worker.py polls; `pipeline app add` guesses it
STACK_QUEUE = "deployments"  # the stack's in-cluster pipeline worker, which the README's deploy goes through
STACK_NAMESPACE = "temporal-workers"  # the shipped config's [kubernetes].namespace
BLOCK_TIMEOUT = 600
# What `bootstrap/stack quickstart` makes in a clone that cannot be made a second time on a shared stack.
LINKED = (".venv", ".stack")
WHEELHOUSE = "wheelhouse"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_section(text: str, heading: str) -> list[str]:
    """The lines of the `## heading` section of `text`, up to the next heading of level 1 or 2 outside a fence."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(rf"##[ \t]+{re.escape(heading)}[ \t]*", line)]
    assert starts, f'README.md has no "## {heading}" section: the test of its commands has nothing to run'
    section: list[str] = []
    fenced = False
    for line in lines[starts[0] + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,2}[ \t]", line):
            break
        section.append(line)
    return section


def sh_blocks(section: list[str]) -> list[str]:
    """The contents of the fenced ```sh (or ```bash, ```shell) blocks of a section, in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    fenced = False
    for line in section:
        if line.startswith("```"):
            if not fenced:
                current = [] if re.fullmatch(r"```(sh|bash|shell)[ \t]*", line) else None
            elif current is not None:
                blocks.append("\n".join(current) + "\n")
                current = None
            fenced = not fenced
        elif fenced and current is not None:
            current.append(line)
    assert not fenced, "the section has an unclosed ``` fence"
    return blocks


def app_name_in(script: str) -> str:
    found = re.search(r"^\s*pipeline app add\s+([a-z0-9][a-z0-9-]*)", script, re.MULTILINE)
    assert found, f"the README's block never runs `pipeline app add NAME`:\n{script}"
    return found.group(1)


def env_form(name: str) -> str:
    """An app name as it appears in PIPELINE__APPS__<NAME>__KEY (config.toml's comment: "-" written "_")."""
    return name.upper().replace("-", "_")


def renamed(script: str, old: str, new: str) -> str:
    """`script` with the app `old` called `new`: the name itself and its PIPELINE__APPS__ form."""
    text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, script)
    return text.replace(f"PIPELINE__APPS__{env_form(old)}__", f"PIPELINE__APPS__{env_form(new)}__")


def fresh_clone(destination: Path) -> Path:
    """What `git clone` would give (working-tree contents of tracked and untracked, not ignored files), plus the stack's links."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    destination.mkdir()
    for rel in filter(None, listed.split("\0")):
        source = REPO_ROOT / rel
        if not source.is_file() and not source.is_symlink():
            continue  # listed in the index but deleted in the working tree
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    for name in LINKED:
        assert (REPO_ROOT / name).exists(), f"{REPO_ROOT / name} is missing: the stack is not up (bootstrap/stack up)"
        (destination / name).symlink_to(REPO_ROOT / name)
    wheels = REPO_ROOT / WHEELHOUSE
    assert wheels.is_dir(), f"{wheels} is missing: the stack is not up (bootstrap/stack up)"

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(wheels, destination / WHEELHOUSE, copy_function=link_or_copy)
    return destination


def clean_env(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {"PATH": CLEAN_PATH, "HOME": str(home), "LANG": "C.UTF-8"}


def delete_app_objects(app: str) -> None:
    """The app's Deployment (and so its pods), ConfigMaps and ServiceAccount in the stack's namespace."""
    listed = kubectl(
        KUBECONFIG, "-n", STACK_NAMESPACE, "get", "deployment,configmap,serviceaccount", "-o", "name", check=False
    ).stdout.split()
    mine = [ref for ref in listed if ref.split("/", 1)[1] == app or ref.split("/", 1)[1].startswith(f"{app}-")]
    if mine:
        kubectl(KUBECONFIG, "-n", STACK_NAMESPACE, "delete", *mine, "--wait=false", check=False)
    print(f"{app}: deleted from {STACK_NAMESPACE}: {' '.join(mine) or 'nothing'}")


@pytest.fixture
def app_name() -> Iterator[str]:
    name = f"greeter-{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        delete_app_objects(name)


async def test_deploy_your_own_worker_as_written_in_the_readme(tmp_path: Path, app_name: str, stack_client: Client) -> None:
    if not await pollers_of(stack_client, STACK_QUEUE, "activity"):
        pytest.skip(f"the stack's in-cluster pipeline worker does not poll {STACK_QUEUE!r} (bootstrap/stack up)")
    blocks = sh_blocks(readme_section(README.read_text(), SECTION))
    assert blocks, f'the README\'s "## {SECTION}" section has no fenced ```sh block'
    written = "\n".join(blocks)
    readme_app = app_name_in(written)
    script = renamed(written, readme_app, app_name)
    assert app_name_in(script) == app_name and f"PIPELINE__APPS__{env_form(readme_app)}__" not in script, script

    clone = fresh_clone(tmp_path / "clone")
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=clone,
            env=clean_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the README's block still ran after {BLOCK_TIMEOUT} s:\n{expired.stdout!r}\n{expired.stderr!r}")
    seconds = time.monotonic() - started
    out = done.stdout + done.stderr
    print(f"README block ({app_name}, {seconds:.1f} s, exit {done.returncode}):\n{script}\n--- output ---\n{out}")
    assert done.returncode == 0, f"the README's block exited {done.returncode}:\n{out[-6000:]}"

    deployed = re.search(
        rf"^Deployed 127\.0\.0\.1:5000/{re.escape(app_name)}@sha256:[0-9a-f]{{64}}: verified", done.stdout, re.MULTILINE
    )
    assert deployed, f"no `Deployed <image>: verified` line:\n{done.stdout}"
    assert f"Web UI: {UI_URL}/namespaces/{TEMPORAL_NAMESPACE}/workflows/deploy-local-{app_name}/" in done.stdout, done.stdout
    for check in DOCTOR_CHECKS:
        assert re.search(rf"^ok\s+{re.escape(check)}\s", done.stdout, re.MULTILINE), (
            f"`pipeline doctor` printed no ok {check!r} line"
        )
    assert not re.search(r"^FAIL\s", done.stdout, re.MULTILINE), done.stdout

    config = tomllib.loads((clone / "config.toml").read_text())
    assert config["apps"][app_name]["task_queue"] == TASK_QUEUE, config["apps"][app_name]
    assert app_name not in (REPO_ROOT / "config.toml").read_text(), "the block wrote into the repository's config.toml"

    pods = [
        p["metadata"]["name"]
        for p in kubectl_json("pods", f"app.kubernetes.io/name={app_name}")
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    ]
    assert pods, f"no running pods of {app_name} in {STACK_NAMESPACE}"
    pollers = await describe_pollers(stack_client, namespace=TEMPORAL_NAMESPACE, task_queue=TASK_QUEUE)
    for pod in pods:
        named = sorted(p.identity for p in pollers if identity_names_pod(p.identity, pod))
        # The SDK's default identity: pid 1 in its container, the pod's name as its hostname.
        assert f"1@{pod}" in named, (
            f"Temporal does not list pod {pod} polling {TASK_QUEUE}: {sorted(p.identity for p in pollers)}"
        )
    print(f"README block: {seconds:.1f} s; pods {pods} poll {TASK_QUEUE}")


def kubectl_json(kind: str, selector: str) -> list[dict[str, Any]]:
    listed = kubectl(KUBECONFIG, "-n", STACK_NAMESPACE, "get", kind, "-l", selector, "-o", "json").stdout
    return list(json.loads(listed).get("items") or [])
