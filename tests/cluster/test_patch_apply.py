"""The patch and field-ownership algorithms on plain objects (no server needed: they are pure functions)."""

from __future__ import annotations

import pytest

from bootstrap.cluster import apply as ssa, patch, schema
from bootstrap.cluster.errors import ApiError
from bootstrap.cluster.resources import DEPLOYMENTS, PODS

pytestmark = pytest.mark.unit

POD = schema.root(PODS)
DEPLOY = schema.root(DEPLOYMENTS)


def pod(*containers: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": list(containers)}}


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    assert patch.merge_patch(target, {"a": "z", "c": {"f": None}, "l": [3]}) == {"a": "z", "c": {"d": "e"}, "l": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # inputs are never mutated


def test_json_patch_rfc6902() -> None:
    doc = {"a": {"b": [1, 2]}, "x": 1}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "remove", "path": "/x"},
        {"op": "copy", "from": "/a/b", "path": "/c"},
        {"op": "move", "from": "/c", "path": "/d"},
        {"op": "replace", "path": "/a/b/1", "value": 10},
        {"op": "test", "path": "/d/3", "value": 3},
        {"op": "add", "path": "/e~1f", "value": True},
    ]
    assert patch.json_patch(doc, ops) == {"a": {"b": [0, 10, 2, 3]}, "d": [0, 1, 2, 3], "e/f": True}
    with pytest.raises(ApiError) as failed:
        patch.json_patch(doc, [{"op": "test", "path": "/x", "value": 2}])
    assert failed.value.code == 422
    with pytest.raises(ApiError) as missing:
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert missing.value.code == 400


def test_strategic_merge_keyed_lists_and_directives() -> None:
    live = pod(
        {"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "j"},
    )
    patched = patch.strategic_merge_patch(
        live,
        {
            "metadata": {"finalizers": ["f"]},
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 81}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "k"},
                ],
                "tolerations": [{"key": "t"}],
            },
        },
        POD,
    )
    a, c = patched["spec"]["containers"]
    assert a["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert a["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    assert c == {"name": "c", "image": "k"} and patched["metadata"]["finalizers"] == ["f"]
    replaced = patch.strategic_merge_patch(
        live, {"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}, POD
    )
    assert replaced["spec"]["containers"] == [{"name": "z", "image": "z"}]


def test_apply_ownership_removal_and_conflicts() -> None:
    applied = pod({"name": "a", "image": "i1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]})
    first = ssa.apply(None, applied, PODS, POD, manager="m1", force=False)
    fields = first["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:containers"]['k:{"name":"a"}']["f:env"]['k:{"name":"Y"}'] == {".": {}, "f:name": {}, "f:value": {}}
    # m1 stops applying env Y: it is removed
    smaller = pod({"name": "a", "image": "i1", "env": [{"name": "X", "value": "1"}]})
    second = ssa.apply(first, smaller, PODS, POD, manager="m1", force=False)
    assert second["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]
    # m2 setting the same value shares ownership; a different value conflicts
    shared = ssa.apply(second, pod({"name": "a", "image": "i1"}), PODS, POD, manager="m2", force=False)
    assert [e["manager"] for e in shared["metadata"]["managedFields"]] == ["m1", "m2"]
    with pytest.raises(ApiError) as conflict:
        ssa.apply(shared, pod({"name": "a", "image": "i2"}), PODS, POD, manager="m2", force=False)
    assert conflict.value.code == 409
    assert conflict.value.details is not None
    assert conflict.value.details["causes"][0]["field"] == '.spec.containers[name="a"].image'
    forced = ssa.apply(shared, pod({"name": "a", "image": "i2"}), PODS, POD, manager="m2", force=True)
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    assert "f:image" not in owners["m1"]["f:spec"]["f:containers"]['k:{"name":"a"}']
    assert forced["spec"]["containers"][0]["image"] == "i2"


def test_update_tracking_moves_changed_fields() -> None:
    created = ssa.track_update(None, pod({"name": "a", "image": "i"}), POD, manager="creator")
    changed = dict(created, spec={"containers": [{"name": "a", "image": "j"}]})
    updated = ssa.track_update(created, changed, POD, manager="editor")
    owners = {e["manager"]: ssa.from_fields_v1(e["fieldsV1"]) for e in updated["metadata"]["managedFields"]}
    image = ("f:spec", "f:containers", 'k:{"name":"a"}', "f:image")
    assert image in owners["editor"] and image not in owners["creator"]


def test_a_struct_no_longer_applied_is_removed_whole_with_its_defaulted_fields() -> None:
    """An apply that drops a probe removes the probe, not only the fields the manager set: the defaults the
    server added under it (scheme, successThreshold) go too, as Kubernetes does (the struct itself is owned)."""
    probe = {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 1}
    first = ssa.apply(None, pod({"name": "a", "image": "i", "readinessProbe": probe}), PODS, POD, manager="m", force=False)
    fields = first["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"a"}']
    assert fields["f:readinessProbe"]["."] == {} and fields["f:readinessProbe"]["f:httpGet"]["."] == {}
    defaulted = first["spec"]["containers"][0]["readinessProbe"]
    defaulted["httpGet"]["scheme"], defaulted["successThreshold"] = "HTTP", 1  # what defaulting adds, owned by nobody
    second = ssa.apply(first, pod({"name": "a", "image": "i"}), PODS, POD, manager="m", force=False)
    assert "readinessProbe" not in second["spec"]["containers"][0], second["spec"]["containers"][0]
    # another manager's field under the struct keeps it (and that field)
    shared = ssa.apply(first, pod({"name": "a", "readinessProbe": {"timeoutSeconds": 5}}), PODS, POD, manager="o", force=False)
    third = ssa.apply(shared, pod({"name": "a", "image": "i"}), PODS, POD, manager="m", force=False)
    assert third["spec"]["containers"][0]["readinessProbe"].get("timeoutSeconds") == 5
