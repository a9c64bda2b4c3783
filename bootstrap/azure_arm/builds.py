"""The work behind Registries_ScheduleRun: a real `docker build` of the uploaded archive, tag, push, and an ACR-like log.

Each run executes in its own thread with its own Docker API client, so
Runs_Get sees it move Queued -> Running -> Succeeded/Failed/Canceled/Timeout
while the log blob grows line by line. Cancel and timeout close that client,
which drops the build's connection and makes the engine abort the build.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from bootstrap.azure_arm.faults import Faults
from bootstrap.azure_arm.state import RunStore

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Stopped(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


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
        record = self._store.get(registry, run_id)
        assert record is not None
        private: dict[str, Any] = record["private"]
        log_path = Path(private["logFile"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        key = (registry, run_id)
        cancel = self._cancel[key]
        timeout = float(private["timeout"])
        if fault := self._faults.take("runTimeout"):
            timeout = float(fault["seconds"])
        deadline = started + timeout
        watchdog_stop = threading.Event()

        def write(line: str, *, stamp: bool = True) -> None:
            prefix = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d %H:%M:%S ") if stamp else ""
            with log_path.open("a", encoding="utf-8") as f:
                f.write(prefix + line.rstrip("\n") + "\n")

        def watchdog() -> None:
            while not watchdog_stop.wait(0.2):
                if time.monotonic() > deadline and not cancel.is_set():
                    private_state["timedOut"] = True
                    self.cancel(registry, run_id)

        private_state: dict[str, Any] = {"timedOut": False}
        threading.Thread(target=watchdog, name=f"acr-run-{run_id}-watchdog", daemon=True).start()
        status, error = "Failed", ""
        output_images: list[dict[str, str]] = []
        try:
            if private.get("resumed"):
                write(f"The imitation restarted; run {run_id} starts over.")
            self._check(cancel, private_state)
            self._store.update(registry, run_id, status="Running", startTime=now_iso(), lastUpdatedTime=now_iso())
            write("Waiting for an agent...", stamp=False)
            if delay := self._faults.take("runDelay"):
                end = time.monotonic() + float(delay["seconds"])
                while time.monotonic() < end:
                    self._check(cancel, private_state)
                    time.sleep(0.1)
            output_images = self._build_and_push(registry, run_id, private, write, cancel, private_state)
            if fault := self._faults.take("failRun"):
                message = str(fault.get("message") or "injected failure")
                write(message)
                raise RuntimeError(message)
            status = "Succeeded"
        except _Stopped as stopped:
            status = stopped.status
            error = (
                "The run was canceled." if status == "Canceled" else f"The run exceeded its timeout of {int(timeout)} seconds."
            )
        except Exception as exc:  # noqa: BLE001 - every failure of the build is the run's failure, reported in its log
            if private_state["timedOut"] or cancel.is_set():
                status = "Timeout" if private_state["timedOut"] else "Canceled"
                error = (
                    "The run was canceled."
                    if status == "Canceled"
                    else f"The run exceeded its timeout of {int(timeout)} seconds."
                )
            else:
                error = f"failed during run, err: {exc}"
        finally:
            watchdog_stop.set()
            with self._lock:
                client = self._clients.pop(key, None)
                self._cancel.pop(key, None)
            if client:
                client.close()
        elapsed = int(time.monotonic() - started)
        if status == "Succeeded":
            write(f"Run ID: {run_id} was successful after {elapsed}s", stamp=False)
        else:
            write(f"Run ID: {run_id} failed after {elapsed}s. Error: {error}", stamp=False)
        finish = now_iso()
        self._store.update(
            registry,
            run_id,
            status=status,
            finishTime=finish,
            lastUpdatedTime=finish,
            outputImages=output_images or None,
            runErrorMessage=error or None,
        )
        log.info("run %s/%s ended %s", registry, run_id, status)

    @staticmethod
    def _check(cancel: threading.Event, private_state: dict[str, Any]) -> None:
        if cancel.is_set():
            raise _Stopped("Timeout" if private_state["timedOut"] else "Canceled")

    def _build_and_push(
        self,
        registry: str,
        run_id: str,
        private: dict[str, Any],
        write: Callable[..., None],
        cancel: threading.Event,
        private_state: dict[str, Any],
    ) -> list[dict[str, str]]:
        request: dict[str, Any] = private["request"]
        login_server: str = private["loginServer"]
        source = Path(private["sourceFile"])
        images = [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest" for name in request.get("imageNames") or []]
        tags = [f"{login_server}/{name}" for name in images]
        client = self._docker_factory()
        with self._lock:
            self._clients[(registry, run_id)] = client
        write("Downloading source code...")
        write("Finished downloading source code")
        write("Setting up Docker configuration...")
        write("Successfully set up Docker configuration")
        write(f"Logging in to registry: {login_server}")
        write(f"Successfully logged into {login_server}")
        write(f"Executing step ID: build. Timeout(sec): {int(private['timeout'])}, Working directory: '', Network: ''")
        build_args = {a["name"]: a.get("value", "") for a in request.get("arguments") or []}
        shown = " ".join(
            f"--build-arg {a['name']}={'*****' if a.get('isSecret') else a.get('value', '')}"
            for a in request.get("arguments") or []
        )
        write(
            f"Launching container with name: build (docker build -f {request['dockerFilePath']} {' '.join('-t ' + t for t in tags)} {shown} .)"
        )
        platform = request.get("platform") or {}
        wanted = f"{str(platform.get('os', 'linux')).lower()}/{str(platform.get('architecture', 'amd64')).lower()}"
        started = time.monotonic()
        image_id = ""
        with source.open("rb") as context:
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
                platform=None if wanted == "linux/amd64" else wanted,
                rm=True,
                forcerm=True,
                decode=True,
            )
            try:
                for chunk in stream:
                    self._check(cancel, private_state)
                    if "stream" in chunk:
                        write(str(chunk["stream"]), stamp=False)
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
                    if "error" in chunk:
                        detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
                        write(detail, stamp=False)
                        write("Container failed during run: build. No retries remaining.")
                        raise RuntimeError("exit status 1")
            except (requests.exceptions.RequestException, docker.errors.APIError, OSError, AttributeError):
                self._check(cancel, private_state)
                raise
        self._check(cancel, private_state)
        write("Successfully executed container: build")
        for tag in tags[1:]:
            repo, _, name_tag = tag.rpartition(":")
            client.tag(image_id or tags[0], repo, name_tag)
        outputs: list[dict[str, str]] = []
        if request.get("isPushEnabled", True) and tags:
            write("Executing step ID: push. Timeout(sec): 3600, Working directory: '', Network: ''")
            for tag in tags:
                repo, _, name_tag = tag.rpartition(":")
                write(f"Pushing image: {tag}, attempt 1")
                digest = ""
                for chunk in client.push(repo, tag=name_tag, stream=True, decode=True):
                    self._check(cancel, private_state)
                    if "error" in chunk:
                        detail = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
                        write(detail, stamp=False)
                        raise RuntimeError(f"failed to push image {tag}: {detail}")
                    if "status" in chunk and "progress" not in chunk:
                        line = f"{chunk.get('id', '')}: {chunk['status']}" if chunk.get("id") else chunk["status"]
                        write(line, stamp=False)
                    digest = chunk.get("aux", {}).get("Digest", digest)
                if not digest:
                    raise RuntimeError(f"failed to push image {tag}: the registry reported no digest")
                write(f"Successfully pushed image: {tag}")
                outputs.append(
                    {
                        "registry": login_server,
                        "repository": repo.removeprefix(login_server + "/"),
                        "tag": name_tag,
                        "digest": digest,
                    }
                )
        write(f"Step ID: build marked as successful (elapsed time in seconds: {time.monotonic() - started:.6f})")
        for out in outputs:
            write("Populating digests for step ID: build...")
            write(
                f"- image:\n    registry: {out['registry']}\n    repository: {out['repository']}\n    tag: {out['tag']}\n    digest: {out['digest']}",
                stamp=False,
            )
        return outputs
