"""The revision history and the drift line (pipeline/revisions.py): pure, no cluster."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from pipeline.models import Manifests, Revision
from pipeline.revisions import PREVIOUS, RevisionLog, drift, parse, pick, with_recorded

pytestmark = pytest.mark.unit


def revision(n: int, *, command: list[str] | None = None) -> Revision:
    image = f"127.0.0.1:5000/app@sha256:{str(n) * 64}"
    container: dict[str, Any] = {"name": "worker", "image": image}
    if command:
        container["command"] = command
    deployment = {"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"template": {"spec": {"containers": [container]}}}}
    return Revision(image=image, build_id=f"sha256:{str(n) * 64}", manifests=Manifests(objects=[deployment]))


def live(rev: Revision, **changes: Any) -> dict[str, Any]:
    container = {**rev.manifests.objects[0]["spec"]["template"]["spec"]["containers"][0], "terminationMessagePath": "/dev/x"}
    container.update(changes)
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


R1, R2, R3 = revision(1), revision(2), revision(3)


def test_recording_puts_the_revision_first_and_moves_an_older_entry_of_it() -> None:
    assert with_recorded([], R1) == [R1]
    assert with_recorded([R1], R2) == [R2, R1]
    assert with_recorded([R2, R1], R1) == [R1, R2], "an undo moves the restored revision to the front, like kubectl"
    assert with_recorded([R1, R2], R1) == [R1, R2], "recording the current one again changes nothing"
    assert len(with_recorded([revision(n % 10) for n in range(10)], R3, limit=4)) == 4


def test_pick_finds_the_previous_one_or_an_image_or_a_digest_prefix() -> None:
    log = RevisionLog(current=R3, history=[R3, R2, R1])
    assert pick(log, PREVIOUS) == R2
    assert pick(log, R1.image) == R1 and pick(log, R1.build_id) == R1 and pick(log, "1" * 12) == R1
    assert pick(log, "1" * 6) is None, "a short prefix could name several"
    assert pick(log, "127.0.0.1:5000/app@sha256:" + "9" * 64) is None
    assert pick(RevisionLog(current=R1, history=[R1]), PREVIOUS) is None


def test_a_configmap_from_before_the_history_has_a_history_of_one() -> None:
    assert parse(None) == RevisionLog(current=None, history=[])
    log = parse({"revision.json": json.dumps(asdict(R2))})
    assert log.current == R2 and log.history == [R2]
    both = parse({"revision.json": json.dumps(asdict(R2)), "history.json": json.dumps([asdict(R2), asdict(R1)])})
    assert both.history == [R2, R1]


def test_no_drift_when_the_cluster_runs_the_recorded_pod_template() -> None:
    assert drift("app", live(R2), RevisionLog(current=R2, history=[R2])) == ""
    assert drift("app", None, RevisionLog(current=None, history=[])) == ""


def test_drift_names_both_images_and_what_to_do() -> None:
    line = drift("app", live(R2, image=R3.image), RevisionLog(current=R2, history=[R2]))
    assert line.startswith(f"drift: app runs {R3.image}, but its last verified revision is {R2.image}"), line
    assert f"pipeline rollback app --to {R2.image}" in line and f"pipeline deploy --app app --image {R3.image}" in line
    assert "\n" not in line


def test_drift_of_the_same_image_with_another_command_names_the_field() -> None:
    line = drift("app", live(R2, command=["sleep", "3600"]), RevisionLog(current=R2, history=[R2]))
    assert "with another pod template (containers[worker].command)" in line, line


def test_drift_when_nothing_was_verified_or_nothing_runs() -> None:
    assert "was never verified" in drift("app", live(R1), RevisionLog(current=None, history=[]))
    assert "has no Deployment in the cluster" in drift("app", None, RevisionLog(current=R1, history=[R1]))
