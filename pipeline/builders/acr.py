"""Build with ACR Tasks (target "aks"): the equivalent of `az acr build`, without the az CLI or a Docker daemon.

In production the pipeline worker runs in a pod with no Docker engine, so the
image is built where Azure builds it:

    (the CLI packed the context and uploaded it: pipeline/source.py; BuildSpec.source.location)
      ─▶ scheduleRun(DockerBuildRequest, sourceLocation) ─▶ heartbeat the run id
      ─▶ follow the run log (Get Blob Properties + ranged blob reads, every second: storage, not ARM)
         and poll Runs_Get with back-off (2 s, doubling to 30 s; at once when the log says it is complete)
      ─▶ read the log until its blob metadata says `Complete`, as `az acr` does (bounded wait)
      ─▶ Succeeded: the pushed digest from outputImages; otherwise AcrRunFailed with the log tail

ARM throttles per principal (token buckets of 250 reads, refilled at 25 a second, in Azure's
public cloud; bootstrap/azure_arm/throttle.py). A run polled every second costs 3,600 reads an
hour; with the back-off a one-minute build costs about 7 (2, 4, 8, 16, 30 s ... plus the read the
Complete mark triggers) and an hour-long one about 125. Progress between polls comes from the log
blob. azure-core retries a 429 itself, waiting what `Retry-After` says (pipeline/azure/clients.py);
a 429 that outlasts those retries reaches the builder as AzureThrottled, and the builder waits its
`Retry-After` (else the current back-off) and polls again instead of failing the build.

The log is complete only when its blob's metadata carries `Complete` (the run's final status),
which ACR sets after the run's status turned terminal: the builder keeps reading until then (at
most `COMPLETE_WAIT_SECONDS`), so a failed build's error always holds the failing step's last
lines. Each new line goes to the worker log and into the heartbeat details (`line`), which
`pipeline deploy --follow` prints.

Base images: a build argument naming a Docker Hub-style image that the registry holds a copy of
(`pipeline bootstrap --azure` puts host-only base images there, pipeline/azure/base_image.py) is
sent as that copy, since Azure's agents cannot see this machine's Docker.

Subscriptions where ACR Tasks are not allowed (scheduleRun answers TasksOperationsNotAllowed):
`AcrTasksNotAllowed`, one line saying what it means and what to do, not retried.

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
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import CancelledError

from pipeline.azure import acr, base_image, registry_token
from pipeline.azure.errors import AcrRunFailed, AzureThrottled
from pipeline.builders.local import BuildError, is_build_of, platform_tag, push_platform_index, same_platform, source_and_tag
from pipeline.keepalive import Keepalive
from pipeline.models import AcrRegistryRef, BuildImageInput, BuiltImage, PlatformImage, PushIndexInput
from pipeline.registry import SOURCE_HASH_LABEL, TokenSource, find_image, is_loopback

_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*\S+(?:\s+AS\s+(?P<name>\S+))?\s*$", re.IGNORECASE)
T = TypeVar("T")
POLL_FIRST_SECONDS = 2.0  # ARM (Runs_Get): the first poll after scheduling, then doubling ...
POLL_MAX_SECONDS = 30.0  # ... up to this
LOG_SECONDS = 1.0  # the log blob (not ARM): how often it is read while it grows ...
LOG_MAX_SECONDS = 4.0  # ... backing off to this while nothing new comes (as `az acr`, which goes to 15 s)
COMPLETE_WAIT_SECONDS = 60.0  # after the run is terminal: the longest wait for the log's Complete mark
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
            location = spec.source.location
            build_args = base_image.registry_copies(
                spec.build_args, spec.acr.login_server, auth=token_source(spec.acr.login_server), log=reporter.log
            )
            mode = spec.acr.role_assignment_mode
            caller = _unthrottled(reporter, lambda: session.caller_identity_for_runs(mode))
            run = _unthrottled(
                reporter,
                lambda: session.schedule_docker_build(
                    source=location,
                    image_names=[f"{name}:{tag}"],
                    dockerfile=spec.dockerfile,
                    target=spec.target,
                    platform=run_platform,
                    build_args=build_args,
                    timeout_seconds=spec.timeout_seconds,
                    source_registry_identity=caller,
                ),
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


def _unthrottled(reporter: Reporter, call: Callable[[], T]) -> T:
    """`call()`, waiting out ARM's throttling (acr.unthrottled) with the builder's poll back-off, said in the log."""
    return acr.unthrottled(call, say=reporter.log, first_wait=POLL_FIRST_SECONDS, max_wait=POLL_MAX_SECONDS)


class _Log:
    """The run log as `az acr` reads it: properties (length, Complete mark), then the new bytes; lines to the reporter."""

    def __init__(self, session: acr.Session, run_id: str, offset: int, reporter: Reporter) -> None:
        self.session, self.run_id, self.offset, self.reporter = session, run_id, offset, reporter
        self.link = ""
        self.pending = b""
        self.tail: list[str] = []
        self.complete = ""  # the blob's Complete metadata (the run's final status) once it is there

    def read(self) -> bool:
        """Read what is new; whether there was anything. Sets `complete` once the mark is there (and all read)."""
        if not self.link:
            self.link = _unthrottled(self.reporter, lambda: self.session.log_link(self.run_id))  # Runs_GetLogSasUrl
        props = self.session.log_properties(self.link)
        if props is None:  # the SAS link expired: ask for a new one next round
            self.link = ""
            return False
        new = False
        while self.offset < props.length:
            chunk = self.session.read_log(self.link, self.offset)
            if chunk is None:
                self.link = ""
                return new
            if not chunk:
                break
            self.offset += len(chunk)
            self._lines(chunk)
            new = True
        if props.complete and self.offset >= props.length:  # the mark came with this length: nothing more follows
            self._lines(b"\n")
            self.complete = props.complete
        return new

    def _lines(self, chunk: bytes) -> None:
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)
                del self.tail[:-LOG_TAIL_LINES]
                self.reporter.log(line)

    @property
    def acknowledged(self) -> int:
        """The offset a resumed attempt starts reading from (the start of the unfinished line)."""
        return self.offset - len(self.pending)


def _follow(session: acr.Session, run_id: str, offset: int, reporter: Reporter) -> tuple[acr.RunState, list[str]]:
    """Follow the run until it is terminal and its log complete; (final state, log tail)."""
    log = _Log(session, run_id, offset, reporter)
    interval = POLL_FIRST_SECONDS
    next_poll = time.monotonic() + interval
    asked_after_mark = False
    state: acr.RunState | None = None
    log_wait = LOG_SECONDS
    terminal_at: float | None = None
    while True:
        if reporter.cancelled():
            session.cancel_run(run_id)
            reporter.log(f"ACR run {run_id} cancelled with the activity")
            raise CancelledError(f"ACR run {run_id} cancelled")
        new = log.read()
        log_wait = LOG_SECONDS if new else min(log_wait * 2, LOG_MAX_SECONDS)
        now = time.monotonic()
        if (state is None or not state.terminal) and (now >= next_poll or (log.complete and not asked_after_mark)):
            asked_after_mark = bool(log.complete)
            try:
                state = session.get_run(run_id)  # the only ARM read of the loop
            except AzureThrottled as exc:
                wait = acr.retry_after(exc) or interval
                reporter.log(f"ARM throttled the poll of ACR run {run_id}; polling again in {wait:.0f}s")
                next_poll = now + wait
            else:
                interval = min(interval * 2, POLL_MAX_SECONDS)
                next_poll = now + interval
                if state.terminal:
                    terminal_at = now
        reporter.heartbeat(
            {
                "run_id": run_id,
                "status": state.status if state else "Queued",
                "log_offset": log.acknowledged,
                "line": log.tail[-1][:200] if log.tail else "",
            }
        )
        if state is not None and state.terminal and terminal_at is not None:
            if log.complete:
                return state, log.tail[-LOG_TAIL_LINES:]
            if now - terminal_at > COMPLETE_WAIT_SECONDS:
                log._lines(b"\n")
                reporter.log(
                    f"the log of ACR run {run_id} was not marked complete {COMPLETE_WAIT_SECONDS:.0f}s after the run "
                    "ended; its last lines may be missing"
                )
                return state, log.tail[-LOG_TAIL_LINES:]
            log_wait = LOG_SECONDS
        time.sleep(log_wait)


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
