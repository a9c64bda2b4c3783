"""Build with ACR Tasks (target "aks"): the equivalent of `az acr build`, without the az CLI or a Docker daemon.

In production the pipeline worker runs in a pod with no Docker engine, so the
image is built where Azure builds it:

    (the CLI packed the context and uploaded it: pipeline/source.py; BuildSpec.source.location)
      ─▶ scheduleRun(DockerBuildRequest, sourceLocation) ─▶ heartbeat the run id
      ─▶ poll Runs_Get until terminal, following the run log (ranged blob reads)
      ─▶ Succeeded: the pushed digest from outputImages; otherwise AcrRunFailed with the log tail

Idempotency, in the order a retried activity meets it:

1. The run id is heartbeated as soon as scheduleRun answers; a retry reads it
   from `activity.info().heartbeat_details` and follows *that* run instead of
   scheduling another (a worker killed mid-build costs no second build).
2. Before scheduling, an image already in the registry under the same tag
   with the same `pipeline.source-hash` label is reused. The registry is asked
   directly (`pipeline.registry.find_image`) only when the login server is a
   loopback address (the local imitation pushes to 127.0.0.1:5000, plain
   HTTP). A real ACR login server would need an Entra-to-ACR token exchange on
   its data plane; that check is skipped there, and the cost is a rebuild of
   identical sources (the default tag `src-<hash>` is content-addressed, so
   the result is the same image name).

Several platforms (`BuildSpec.platforms`): the workflow runs `build(..., platform=p)` once per
platform, each its own activity with its own heartbeated run id (so each resumes its own run and
never schedules a second), pushing `<tag>-<os>-<arch>`; `push_index` then PUTs their OCI image
index under the tag through the registry's manifest API (a real ACR with a token exchanged from
the worker's Entra ID token, pipeline/azure/registry_token.py; the imitation's loopback registry
anonymously).

The label: DockerBuildRequest has no `labels`, so the archive's copy of the
Dockerfile (packed by the CLI, `pipeline.source.pack(label=True)`) gets `LABEL pipeline.source-hash=<hash>` as the last instruction
of the target stage (of the last stage when no target is set). The user's
files are not changed.

Secrets: build arguments are sent as non-secret (they come from config.toml,
which holds none). No registry credential is needed here (ACR Tasks pushes
with the registry's own identity); SAS URLs are used, never logged or
heartbeated.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.exceptions import CancelledError

from pipeline.azure import acr, registry_token
from pipeline.azure.errors import AcrRunFailed
from pipeline.builders.local import BuildError, is_build_of, platform_tag, push_platform_index, same_platform, source_and_tag
from pipeline.keepalive import Keepalive
from pipeline.models import AcrRegistryRef, BuildImageInput, BuiltImage, PlatformImage, PushIndexInput
from pipeline.registry import SOURCE_HASH_LABEL, TokenSource, find_image, is_loopback

_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*\S+(?:\s+AS\s+(?P<name>\S+))?\s*$", re.IGNORECASE)
POLL_SECONDS = 1.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Reporter:
    """Where progress goes: the activity's heartbeat and logger in production, anything in tests."""

    heartbeat: Callable[..., None]
    log: Callable[[str], None]
    cancelled: Callable[[], bool]
    resumed: Mapping[str, Any] | None = None  # the last heartbeat of a previous attempt, if any


def build_image(request: BuildImageInput, *, platform: str = "") -> BuiltImage:
    """The build activity for target "aks" (called by `pipeline.activities.build_image`, and per platform by
    `build_platform_image`: `platform` set = that platform's image under its own tag, `platform_tag`)."""
    details = activity.info().heartbeat_details
    last = details[-1] if details else None
    with Keepalive(activity.heartbeat, initial=(last,) if last is not None else ()) as beat:
        reporter = Reporter(
            heartbeat=beat,
            log=lambda line: activity.logger.info("acr: %s", line),
            cancelled=activity.is_cancelled,
            resumed=last if isinstance(last, Mapping) else None,
        )
        return build(request, reporter, platform=platform)


def build(request: BuildImageInput, reporter: Reporter, *, platform: str = "") -> BuiltImage:
    spec = request.build
    if spec.acr is None:
        raise BuildError(f'build of {request.app} for target "aks" has no ACR registry; set [acr] in config.toml')
    digest_of_source, tag = source_and_tag(spec, request.tag)
    if platform:
        tag = platform_tag(tag, platform)
    run_platform = platform or (spec.platforms[0] if spec.platforms else spec.platform)
    name = repository_name(spec.repository, spec.acr.login_server)
    registry = registry_of(spec.acr)
    with acr.session(registry) as session:
        run_id = str((reporter.resumed or {}).get("run_id") or "")
        offset = int((reporter.resumed or {}).get("log_offset") or 0)
        if run_id:
            reporter.log(f"resuming ACR run {run_id} of a previous attempt instead of scheduling another")
        else:
            existing = existing_image(spec.acr.login_server, name, tag)
            if (
                existing is not None
                and not existing.is_index
                and is_build_of(existing, digest_of_source)
                and (not platform or not existing.platform or same_platform(existing.platform, platform))
            ):
                reporter.log(f"{spec.repository}:{tag} already pushed as {existing.digest}; not rebuilding")
                return _built(spec.repository, tag, existing.digest, platform, reused=True)
            assert spec.source is not None  # source_and_tag checked it
            if not spec.source.location:
                raise BuildError(
                    f"the build source of {request.app} ({spec.source.digest or spec.source.source_hash}) was not uploaded "
                    f"and {spec.repository}:{tag} is not built from it; deploy again"
                )
            run = session.schedule_docker_build(
                source=spec.source.location,
                image_names=[f"{name}:{tag}"],
                dockerfile=spec.dockerfile,
                target=spec.target,
                platform=run_platform,
                build_args=spec.build_args,
                timeout_seconds=spec.timeout_seconds,
            )
            run_id = run.run_id
            reporter.heartbeat({"run_id": run_id, "status": run.status, "log_offset": 0})
            reporter.log(
                f"scheduled ACR run {run_id} in registry {registry.name} for {name}:{tag} ({spec.source.size} bytes of context)"
            )
        state, tail = _follow(session, run_id, offset, reporter)
    if state.status != "Succeeded":
        shown = "\n".join(tail[-LOG_TAIL_LINES:])
        why = f": {state.error_message}" if state.error_message else ""
        raise AcrRunFailed(
            f"ACR run {run_id} in registry {registry.name} ended {state.status}{why}; {AcrRunFailed.hint}. "
            f"Last lines of the run log:\n{shown}",
            code=state.status,
        )
    pushed = next((i for i in state.output_images if i.tag == tag and i.digest), None) or next(
        (i for i in state.output_images if i.digest), None
    )
    if pushed is None:
        raise AcrRunFailed(f"ACR run {run_id} in registry {registry.name} succeeded but reported no pushed image digest")
    repository = f"{pushed.registry}/{pushed.repository}" if pushed.registry and pushed.repository else spec.repository
    return _built(repository, pushed.tag or tag, pushed.digest, platform)


def _built(repository: str, tag: str, digest: str, platform: str, *, reused: bool = False) -> BuiltImage:
    images = (PlatformImage(platform, digest, tag),) if platform else ()
    return BuiltImage(repository, tag, digest, reused=reused, platforms=images)


def push_index(request: PushIndexInput) -> BuiltImage:
    """The index activity of a multi-platform build: every platform's image, under the build's tag, by the index's digest.

    Spoken to through the registry's own manifest API: a real ACR login server with a token
    exchanged from the worker's Entra ID token (pipeline/azure/registry_token.py), the local
    imitation's loopback registry anonymously.
    """
    spec = request.build.build
    if spec.acr is None:
        raise BuildError(f'build of {request.build.app} for target "aks" has no ACR registry; set [acr] in config.toml')
    _, tag = source_and_tag(spec, request.build.tag)
    digest = push_platform_index(spec.repository, tag, request.images, auth=token_source(spec.acr.login_server))
    activity.logger.info(
        "pushed the image index %s:%s as %s (%s)",
        spec.repository,
        tag,
        digest,
        ", ".join(f"{i.platform} {i.digest}" for i in request.images),
    )
    return BuiltImage(spec.repository, tag, digest, platforms=tuple(request.images))


def token_source(login_server: str) -> TokenSource | None:
    """How to answer the registry's Bearer challenge: none for a loopback registry (the local imitation)."""
    return None if is_loopback(login_server) else registry_token.token_source(login_server)


def _follow(session: acr.Session, run_id: str, offset: int, reporter: Reporter) -> tuple[acr.RunState, list[str]]:
    """Poll the run until it is terminal, logging and heartbeating each new log line; (final state, log tail)."""
    link = ""
    tail: list[str] = []
    pending = b""
    while True:
        if reporter.cancelled():
            session.cancel_run(run_id)
            reporter.log(f"ACR run {run_id} cancelled with the activity")
            raise CancelledError(f"ACR run {run_id} cancelled")
        state = session.get_run(run_id)
        if not link:
            link = session.log_link(run_id)
        chunk = session.read_log(link, offset)
        if chunk is None:  # the SAS link expired: ask for a new one next round
            link = ""
            chunk = b""
        offset += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                del tail[:-LOG_TAIL_LINES]
                reporter.log(line)
        reporter.heartbeat(
            {
                "run_id": run_id,
                "status": state.status,
                "log_offset": offset - len(pending),
                "line": tail[-1][:200] if tail else "",
            }
        )
        if state.terminal:
            # The log is complete once the run is terminal: drain what is left, then stop.
            rest = session.read_log(link, offset) if link else b""
            for raw in (pending + (rest or b"")).split(b"\n"):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    tail.append(line)
                    reporter.log(line)
            return state, tail[-LOG_TAIL_LINES:]
        time.sleep(POLL_SECONDS)


def labelled_dockerfile(text: str, *, target: str, label_value: str) -> str:
    """`text` with the source-hash LABEL as the last instruction of the `target` stage (of the last stage if "").

    Inside the stage, not as a new stage after the file's end: the classic
    builder builds every stage up to the target, so a stage appended last
    would drag in unrelated later stages.
    """
    label = f'# added by the pipeline (ACR Tasks has no --label)\nLABEL {SOURCE_HASH_LABEL}="{label_value}"\n'
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    insert_at = len(lines)
    if target:
        own = next(
            (i for i, line in enumerate(lines) if (m := _FROM.match(line)) and (m.group("name") or "").lower() == target.lower()),
            None,
        )
        if own is None:
            raise BuildError(f"the Dockerfile has no stage named {target!r} (apps.<name>.build_target)")
        insert_at = next((i for i in range(own + 1, len(lines)) if _FROM.match(lines[i])), len(lines))
        while insert_at > own + 1 and not lines[insert_at - 1].strip():
            insert_at -= 1  # keep the label next to the stage's instructions, before the blank lines
    return "".join(lines[:insert_at] + [label] + lines[insert_at:])


def repository_name(repository: str, login_server: str) -> str:
    """The repository path inside the registry: "sample-worker" of "myacr.azurecr.io/sample-worker"."""
    prefix = login_server.rstrip("/") + "/"
    return repository[len(prefix) :] if repository.startswith(prefix) else repository.split("/", 1)[-1]


def registry_of(ref: AcrRegistryRef) -> acr.Registry:
    return acr.Registry(
        subscription_id=ref.subscription_id, resource_group=ref.resource_group, name=ref.name, endpoint=ref.endpoint
    )


def existing_image(login_server: str, name: str, tag: str) -> Any:
    """The image already under `tag`, when the registry can be asked directly (loopback only; see the module doc)."""
    if not is_loopback(login_server):
        return None
    return find_image(f"{login_server}/{name}", tag)
