"""The verified revisions of an app, kept next to it in the cluster, and what the cluster runs instead.

One ConfigMap per app, `<app>-pipeline-revision`, in the app's namespace:

    revision.json   the last verified revision (image, build id, the exact manifests applied)
    history.json    the last HISTORY_LIMIT verified revisions, newest first; the first is revision.json

Recording a revision that is already in the history moves it to the front (as
`kubectl rollout undo` renumbers the revision it restores), so "the revision
before the current one" is always `history[1]`, and two undos come back.

`drift()` compares what the Deployment's pod template runs with the last
verified revision: after a terminated deployment, a hand-made `kubectl set
image` or a Reset, the two differ and the CLI says so in one line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import kube
from pipeline.models import Manifests, PlatformImage, Revision
from pipeline.render import VERSION_LABEL

CONFIGMAP_SUFFIX = "-pipeline-revision"
HISTORY_LIMIT = 10
PREVIOUS = "previous"  # `pipeline rollback APP`: the verified revision before the current one


@dataclass(frozen=True)
class RevisionLog:
    """The app's last verified revision and the ones before it, newest first."""

    current: Revision | None
    history: list[Revision]


def configmap_name(app: str) -> str:
    return app + CONFIGMAP_SUFFIX


def from_json(raw: Mapping[str, Any]) -> Revision:
    return Revision(
        image=str(raw["image"]),
        build_id=str(raw.get("build_id", "")),
        manifests=Manifests(objects=list(raw["manifests"]["objects"])),
        deployed_at=str(raw.get("deployed_at", "")),
        workflow_id=str(raw.get("workflow_id", "")),
        # Records from before multi-platform builds have none: their image is one platform's.
        platforms=tuple(
            PlatformImage(str(p.get("platform", "")), str(p.get("digest", "")), str(p.get("tag", "")))
            for p in raw.get("platforms") or ()
            if isinstance(p, Mapping)
        ),
    )


def parse(data: Mapping[str, str] | None) -> RevisionLog:
    """The log from the ConfigMap's data; a ConfigMap from before history.json has a history of one."""
    if not data or "revision.json" not in data:
        return RevisionLog(current=None, history=[])
    current = from_json(json.loads(data["revision.json"]))
    history = [from_json(r) for r in json.loads(data.get("history.json") or "[]")]
    if not history or history[0].image != current.image:
        history = with_recorded(history, current)
    return RevisionLog(current=current, history=history)


def with_recorded(history: Sequence[Revision], revision: Revision, *, limit: int = HISTORY_LIMIT) -> list[Revision]:
    """The history after `revision` was verified: it goes first, any older entry of the same image goes."""
    return [revision, *(r for r in history if r.image != revision.image)][:limit]


def pick(log: RevisionLog, wanted: str) -> Revision | None:
    """The revision `pipeline rollback` restores: PREVIOUS, or the history's entry for an image (or digest, or its prefix)."""
    if wanted == PREVIOUS:
        return log.history[1] if len(log.history) > 1 else None
    for revision in log.history:
        if wanted in (revision.image, revision.build_id) or (
            len(wanted) >= 12 and (revision.build_id.replace("sha256:", "").startswith(wanted.replace("sha256:", "")))
        ):
            return revision
    return None


def read(kc: kube.KubeClient, *, app: str, namespace: str) -> RevisionLog:
    return parse(kube.get_configmap(kc, namespace=namespace, name=configmap_name(app)))


def record(kc: kube.KubeClient, *, app: str, namespace: str, revision: Revision, field_manager: str) -> RevisionLog:
    """Make `revision` the last verified one (idempotent: recording it twice changes nothing more)."""
    history = with_recorded(read(kc, app=app, namespace=namespace).history, revision)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(app),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": field_manager},
        },
        "data": {
            "revision.json": json.dumps(asdict(revision), sort_keys=True),
            "history.json": json.dumps([asdict(r) for r in history], sort_keys=True),
        },
    }
    kube.server_side_apply(kc, [configmap], field_manager=field_manager, force=True)
    return RevisionLog(current=revision, history=history)


# ----- drift: what runs against what was verified -----

_COMPARED = ("image", "command", "args")  # of each container: what decides which code runs


def running_image(deployment: Mapping[str, Any] | None) -> str:
    """The image of the Deployment's first container, as its pod template says ("" when there is none)."""
    containers = _containers(deployment)
    return str(containers[0].get("image", "")) if containers else ""


def _containers(deployment: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not deployment:
        return []
    return list(deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [])


def _recorded_deployment(app: str, revision: Revision) -> Mapping[str, Any] | None:
    """The revision's Deployment: `<app>`, or a versioned app's `<app>-<short build>` (render.as_version)."""
    return next(
        (
            o
            for o in revision.manifests.objects
            if o.get("kind") == "Deployment"
            and (o.get("metadata", {}).get("name") == app or VERSION_LABEL in (o.get("metadata", {}).get("labels") or {}))
        ),
        None,
    )


def _differences(live: Mapping[str, Any] | None, recorded: Mapping[str, Any] | None) -> list[str]:
    """Which containers' image, command or args differ between the live pod template and the recorded one."""
    want = {str(c.get("name")): c for c in _containers(recorded)}
    have = {str(c.get("name")): c for c in _containers(live)}
    found = [f"container {name} is {'missing' if name not in have else 'extra'}" for name in sorted(set(want) ^ set(have))]
    for name in sorted(set(want) & set(have)):
        found += [
            f"containers[{name}].{key}" for key in _COMPARED if (want[name].get(key) or None) != (have[name].get(key) or None)
        ]
    return found


def drift(app: str, deployment: Mapping[str, Any] | None, log: RevisionLog) -> str:
    """One line when the cluster does not run the last verified revision, naming both and what to do; "" when it does."""
    running = running_image(deployment)
    if log.current is None:
        if deployment is None:
            return ""
        return (
            f"drift: {app} runs {running}, which was never verified (no verified revision is recorded); "
            f"verify it by deploying: pipeline deploy --app {app}"
        )
    recorded = log.current.image
    if deployment is None:
        return (
            f"drift: {app} has no Deployment in the cluster, but its last verified revision is {recorded}; "
            f"restore it: pipeline rollback {app} --to {recorded}"
        )
    differences = _differences(deployment, _recorded_deployment(app, log.current))
    if not differences:
        return ""
    what = f"runs {running}" if running != recorded else f"runs {running} with another pod template ({', '.join(differences)})"
    return (
        f"drift: {app} {what}, but its last verified revision is {recorded}; "
        f"restore the verified one with `pipeline rollback {app} --to {recorded}`"
        + (f" or verify the running one with `pipeline deploy --app {app} --image {running}`" if running != recorded else "")
    )


def check_drift(kc: kube.KubeClient, *, app: str, namespace: str) -> str:
    """drift() against the live cluster (a versioned app: the recorded version's own Deployment)."""
    log = read(kc, app=app, namespace=namespace)
    recorded = _recorded_deployment(app, log.current) if log.current else None
    name = str(recorded.get("metadata", {}).get("name") or app) if recorded else app
    return drift(app, kube.get_deployment(kc, namespace=namespace, name=name), log)
