"""The versioned strategy's pure parts: its config keys, the versioned manifests, and the sunset plan."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.models import RolloutSpec, RoutingView, VersionRow, VersionsReport
from pipeline.render import VERSION_LABEL, VERSIONING_ENV, render_manifests, version_name
from pipeline.sunset import plan
from tests.helpers.config import SHIPPED_TEXT, edit
from tests.helpers.render import sample_render_input, with_app

pytestmark = pytest.mark.unit

APP = "apps.sample-worker"


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text)
    (tmp_path / "Dockerfile").write_text("FROM scratch AS sample-worker\nFROM scratch AS pipeline-worker\n")
    return load_config(path, env={})


def with_rollout(text: str, **keys: str) -> str:
    table = "\n".join(f"{k} = {v}" for k, v in keys.items())
    return text + f"\n[{APP}.rollout]\n{table}\n"


# ----- config -----


def test_versioned_keys_load_and_default_to_rolling(tmp_path: Path) -> None:
    config = load(tmp_path, SHIPPED_TEXT.replace('build_context = "."', f'build_context = "{tmp_path}"'))
    assert config.app("sample-worker").rollout.strategy == "rolling"  # type: ignore[attr-defined]
    text = with_rollout(
        SHIPPED_TEXT,
        strategy='"versioned"',
        steps="[10, 50]",
        step_pause_seconds="5",
        scaledown_delay_seconds="0",
        delete_delay_seconds="30",
        drained_replicas="1",
    )
    rollout = load(tmp_path, text).app("sample-worker").rollout  # type: ignore[attr-defined]
    assert (rollout.strategy, rollout.steps, rollout.step_pause_seconds) == ("versioned", (10, 50), 5)
    assert (rollout.scaledown_delay_seconds, rollout.delete_delay_seconds, rollout.drained_replicas) == (0, 30, 1)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("strategy", '"canary"', 'one of "rolling", "versioned"'),
        ("steps", "[50, 10]", "an increasing array of integers from 1 to 99"),
        ("steps", "[10, 100]", "an increasing array of integers from 1 to 99"),
        ("steps", '["10"]', "an increasing array of integers from 1 to 99"),
        ("drained_replicas", "-1", "an integer"),
        ("step_pause_seconds", "true", "an integer"),
    ],
)
def test_bad_versioned_keys_are_one_line_each(tmp_path: Path, key: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, with_rollout(SHIPPED_TEXT, **{key: value}))
    message = str(raised.value)
    assert f"[apps.sample-worker.rollout].{key}: must be {said}" in message, message
    assert "\n" not in message


def test_the_pipeline_itself_cannot_be_versioned(tmp_path: Path) -> None:
    text = edit(SHIPPED_TEXT, "apps.pipeline-worker.rollout", "strategy", '"versioned"')
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    assert '[apps.pipeline-worker.rollout].strategy: must be "rolling" for role "pipeline"' in str(raised.value)


# ----- manifests -----


def versioned_spec() -> object:
    spec = sample_render_input()
    return with_app(spec, rollout=replace(spec.app.rollout, strategy="versioned", steps=(10, 50)))


def test_a_version_gets_its_own_deployment_and_configmap() -> None:
    spec = versioned_spec()
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_manifests(spec).objects}  # type: ignore[arg-type]
    name = version_name(spec.app, spec.build_id)  # type: ignore[attr-defined]
    assert name == f"sample-worker-{spec.build_id.split(':')[1][:10]}"  # type: ignore[attr-defined]
    deployment = objects[("Deployment", name)]
    config_map = objects[("ConfigMap", f"{name}-temporal")]
    assert ("Deployment", "sample-worker") not in objects and ("ConfigMap", "sample-worker-temporal") not in objects
    short = name.rsplit("-", 1)[1]
    assert deployment["spec"]["selector"]["matchLabels"][VERSION_LABEL] == short
    assert deployment["spec"]["template"]["metadata"]["labels"][VERSION_LABEL] == short
    assert deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": f"{name}-temporal"}}]
    assert config_map["data"][VERSIONING_ENV] == "true"
    assert config_map["data"]["TEMPORAL_DEPLOYMENT_NAME"] == f"{spec.app.namespace}/sample-worker"  # type: ignore[attr-defined]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TEMPORAL_WORKER_BUILD_ID"] == spec.build_id  # type: ignore[attr-defined]


def test_two_builds_never_share_an_object_but_the_namespace_and_service_account() -> None:
    spec = versioned_spec()
    other = replace(spec, image=spec.image[:-8] + "deadbeef", build_id=spec.build_id[:-8] + "deadbeef")  # type: ignore[attr-defined]
    other = replace(other, build_id="sha256:" + "cd" * 32, image=spec.image.split("@")[0] + "@sha256:" + "cd" * 32)  # type: ignore[attr-defined]
    a = {(o["kind"], o["metadata"]["name"]) for o in render_manifests(spec).objects}  # type: ignore[arg-type]
    b = {(o["kind"], o["metadata"]["name"]) for o in render_manifests(other).objects}
    assert {kind for kind, _ in a & b} == {"Namespace", "ServiceAccount"}


def test_rolling_manifests_are_unchanged_by_the_strategy_keys() -> None:
    spec = sample_render_input()
    assert all(VERSIONING_ENV not in (o.get("data") or {}) for o in render_manifests(spec).objects)


# ----- the sunset plan -----

ROLLOUT = RolloutSpec(
    120, 1, 0, 60, True, strategy="versioned", scaledown_delay_seconds=60, delete_delay_seconds=600, drained_replicas=0
)
NOW = 10_000.0


def report(*rows: VersionRow, current: str = "b3", ramping: str = "") -> VersionsReport:
    return VersionsReport(
        deployment_name="ns/app",
        routing=RoutingView(current=current, ramping=ramping),
        manager="",
        versions=list(rows),
        surveyed_at=NOW,
    )


def row(
    build: str, status: str, *, since: float = 0.0, pinned: int = 0, replicas: int = 2, deployment: str = "x", **kw: object
) -> VersionRow:
    return VersionRow(
        build_id=build,
        deployment=deployment if deployment != "x" else f"app-{build}",
        status=status,
        drainage_since=since,
        created_at=kw.pop("created", 1.0),  # type: ignore[arg-type]
        open_pinned=pinned,
        replicas=replicas,
        **kw,  # type: ignore[arg-type]
    )


def test_current_and_ramping_versions_are_never_touched() -> None:
    actions, wait = plan(report(row("b3", "current"), row("b4", "ramping"), ramping="b4"), ROLLOUT, now=NOW)
    assert actions == [] and wait is None


def test_a_drained_version_is_scaled_down_after_the_delay_then_deleted() -> None:
    young = report(row("b2", "drained", since=NOW - 30), row("b3", "current"))
    actions, wait = plan(young, ROLLOUT, now=NOW)
    assert actions == [] and wait == pytest.approx(30)
    actions, wait = plan(report(row("b2", "drained", since=NOW - 61), row("b3", "current")), ROLLOUT, now=NOW)
    assert [(a.action, a.build_id, a.replicas) for a in actions] == [("scale", "b2", 0)]
    assert wait == 300  # at most MAX_WAIT between surveys (539 s to the delete)
    actions, _ = plan(report(row("b2", "drained", since=NOW - 601, replicas=0), row("b3", "current")), ROLLOUT, now=NOW)
    assert [(a.action, a.build_id) for a in actions] == [("delete", "b2")]


def test_a_version_with_open_pinned_workflows_is_never_scaled_down() -> None:
    rows = (row("b1", "drained", since=NOW - 10_000, pinned=1), row("b2", "draining", since=NOW - 10_000), row("b3", "current"))
    actions, wait = plan(report(*rows), ROLLOUT, now=NOW)
    assert actions == [] and wait is not None


def test_drained_replicas_are_kept() -> None:
    rollout = replace(ROLLOUT, drained_replicas=1)
    actions, _ = plan(report(row("b2", "drained", since=NOW - 61, replicas=1), row("b3", "current")), rollout, now=NOW)
    assert actions == []


def test_a_version_that_never_became_current_counts_from_its_creation() -> None:
    actions, _ = plan(report(row("b4", "inactive", created=NOW - 61), row("b3", "current")), ROLLOUT, now=NOW)
    assert [(a.action, a.build_id) for a in actions] == [("scale", "b4")]
    actions, _ = plan(report(row("b4", "inactive", created=NOW - 61, deploying=True), row("b3", "current")), ROLLOUT, now=NOW)
    assert actions == []  # the running deployment is rolling it out


def test_versions_beyond_the_retained_count_go_oldest_first() -> None:
    rollout = replace(ROLLOUT, retained_versions=3)
    rows = [row(f"b{i}", "drained", since=NOW - 100 + i, replicas=0) for i in range(4)] + [row("b9", "current")]
    actions, _ = plan(report(*rows, current="b9"), rollout, now=NOW)
    assert sorted(a.build_id for a in actions if a.action == "delete") == ["b0", "b1"]


def test_a_version_whose_deployment_is_gone_is_deleted_from_temporal() -> None:
    actions, _ = plan(report(row("b2", "drained", since=NOW - 5, deployment=""), row("b3", "current")), ROLLOUT, now=NOW)
    assert [(a.action, a.build_id, a.deployment) for a in actions] == [("delete", "b2", "")]


def test_nothing_is_retired_while_a_deployment_runs_or_routing_propagates() -> None:
    rollout = replace(ROLLOUT, retained_versions=2)
    rows = [row(f"b{i}", "drained", since=NOW - 10_000, replicas=0) for i in range(3)] + [row("b9", "current")]
    assert plan(report(*rows, row("b10", "inactive", deploying=True), current="b9"), rollout, now=NOW)[0] == []
    propagating = replace(report(*rows, current="b9"), routing_completed=False)
    actions, wait = plan(propagating, rollout, now=NOW)
    assert actions == [] and wait is not None
    assert plan(report(*rows, current="b9"), rollout, now=NOW)[0]  # once it is over, the sunset goes on
