"""Bad input (issue 7, item 7): each case is one clear stderr line, a non-zero exit, and nothing applied or started.

Every case runs the real `pipeline` console script against the local stack with
one thing wrong: in config.toml, in the arguments, in an environment override,
or in the environment itself (an unreachable Temporal, a kubeconfig that is
missing, garbage or lacks the context). After each, the app's namespace must
not exist and no DeploymentWorkflow with its DeploymentApp may exist.

Failures that only the pipeline worker can see (a bad kubeconfig on a real
deploy) are reported by the workflow's first activity today: that case asserts
what the CLI does now, one line, exit 1, nothing applied, and records that a
workflow was started.
"""

from __future__ import annotations

import copy
import re
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from pipeline import kube
from pipeline.config import to_toml
from tests.e2e.support import EXIT_BAD_INPUT, KUBECONFIG, PIPELINE, REGISTRY, E2eApp, Run

pytestmark = pytest.mark.e2e

DNS_LABEL = 'must be a DNS-1123 label (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)'
TAG_RULE = "is not a valid image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
KUBECONFIG_HINT = "point [kubernetes].kubeconfig (or KUBECONFIG) at a valid kubeconfig; for the local target run bootstrap first"


@dataclass(frozen=True)
class Case:
    """`pipeline ARGS` with a config changed by `edit` and env `env`; stderr must be `line` (formatted)."""

    id: str
    line: str  # exact, after .format(path=, app=, kubeconfig=, image=, dir=); "re:" prefix for a regex
    args: tuple[str, ...] = ("deploy",)
    edit: Callable[[dict[str, Any]], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # config text written as is, instead of an edited one


def app_(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: next(iter(d["apps"].values())).update({key: value})


def section(name: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.setdefault(name, {}).update(values)


def rename_app(new: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        (old,) = d["apps"]
        d["apps"] = {new: d["apps"].pop(old)}
        d["pipeline"]["default_app"] = new

    return edit


CONFIG_CASES = [
    Case(
        "replicas-not-an-integer",
        '{path}: [apps.{app}].replicas: must be an integer from 1 to 100, got "two"',
        edit=app_("replicas", "two"),
    ),
    Case("replicas-zero", "{path}: [apps.{app}].replicas: must be an integer from 1 to 100, got 0", edit=app_("replicas", 0)),
    Case("unknown-app-key", "{path}: [apps.{app}].colour: unknown key", edit=app_("colour", "red")),
    Case("unknown-section", "{path}: [nope]: unknown section", edit=section("nope", a=1)),
    Case("tls-not-a-bool", '{path}: [temporal].tls: must be true or false, got "yes"', edit=section("temporal", tls="yes")),
    Case("app-name-not-dns", f"{{path}}: [apps.Bad_App]: app name {DNS_LABEL}", edit=rename_app("Bad_App")),
    Case(
        "namespace-not-dns",
        f'{{path}}: [kubernetes].namespace: {DNS_LABEL}, got "Bad_NS"',
        edit=section("kubernetes", namespace="Bad_NS"),
    ),
    Case(
        "task-queue-is-the-pipelines",
        '{path}: [apps.{app}].task_queue: must differ from [pipeline].task_queue, got "{app}-deployments"',
        edit=lambda d: app_("task_queue", d["pipeline"]["task_queue"])(d),
    ),
    Case(
        "memory-not-a-quantity",
        '{path}: [resources].memory_request: must be a positive memory quantity like "256Mi", "1Gi" or "128974848", got "lots"',
        edit=section("resources", memory_request="lots"),
    ),
    Case(
        "cpu-not-a-quantity",
        '{path}: [resources].cpu_request: must be a positive CPU quantity like "500m", "0.5" or "2", got "1x"',
        edit=section("resources", cpu_request="1x"),
    ),
    Case(
        "cpu-limit-below-request",
        '{path}: [resources].cpu_limit: must be at least cpu_request ("100m"), got "50m"',
        edit=section("resources", cpu_limit="50m"),
    ),
    Case(
        "memory-limit-below-request",
        '{path}: [resources].memory_limit: must be at least memory_request ("128Mi"), got "64Mi"',
        edit=section("resources", memory_limit="64Mi"),
    ),
    Case(
        "missing-dockerfile",
        "{path}: [apps.{app}].dockerfile: must be an existing file, got {repo}/Nope.Dockerfile",
        edit=app_("dockerfile", "Nope.Dockerfile"),
    ),
    Case(
        "unknown-build-target",
        '{path}: [apps.{app}].build_target: must name a stage of {repo}/Dockerfile (stages: "deps", "sample-worker", '
        '"pipeline-deps", "pipeline-worker"), got "no-such-stage"',
        edit=app_("build_target", "no-such-stage"),
    ),
    Case(
        "missing-build-context",
        "{path}: [apps.{app}].build_context: must be an existing directory, got {dir}/no-such-dir",
        edit=lambda d: app_("build_context", "no-such-dir")(d),
    ),
    Case(
        "port-out-of-range",
        "{path}: [apps.{app}].health_port: must be an integer from 0 to 65535, got 70000",
        edit=app_("health_port", 70000),
    ),
    Case(
        "surge-and-unavailable-zero",
        "{path}: [rollout].max_unavailable: cannot be 0 when max_surge is 0 too (no pod could ever be replaced)",
        edit=section("rollout", max_surge=0, max_unavailable=0),
    ),
    Case(
        "api-key-secret-not-a-reference",
        '{path}: [temporal].api_key_secret: must be a Kubernetes Secret and key as "secret-name/key" or "", never the key itself',
        edit=section("temporal", api_key_secret="no-slash"),
    ),
    Case("toml-syntax", "{path}: line 1: illegal character '\\n' (column 16)", raw='target = "local\n[temporal\n'),
]

ARGUMENT_CASES = [
    Case("tag-shell-rm", f"--tag: 'a;rm -rf /' {TAG_RULE}", args=("deploy", "--tag", "a;rm -rf /")),
    Case("tag-command-substitution", f"--tag: '$(id)' {TAG_RULE}", args=("deploy", "--tag", "$(id)")),
    Case("tag-path", f"--tag: '../x' {TAG_RULE}", args=("deploy", "--tag", "../x")),
    Case(
        "image-with-space",
        "--image: not a valid image reference: 'foo bar' (expected registry/name[:tag][@sha256:digest])",
        args=("deploy", "--image", "foo bar"),
    ),
    Case(
        "image-uppercase",
        "--image: not a valid image reference: 'UPPER/Case:x' (expected registry/name[:tag][@sha256:digest])",
        args=("deploy", "--image", "UPPER/Case:x"),
    ),
    Case(
        "image-backticks-in-render",
        "--image: not a valid image reference: 'r/x:`id`' (expected registry/name[:tag][@sha256:digest])",
        args=("render", "--image", "r/x:`id`"),
    ),
    Case(
        "image-not-in-registry",
        f"--image {REGISTRY}/{{app}}-absent:v1: the registry has no such image",
        args=("deploy", "--image", f"{REGISTRY}/{{app}}-absent:v1"),
    ),
    Case(
        "no-build-and-image",
        "--image and --no-build exclude each other: --image already names an image that is not built",
        args=("deploy", "--no-build", "--image", "{image}"),
    ),
    Case(
        "no-build-before-any-build",
        "re:" + re.escape(REGISTRY) + r"/f-[a-z0-9-]+:src-[0-9a-f]+ has not been built from the current source yet; "
        r"pass --image REF, or deploy once to build it",
        args=("deploy", "--no-build"),
    ),
    Case("unknown-app", '{path}: no app named "nope"; known apps: "{app}"', args=("deploy", "--app", "nope")),
    Case("status-never-deployed", "no deployment of {app} to local found in Temporal", args=("status",)),
]

ENV_CASES = [
    Case(
        "env-temporal-address",
        'env TEMPORAL_ADDRESS: [temporal].address: must be host:port, got "nope"',
        env={"TEMPORAL_ADDRESS": "nope"},
    ),
    Case(
        "env-replicas",
        'env PIPELINE__APPS__{APP}__REPLICAS: [apps.{app}].replicas: must be an integer from 1 to 100, got "abc"',
        env={"PIPELINE__APPS__{APP}__REPLICAS": "abc"},
    ),
    Case(
        "env-unknown-key",
        "env PIPELINE__APPS__{APP}__COLOUR: [apps.{app}].colour: unknown key",
        env={"PIPELINE__APPS__{APP}__COLOUR": "red"},
    ),
    Case(
        "env-namespace", f'env K8S_NAMESPACE: [kubernetes].namespace: {DNS_LABEL}, got "Bad_NS"', env={"K8S_NAMESPACE": "Bad_NS"}
    ),
    Case(
        "config-file-missing",
        "{dir}/none.toml: file not found (looked for {dir}/none.toml; pass --config or set PIPELINE_CONFIG)",
        env={"PIPELINE_CONFIG": "{dir}/none.toml"},
    ),
]

ENVIRONMENT_CASES = [
    Case(
        "temporal-unreachable",
        r"re:^cannot reach Temporal at 127\.0\.0\.1:{port} \(namespace default\): .*Connection refused.*$",
        env={"TEMPORAL_ADDRESS": "127.0.0.1:{port}"},
    ),
    Case(
        "dry-run-kubeconfig-missing",
        f"kubeconfig {{dir}}/no-kubeconfig: no such file, and no service-account token is mounted; {KUBECONFIG_HINT}",
        args=("deploy", "--dry-run", "--image", "{image}"),
        edit=section("kubernetes", kubeconfig="no-kubeconfig"),
    ),
    Case(
        "dry-run-kubeconfig-garbage",
        f"re:^kubeconfig {{dir}}/garbage-kubeconfig: unusable: .*; {re.escape(KUBECONFIG_HINT)}$",
        args=("deploy", "--dry-run", "--image", "{image}"),
        edit=section("kubernetes", kubeconfig="garbage-kubeconfig"),
    ),
    Case(
        "dry-run-unknown-context",
        f"re:^kubeconfig {KUBECONFIG} \\(context no-such-context\\): unusable: .*no-such-context.*; {re.escape(KUBECONFIG_HINT)}$",
        args=("deploy", "--dry-run", "--image", "{image}"),
        edit=section("kubernetes", context="no-such-context"),
    ),
]

CASES = CONFIG_CASES + ARGUMENT_CASES + ENV_CASES + ENVIRONMENT_CASES


@dataclass(frozen=True)
class Setting:
    app: E2eApp
    image: str  # an image that is in the registry, for the cases that must get past --image
    closed_port: int


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def setting(fault_app: E2eApp) -> Setting:
    """A tiny image pushed under the app's name (never deployed), and a garbage kubeconfig."""
    context = fault_app.directory / "tiny"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    (context / "hello").write_text("hello\n")
    image = f"{REGISTRY}/{fault_app.name}-tiny:v1"
    for command in (["docker", "build", "-q", "-t", image, str(context)], ["docker", "push", "-q", image]):
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    (fault_app.directory / "garbage-kubeconfig").write_text("this: is: not [ a kubeconfig\n")
    return Setting(fault_app, image, closed_port())


def fill(text: str, s: Setting, path: Path) -> str:
    from tests.helpers import REPO_ROOT

    return text.format(
        path=path,
        app=s.app.name,
        APP=s.app.name.upper().replace("-", "_"),
        dir=s.app.directory,
        repo=REPO_ROOT,
        image=s.image,
        port=s.closed_port,
    )


def config_for(case: Case, s: Setting) -> Path:
    base = s.app.config(replicas=1)
    if case.raw is None and case.edit is None:
        return base
    path = s.app.directory / f"bad-{case.id}.toml"
    if case.raw is not None:
        path.write_text(case.raw)
    else:
        data = copy.deepcopy(tomllib.loads(base.read_text()))
        assert case.edit is not None
        case.edit(data)
        path.write_text(to_toml(data))
    return path


async def deployment_workflows(client: Client, app: str) -> int:
    return (await client.count_workflows(f"WorkflowType='DeploymentWorkflow' AND DeploymentApp='{app}'")).count


def namespace_exists(name: str) -> bool:
    with kube.connect(kubeconfig=str(KUBECONFIG)) as kc:
        return kube.get_object(kc, api_version="v1", kind="Namespace", name=name) is not None


def assert_one_line(run: Run, expected: str) -> None:
    assert run.code == EXIT_BAD_INPUT, f"exit {run.code}, expected {EXIT_BAD_INPUT}:\n{run.output}"
    assert "Traceback" not in run.output, run.output
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{run.stderr}"
    if expected.startswith("re:"):
        assert re.fullmatch(expected[3:], lines[0]), f"{lines[0]!r} does not match {expected[3:]!r}"
    else:
        assert lines[0] == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_one_line_and_changes_nothing(case: Case, setting: Setting, stack_client: Client) -> None:
    app = setting.app
    config = config_for(case, setting)
    env_overrides = {fill(k, setting, config): fill(v, setting, config) for k, v in case.env.items()}
    args = tuple(fill(a, setting, config) for a in case.args)
    path = Path(env_overrides.pop("PIPELINE_CONFIG", str(config)))
    run = await _cli(app, args, path, env_overrides)
    assert_one_line(run, fill(case.line, setting, path))
    assert not namespace_exists(app.namespace), f"namespace {app.namespace} was created"
    assert await deployment_workflows(stack_client, app.name) == 0, "a DeploymentWorkflow was started"


async def _cli(app: E2eApp, args: tuple[str, ...], config: Path, extra_env: dict[str, str]) -> Run:
    import asyncio
    import time

    env = app.env(config)
    env.update(extra_env)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        PIPELINE,
        *args,
        env=env,
        cwd=app.directory,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return await app.finish(process, args, started=started, timeout=60)


@pytest.mark.parametrize("kind", ["missing", "garbage", "unknown-context"])
async def test_a_real_deploy_with_a_bad_kubeconfig_fails_in_one_line_and_applies_nothing(
    kind: str, setting: Setting, stack_client: Client
) -> None:
    """The CLI reads the kubeconfig before it starts anything: one line, exit 2, no workflow, nothing applied."""
    app = setting.app
    edit = {
        "missing": section("kubernetes", kubeconfig="no-kubeconfig"),
        "garbage": section("kubernetes", kubeconfig="garbage-kubeconfig"),
        "unknown-context": section("kubernetes", context="no-such-context"),
    }[kind]
    config = config_for(Case(f"real-{kind}", "", edit=edit), setting)
    before = await deployment_workflows(stack_client, app.name)
    run = await _cli(app, ("deploy", "--image", setting.image), config, {})
    assert "Traceback" not in run.output, run.output
    lines = run.stderr.splitlines()
    assert run.code == 2, f"exit {run.code}:\n{run.output}"
    assert len(lines) == 1 and lines[0].startswith("kubeconfig ") and KUBECONFIG_HINT in lines[0], run.output
    assert not namespace_exists(app.namespace), f"namespace {app.namespace} was created"
    assert await deployment_workflows(stack_client, app.name) == before, "a DeploymentWorkflow was started"
