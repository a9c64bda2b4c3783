"""The work behind Registries_ScheduleRun: a real `docker build` of the uploaded archive, tag, push, and an ACR-like log.

Each run executes in its own thread with its own Docker API client, so
Runs_Get sees it move Queued -> Running -> Succeeded/Failed/Canceled/Timeout
while the log blob grows. Cancel and timeout close that client,
which drops the build's connection and makes the engine abort the build.

The log, as an ACR agent uploads it: lines are buffered and appended to the log
blob every `LOG_FLUSH_SECONDS` while the run goes on; when the run ends its status
turns terminal first, and `COMPLETE_DELAY_SECONDS` later (a `logCompleteDelay`
fault sets another delay) the rest of the log, ending with the `Run ID: ...` line,
is appended and the blob's metadata gets `Complete` = the final status, the mark
`az acr` reads the log until (blobs.py). A client that reads the log once when
Runs_Get says terminal misses the last lines, as it would on Azure. The mark's
values are `Succeeded`, `Failed`, `Canceled`, `TimedOut` and `InternalError`
(the run statuses Succeeded/Failed/Canceled/Timeout/Error): az compares the lower-cased
value with `internalerror`, `failed`, `timedout` and `canceled`.

Isolation, as on Azure's agents (which see only the uploaded context and the registries
they can pull from): before the build, every `FROM` of the Dockerfile (global `ARG`s and
build arguments substituted) must be a stage defined above it, `scratch`, an image of the
run's own registry (`<loginServer>/...`, which must exist there), or a public image that has
a stand-in here (`PUBLIC_STAND_INS`: Docker Hub names served from locally made images, since
no public registry is reachable). Anything else, e.g. an image only the host's Docker holds,
fails the run at that step with the line Docker prints for a pull of a repository it cannot
see: `pull access denied for <repository>, repository does not exist or may require 'docker
login': denied: requested access to the resource is denied` (moby distribution/errors.go).
"""

from __future__ import annotations

import datetime
import io
import logging
import re
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from bootstrap.azure_arm import blobs
from bootstrap.azure_arm.faults import Faults
from bootstrap.azure_arm.state import RunStore

log = logging.getLogger(__name__)

LOG_FLUSH_SECONDS = 0.5
COMPLETE_DELAY_SECONDS = 1.0
_COMPLETE_MARK = {
    "Succeeded": "Succeeded",
    "Failed": "Failed",
    "Canceled": "Canceled",
    "Timeout": "TimedOut",
    "Error": "InternalError",
}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Stopped(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Run:
    """One run while it executes: its record's private part, its log, its cancel event, whether it timed out."""

    registry: str
    run_id: str
    private: dict[str, Any]
    log_path: Path
    cancel: threading.Event
    timeout: float
    timed_out: bool = False  # set by the watchdog before it cancels the run
    buffered: list[str] = field(default_factory=list)  # written, not yet appended to the blob
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, line: str, *, stamp: bool = True) -> None:
        """Add a line to the run's log (with ACR's time stamp unless `stamp=False`); the blob gets it at the next flush."""
        prefix = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d %H:%M:%S ") if stamp else ""
        with self.lock:
            self.buffered.append(prefix + line.rstrip("\n") + "\n")

    def flush(self) -> None:
        """Append the buffered lines to the log blob."""
        with self.lock:
            text, self.buffered = "".join(self.buffered), []
            if text:
                with self.log_path.open("a", encoding="utf-8") as f:
                    f.write(text)

    def check(self) -> None:
        """Stop here (`_Stopped`) if the run was canceled or timed out."""
        if self.cancel.is_set():
            raise _Stopped("Timeout" if self.timed_out else "Canceled")

    def stopped_error(self, status: str) -> str:
        return (
            "The run was canceled." if status == "Canceled" else f"The run exceeded its timeout of {int(self.timeout)} seconds."
        )


class RunExecutor:
    def __init__(
        self, *, store: RunStore, faults: Faults, state_dir: Path, docker_factory: Callable[[], docker.APIClient] | None = None
    ) -> None:
        self._store = store
        self._faults = faults
        self._state_dir = state_dir
        self._docker_factory = docker_factory or (lambda: docker.from_env(timeout=3600).api)
        self._cancel: dict[tuple[str, str], threading.Event] = {}
        self._clients: dict[tuple[str, str], docker.APIClient] = {}
        self._lock = threading.Lock()

    def start(self, registry: str, run_id: str) -> None:
        key = (registry.lower(), run_id)
        with self._lock:
            self._cancel[key] = threading.Event()
        threading.Thread(target=self._run, args=(registry.lower(), run_id), name=f"acr-run-{run_id}", daemon=True).start()

    def cancel(self, registry: str, run_id: str) -> None:
        key = (registry.lower(), run_id)
        with self._lock:
            event = self._cancel.get(key)
            client = self._clients.get(key)
        if event:
            event.set()
        if client:
            client.close()

    # -- the run ---------------------------------------------------------

    def _run(self, registry: str, run_id: str) -> None:
        run = self._prepare(registry, run_id)
        started = time.monotonic()
        watchdog_stop = self._start_watchdog(run, deadline=started + run.timeout)
        try:
            status, error, output_images = self._execute(run)
        finally:
            watchdog_stop.set()  # also stops the log's flushes: what is still buffered waits for the mark
            self._release((registry, run_id))
        self._finish(run, status, error, output_images, elapsed=int(time.monotonic() - started))

    def _prepare(self, registry: str, run_id: str) -> _Run:
        """The run's record, its log file's directory, and its timeout (an injected `runTimeout` shortens it)."""
        record = self._store.get(registry, run_id)
        assert record is not None
        private: dict[str, Any] = record["private"]
        log_path = Path(private["logFile"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        timeout = float(private["timeout"])
        if fault := self._faults.take("runTimeout"):
            timeout = float(fault["seconds"])
        return _Run(registry, run_id, private, log_path, self._cancel[(registry, run_id)], timeout)

    def _start_watchdog(self, run: _Run, *, deadline: float) -> threading.Event:
        """A thread that flushes the run's log and cancels the run once `deadline` passes (marking it timed out); set
        the event to stop it."""
        stop = threading.Event()

        def watchdog() -> None:
            flushed = time.monotonic()
            while not stop.wait(0.1):
                if time.monotonic() > deadline and not run.cancel.is_set():
                    run.timed_out = True
                    self.cancel(run.registry, run.run_id)
                if time.monotonic() - flushed >= LOG_FLUSH_SECONDS and not stop.is_set():
                    run.flush()
                    flushed = time.monotonic()

        threading.Thread(target=watchdog, name=f"acr-run-{run.run_id}-watchdog", daemon=True).start()
        return stop

    def _execute(self, run: _Run) -> tuple[str, str, list[dict[str, str]]]:
        """Run it: (status, error, output images). Every failure is the run's, reported in its log."""
        status, error = "Failed", ""
        output_images: list[dict[str, str]] = []
        try:
            self._start_running(run)
            output_images = self._build_and_push(run)
            if fault := self._faults.take("failRun"):
                message = str(fault.get("message") or "injected failure")
                run.write(message)
                raise RuntimeError(message)
            status = "Succeeded"
        except _Stopped as stopped:
            status = stopped.status
            error = run.stopped_error(status)
        except Exception as exc:  # noqa: BLE001 - every failure of the build is the run's failure, reported in its log
            if run.timed_out or run.cancel.is_set():
                status = "Timeout" if run.timed_out else "Canceled"
                error = run.stopped_error(status)
            else:
                error = f"failed during run, err: {exc}"
        return status, error, output_images

    def _start_running(self, run: _Run) -> None:
        """Queued -> Running, then wait as long as an injected `runDelay` says (still cancellable)."""
        if run.private.get("resumed"):
            run.write(f"The imitation restarted; run {run.run_id} starts over.")
        run.check()
        self._store.update(run.registry, run.run_id, status="Running", startTime=now_iso(), lastUpdatedTime=now_iso())
        run.write("Waiting for an agent...", stamp=False)
        if delay := self._faults.take("runDelay"):
            end = time.monotonic() + float(delay["seconds"])
            while time.monotonic() < end:
                run.check()
                time.sleep(0.1)

    def _release(self, key: tuple[str, str]) -> None:
        """Forget the run's cancel event and close its Docker client."""
        with self._lock:
            client = self._clients.pop(key, None)
            self._cancel.pop(key, None)
        if client:
            client.close()

    def _finish(self, run: _Run, status: str, error: str, output_images: list[dict[str, str]], *, elapsed: int) -> None:
        """The run's final state, then (a moment later) the log's last lines and its `Complete` mark."""
        if status == "Succeeded":
            run.write(f"Run ID: {run.run_id} was successful after {elapsed}s", stamp=False)
        else:
            run.write(f"Run ID: {run.run_id} failed after {elapsed}s. Error: {error}", stamp=False)
        delay = self._faults.take("logCompleteDelay")
        finish = now_iso()
        self._store.update(
            run.registry,
            run.run_id,
            status=status,
            finishTime=finish,
            lastUpdatedTime=finish,
            outputImages=output_images or None,
            runErrorMessage=error or None,
        )
        log.info("run %s/%s ended %s", run.registry, run.run_id, status)
        time.sleep(float(delay["seconds"]) if delay else COMPLETE_DELAY_SECONDS)
        run.flush()
        blobs.set_metadata(run.log_path, {"Complete": _COMPLETE_MARK.get(status, status)})

    # -- the build and the push --------------------------------------------

    def _build_and_push(self, run: _Run) -> list[dict[str, str]]:
        """`docker build` the uploaded archive, tag it with every image name, push each; the pushed images."""
        request: dict[str, Any] = run.private["request"]
        login_server: str = run.private["loginServer"]
        tags = [f"{login_server}/{name}" for name in _image_names(request)]
        client = self._docker_factory()
        with self._lock:
            self._clients[(run.registry, run.run_id)] = client
        _log_build_start(run, request, login_server, tags)
        started = time.monotonic()
        bases: set[str] = set()
        try:
            image_id = _docker_build(client, run, Path(run.private["sourceFile"]), request, tags, bases)
        finally:
            _restore_native_bases(client, bases, docker_platform(request.get("platform")))
        run.check()
        run.write("Successfully executed container: build")
        for tag in tags[1:]:
            repo, _, name_tag = tag.rpartition(":")
            client.tag(image_id or tags[0], repo, name_tag)
        outputs: list[dict[str, str]] = []
        if request.get("isPushEnabled", True) and tags:
            run.write("Executing step ID: push. Timeout(sec): 3600, Working directory: '', Network: ''")
            if denied := str(run.private.get("pushDenied") or ""):  # the registry refuses this run (ABAC mode)
                run.write(f"Pushing image: {tags[0]}, attempt 1")
                run.write(denied, stamp=False)
                raise RuntimeError(f"failed to push image {tags[0]}: {denied}")
            outputs = [_push(client, run, tag, login_server) for tag in tags]
        run.write(f"Step ID: build marked as successful (elapsed time in seconds: {time.monotonic() - started:.6f})")
        for out in outputs:
            run.write("Populating digests for step ID: build...")
            run.write(
                f"- image:\n    registry: {out['registry']}\n    repository: {out['repository']}\n    tag: {out['tag']}\n    digest: {out['digest']}",
                stamp=False,
            )
        return outputs


def docker_platform(platform: dict[str, Any] | None) -> str:
    """The Docker engine's platform for a run's PlatformProperties (as Registries_ScheduleRun checked them):
    `linux/amd64`, `linux/arm64`, `linux/arm/v7`, `linux/386` (ACR's `x86` too)."""
    platform = platform or {}
    architecture = str(platform.get("architecture") or "amd64").lower()
    architecture = {"x86": "386"}.get(architecture, architecture)
    return "/".join(filter(None, (str(platform.get("os") or "linux").lower(), architecture, platform.get("variant"))))


def _image_names(request: dict[str, Any]) -> list[str]:
    """The request's imageNames, `:latest` where a name has no tag."""
    return [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest" for name in request.get("imageNames") or []]


def _log_build_start(run: _Run, request: dict[str, Any], login_server: str, tags: list[str]) -> None:
    """What an ACR agent logs before the build step's output (secret build arguments masked)."""
    run.write("Downloading source code...")
    run.write("Finished downloading source code")
    run.write("Setting up Docker configuration...")
    run.write("Successfully set up Docker configuration")
    run.write(f"Logging in to registry: {login_server}")
    run.write(f"Successfully logged into {login_server}")
    run.write(f"Executing step ID: build. Timeout(sec): {int(run.private['timeout'])}, Working directory: '', Network: ''")
    shown = " ".join(
        f"--build-arg {a['name']}={'*****' if a.get('isSecret') else a.get('value', '')}" for a in request.get("arguments") or []
    )
    run.write(
        f"Launching container with name: build (docker build --platform {docker_platform(request.get('platform'))} "
        f"-f {request['dockerFilePath']} {' '.join('-t ' + t for t in tags)} {shown} .)"
    )


_FROM = re.compile(r"^Step \d+/\d+ : FROM (?:--platform=\S+ )?(\S+)", re.IGNORECASE)


def _restore_native_bases(client: docker.APIClient, bases: set[str], platform: str) -> None:
    """After a build for another platform than the engine's: pull the engine's own platform of each base image again.

    The classic image store keeps one image per tag, so building FROM a multi-platform tag for linux/arm64 re-points
    the engine's local tag to the arm64 image; a later build that names no platform (docker's default, e.g. the
    local builder's) would then silently start from arm64. Bases that are not in a registry are left as they are.
    """
    if not bases:
        return
    try:
        version = client.version()
        native = f"{version.get('Os', 'linux')}/{version.get('Arch', 'amd64')}"
    except Exception:  # noqa: BLE001 - runs in a finally: never mask the build's own outcome (a canceled run's client is closed)
        return
    if platform.startswith(native):
        return
    for base in bases:
        if base.lower() == "scratch" or "@" in base:  # a digest (pinned, see _isolated_context) moves no tag
            continue
        try:
            image = client.inspect_image(base)
            if f"{image.get('Os', 'linux')}/{image.get('Architecture', '')}" != native:
                repository, _, tag = base.rpartition(":") if ":" in base.rsplit("/", 1)[-1] else (base, "", "latest")
                client.pull(repository, tag=tag, platform=native)
        except Exception as exc:  # noqa: BLE001 - as above; a base only built locally cannot be pulled
            log.info("could not restore %s for %s: %s", base, native, exc)


_FROM_LINE = re.compile(r"^(\s*FROM\s+)((?:--platform=\S+\s+)?)(\S+)(.*)$", re.IGNORECASE)
_GLOBAL_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.IGNORECASE)
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


def _platform_digest(login_server: str, image: str, platform: str) -> str | None:
    """`repo@sha256:...` of `platform`'s manifest in the multi-platform `image` of the run's own registry (anonymous
    HTTP, as the imitation's registries are); None for other registries, digests, single-platform images or errors."""
    if not image.startswith(login_server + "/") or "@" in image:
        return None
    name = image.removeprefix(login_server + "/")
    repository, _, tag = name.rpartition(":") if ":" in name else (name, "", "latest")
    try:
        response = requests.get(
            f"http://{login_server}/v2/{repository}/manifests/{tag}", headers={"Accept": _INDEX_TYPES}, timeout=30
        )
        index = response.json() if response.status_code == 200 else {}
    except (requests.exceptions.RequestException, ValueError):
        return None
    os_name, _, rest = platform.partition("/")
    architecture, _, variant = rest.partition("/")
    for manifest in index.get("manifests") or []:
        entry = manifest.get("platform") or {}
        if (entry.get("os"), entry.get("architecture")) == (os_name, architecture) and (
            not variant or entry.get("variant") in (variant, None)
        ):
            return f"{login_server}/{repository}@{manifest['digest']}"
    return None


# Public images a run may name: Docker Hub's names (the short form, `docker.io/...` and `docker.io/library/...` too),
# each served here from a locally made stand-in per platform (bootstrap's debootstrapped Debian bookworm + python3,
# README "base-image"), since no public registry is reachable from this machine. A name in this list that the
# host's Docker holds itself (pulled from Docker Hub) is used as it is.
PUBLIC_STAND_INS: dict[str, dict[str, str]] = {
    name: {"linux/amd64": "pipeline-base:bookworm", "linux/arm64": "pipeline-base:bookworm-arm64"}
    for name in (
        "python:3.11-slim-bookworm",
        "python:3.11-slim",
        "python:3.11-bookworm",
        "debian:bookworm",
        "debian:bookworm-slim",
    )
}
_MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


class BaseRefused(Exception):
    """A FROM image the run's agent could not pull: the message is the engine's line for it."""


def docker_hub_name(image: str) -> str | None:
    """`python:3.11-slim` for `python:3.11-slim`, `docker.io/python:...`, `docker.io/library/python:...`;
    None for an image of another registry (a first path part with a `.` or `:`, or `localhost`)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        if first not in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            return None
        image = rest
    image = image.removeprefix("library/")
    return image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"


def _in_registry(login_server: str, image: str) -> bool:
    """Whether the run's own registry holds `image` (`<loginServer>/repo:tag` or `@digest`; anonymous HTTP, as the
    imitation's registries are)."""
    name = image.removeprefix(login_server + "/")
    repository, reference = (
        name.split("@", 1) if "@" in name else (name.rpartition(":")[::2] if ":" in name else (name, "latest"))
    )
    try:
        response = requests.get(
            f"http://{login_server}/v2/{repository}/manifests/{reference}", headers={"Accept": _MANIFEST_TYPES}, timeout=30
        )
    except requests.exceptions.RequestException:
        return False
    return response.status_code == 200


def _resolve_base(run: _Run, client: docker.APIClient, image: str, stages: set[str], platform: str) -> str | None:
    """What the engine builds `FROM image` from: None to leave it, a replacement, or `BaseRefused` with Docker's line."""
    login_server: str = run.private["loginServer"]
    if image.lower() in stages or image.lower() == "scratch":
        return None
    if image.startswith(login_server + "/"):
        if not _in_registry(login_server, image):
            reference = image if "@" in image or ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
            raise BaseRefused(f"manifest for {reference} not found: manifest unknown: manifest unknown")
        return _platform_digest(login_server, image, platform)
    public = docker_hub_name(image)
    if public is not None and public in PUBLIC_STAND_INS:
        try:
            held = client.inspect_image(public)
            if any(
                d.split("@")[0] in (public.split(":")[0], "docker.io/library/" + public.split(":")[0])
                for d in held.get("RepoDigests") or []
            ):
                return None  # the host's Docker pulled the public image itself
        except docker.errors.ImageNotFound:
            pass
        stand_in = PUBLIC_STAND_INS[public].get(platform)
        if stand_in is None:
            raise BaseRefused(f"no matching manifest for {platform} in the manifest list entries")
        return stand_in
    repository = image.split("@", 1)[0]
    repository = repository.rpartition(":")[0] if ":" in repository.rsplit("/", 1)[-1] else repository
    raise BaseRefused(
        f"pull access denied for {repository}, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied"
    )


def _isolated_context(run: _Run, client: docker.APIClient, source: Path, request: dict[str, Any], platform: str) -> bytes | None:
    """The archive with each FROM resolved as an ACR agent would see it (None if nothing changed); `BaseRefused` for
    a FROM it could not pull.

    Images of the run's registry that are multi-platform indexes are pinned to `platform`'s manifest digest: the
    engine (Docker 20.10's classic builder) resolves a FROM tag it has locally to that local image whatever the
    requested platform, and its image store keeps one platform per tag, so `FROM base:tag` for linux/arm64 would
    silently start from the amd64 image (and an amd64 build from arm64 once anything pulled the tag for arm64). A
    digest names one platform's image, and pulling it moves no tag. Public names become their stand-ins.
    """
    dockerfile = str(request["dockerFilePath"]).removeprefix("./")
    build_args = {a["name"]: str(a.get("value", "")) for a in request.get("arguments") or []}
    with tarfile.open(source, mode="r:gz") as tar:
        members = tar.getmembers()
        member = next((m for m in members if m.name.removeprefix("./") == dockerfile and m.isfile()), None)
        extracted = tar.extractfile(member) if member else None
        if extracted is None:
            return None
        lines = extracted.read().decode().splitlines(keepends=True)
        args: dict[str, str] = {}
        stages: set[str] = set()
        changed = False
        for number, line in enumerate(lines):
            if (arg := _GLOBAL_ARG.match(line)) and not any(_FROM_LINE.match(earlier) for earlier in lines[:number]):
                args[arg.group(1)] = build_args.get(arg.group(1), arg.group(2) or "")
            if not (match := _FROM_LINE.match(line)):
                continue
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), match.group(3))
            resolved = _resolve_base(run, client, image, stages, platform)
            if stage := re.match(r"\s+AS\s+(\S+)", match.group(4), re.IGNORECASE):
                stages.add(stage.group(1).lower())
            if resolved is None:
                continue
            if "@sha256:" in resolved:
                run.write(f"Resolved base image {image} for {platform}: {resolved}")
            lines[number] = f"{match.group(1)}{match.group(2)}{resolved}{match.group(4)}" + ("\n" if line.endswith("\n") else "")
            changed = True
        if not changed:
            return None
        data = "".join(lines).encode()
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as rewritten:
            for entry in members:
                if entry is member:
                    copy = tarfile.TarInfo(entry.name)
                    copy.size, copy.mode, copy.mtime = len(data), entry.mode, entry.mtime
                    rewritten.addfile(copy, io.BytesIO(data))
                else:
                    rewritten.addfile(entry, tar.extractfile(entry) if entry.isfile() else None)
    return out.getvalue()


def _docker_build(
    client: docker.APIClient, run: _Run, source: Path, request: dict[str, Any], tags: list[str], bases: set[str]
) -> str:
    """Build the archive with the engine, streaming its output into the log; the built image's id ("" if none said).
    Adds the FROM images the engine named to `bases`."""
    build_args = {a["name"]: a.get("value", "") for a in request.get("arguments") or []}
    image_id = ""
    platform = docker_platform(request.get("platform"))
    try:
        pinned = _isolated_context(run, client, source, request, platform)
    except BaseRefused as refused:
        run.write(str(refused), stamp=False)
        run.write("Container failed during run: build. No retries remaining.")
        raise RuntimeError("exit status 1") from None
    with io.BytesIO(pinned) if pinned else source.open("rb") as context:
        stream = client.build(
            fileobj=context,
            custom_context=True,
            encoding="gzip",
            dockerfile=request["dockerFilePath"],
            target=request.get("target") or None,
            tag=tags[0] if tags else None,
            buildargs=build_args,
            nocache=bool(request.get("noCache")),
            network_mode="host",
            platform=platform,  # always explicit (the engine's own platform too)
            rm=True,
            forcerm=True,
            decode=True,
        )
        try:
            for chunk in stream:
                run.check()
                if match := _FROM.match(str(chunk.get("stream", ""))):
                    bases.add(match.group(1))
                image_id = _build_chunk(run, chunk, image_id)
        except (requests.exceptions.RequestException, docker.errors.APIError, OSError, AttributeError):
            run.check()
            raise
    return image_id


def _build_chunk(run: _Run, chunk: dict[str, Any], image_id: str) -> str:
    """Log one chunk of the engine's build output; the image id it names, else `image_id`. An error fails the build."""
    if "stream" in chunk:
        run.write(str(chunk["stream"]), stamp=False)
    if "aux" in chunk and "ID" in chunk["aux"]:
        image_id = chunk["aux"]["ID"]
    if "error" in chunk:
        detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
        run.write(detail, stamp=False)
        run.write("Container failed during run: build. No retries remaining.")
        raise RuntimeError("exit status 1")
    return image_id


def _push(client: docker.APIClient, run: _Run, tag: str, login_server: str) -> dict[str, str]:
    """Push one tag, logging the engine's progress; the pushed image as Runs_Get's outputImages name it."""
    repo, _, name_tag = tag.rpartition(":")
    run.write(f"Pushing image: {tag}, attempt 1")
    digest = ""
    for chunk in client.push(repo, tag=name_tag, stream=True, decode=True):
        run.check()
        if "error" in chunk:
            detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
            run.write(detail, stamp=False)
            raise RuntimeError(f"failed to push image {tag}: {detail}")
        if "status" in chunk and "progress" not in chunk:
            line = f"{chunk.get('id', '')}: {chunk['status']}" if chunk.get("id") else chunk["status"]
            run.write(line, stamp=False)
        digest = chunk.get("aux", {}).get("Digest", digest)
    if not digest:
        raise RuntimeError(f"failed to push image {tag}: the registry reported no digest")
    run.write(f"Successfully pushed image: {tag}")
    return {
        "registry": login_server,
        "repository": repo.removeprefix(login_server + "/"),
        "tag": name_tag,
        "digest": digest,
    }
