"""ACR Tasks, as thin typed calls: upload a build context, schedule a Docker build, follow the run.

    registry = Registry(subscription_id=..., resource_group=..., name="myacr", endpoint=...)
    with acr.session(registry) as s:
        source = s.upload_source(archive_bytes)                       # listBuildSourceUploadUrl + blob PUT
        run = s.schedule_docker_build(source=source, image_names=[...], dockerfile="Dockerfile", ...)
        run = s.get_run(run.run_id)                                    # Queued -> Running -> Succeeded/...
        link = s.log_link(run.run_id); chunk = s.read_log(link, offset)
        props = s.log_properties(link)        # its length, and `complete` once the agent has written all of it

Everything returns small frozen dataclasses, never SDK models, so callers
(`pipeline.builders.acr`) stay free of `azure.*`; every failure is an
`AzureError` (translated in `errors.azure_errors`). Blob URLs carry a SAS
signature: they are used, never logged or returned to a workflow.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TypeVar

import requests
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.v2025_03_01_preview import models as m
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.azure.clients import acr_client
from pipeline.azure.credentials import ca_bundle
from pipeline.azure.errors import (
    AzureBadRequest,
    AzureError,
    AzureForbidden,
    AzureNotFound,
    AzureThrottled,
    Resource,
    azure_errors,
    translate_blob_status,
)
from pipeline.azure.role_grants import ABAC

TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Canceled", "Error", "Timeout"})
TASKS_NOT_ALLOWED = "TasksOperationsNotAllowed"


class AcrTasksNotAllowed(AzureBadRequest):
    """Registries_ScheduleRun answered 400 TasksOperationsNotAllowed: this subscription may not run ACR Tasks."""

    hint = (
        "Azure does not run ACR Tasks for this subscription (free-trial and Azure-credit subscriptions are refused); "
        "use a pay-as-you-go subscription, ask Azure support (https://aka.ms/azuresupport) to allow ACR Tasks, "
        "or build and push the image elsewhere and deploy it with --image"
    )


@dataclass(frozen=True)
class LogProperties:
    """A run log blob's Get Blob Properties: its length and its `Complete` metadata ("" while the agent still writes)."""

    length: int
    complete: str


@dataclass(frozen=True)
class Registry:
    subscription_id: str
    resource_group: str
    name: str
    endpoint: str = "https://management.azure.com"

    def resource(self) -> Resource:
        return Resource("registry", self.name, self.resource_group, self.subscription_id, "[acr].name")


@dataclass(frozen=True)
class OutputImage:
    registry: str
    repository: str
    tag: str
    digest: str


@dataclass(frozen=True)
class RunState:
    run_id: str
    status: str
    output_images: tuple[OutputImage, ...] = ()
    error_message: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class RegistryLogin:
    """A registry credential (username, password): only ever written into a Kubernetes Secret."""

    login_server: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password, even in a traceback's locals
        return f"RegistryLogin(login_server={self.login_server!r}, username={self.username!r}, password=***)"


def _run_state(run: m.Run) -> RunState:
    return RunState(
        run_id=str(run.run_id or run.name or ""),
        status=str(run.status or "Queued"),
        output_images=tuple(
            OutputImage(str(i.registry or ""), str(i.repository or ""), str(i.tag or ""), str(i.digest or ""))
            for i in (run.output_images or [])
        ),
        error_message=str(run.run_error_message or ""),
    )


class Session:
    """One registry's management client and an HTTP session for its blobs; close it (or use `session()`)."""

    def __init__(self, registry: Registry, client: ContainerRegistryManagementClient) -> None:
        self.registry = registry
        self.client = client
        self.http = requests.Session()
        self.http.verify = ca_bundle() or True
        # Blob storage throttles and fails like ARM does: the same bounded retries, honouring Retry-After.
        retry = Retry(
            total=5,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "PUT"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.http.mount("https://", HTTPAdapter(max_retries=retry))

    def close(self) -> None:
        self.http.close()
        self.client.close()  # type: ignore[no-untyped-call]

    def caller_identity_for_runs(self, configured_mode: str = "") -> str:
        """ "[caller]" for a registry in ABAC repository-permission mode (its runs have no data-plane access of their
        own, so `az acr build` sends the caller's identity), "" for a legacy one. The registry's own mode when the
        caller may read it; else `configured_mode` ([acr].role_assignment_mode): the pipeline's identity has no
        registries/read (Container Registry Tasks Contributor and AcrPush grant none)."""
        mode = configured_mode
        try:
            with azure_errors(self.registry.resource()):
                found = self.client.registries.get(self.registry.resource_group, self.registry.name)
            mode = str(getattr(found, "role_assignment_mode", "") or mode)
        except (AzureForbidden, AzureNotFound):
            pass  # not readable (or not there: the run's own request says so, in its words)
        return "[caller]" if mode == ABAC else ""

    def _run_resource(self, run_id: str) -> Resource:
        r = self.registry
        return Resource("ACR run", f"{run_id} of registry {r.name}", r.resource_group, r.subscription_id, "[acr].name")

    def login_server(self) -> str:
        with azure_errors(self.registry.resource()):
            return str(self.client.registries.get(self.registry.resource_group, self.registry.name).login_server)

    def upload_source(self, archive: bytes | IO[bytes], *, say: Callable[[str], None] | None = None) -> str:
        """Upload a tar.gz build context; returns the `relativePath` that scheduleRun's `sourceLocation` takes.

        `archive` may be a seekable file-like body (the CLI's, which reports its progress as it is read).
        The upload URL (an ARM action, from the write bucket) is asked again while ARM throttles (`unthrottled`).
        """
        r = self.registry

        def upload_url() -> m.SourceUploadDefinition:
            with azure_errors(r.resource()):
                answer: m.SourceUploadDefinition = self.client.registries.get_build_source_upload_url(r.resource_group, r.name)
                return answer

        upload = unthrottled(upload_url, say=say or (lambda _: None))
        url, relative = str(upload.upload_url), str(upload.relative_path)
        try:
            response = self.http.put(url, data=archive, headers={"x-ms-blob-type": "BlockBlob"}, timeout=(10, 300))
        except requests.RequestException as exc:
            raise translate_blob_status(None, f"upload of the build context to registry {r.name}", str(exc)) from exc
        if response.status_code not in (200, 201):
            raise translate_blob_status(
                response.status_code,
                f"upload of the build context to registry {r.name}",
                response.headers.get("x-ms-error-code", ""),
            )
        return relative

    def schedule_docker_build(
        self,
        *,
        source: str,
        image_names: Sequence[str],
        dockerfile: str,
        target: str,
        platform: str,
        build_args: Mapping[str, str],
        timeout_seconds: int,
        push: bool = True,
        source_registry_identity: str = "",  # issue 22 item 0 (ABAC registries): "[caller]", as `az acr build` sends
    ) -> RunState:
        """Registries_ScheduleRun with a DockerBuildRequest (build arguments are sent as non-secret).

        `source_registry_identity` "[caller]" gives the run the caller's data-plane access to its registry
        (`credentials.sourceRegistry.identity`): a registry in AbacRepositoryPermissions mode gives a run none
        otherwise, so its push fails; "" sends no credentials (legacy registries: the run pushes as the registry's)."""
        os_name, _, rest = platform.partition("/")
        architecture, _, variant = rest.partition("/")
        request = m.DockerBuildRequest(
            source_location=source,
            docker_file_path=dockerfile,
            image_names=list(image_names),
            is_push_enabled=push,
            target=target or None,
            platform=m.PlatformProperties(
                os=os_name.capitalize() or "Linux", architecture=architecture or "amd64", variant=variant or None
            ),
            arguments=[m.Argument(name=k, value=v, is_secret=False) for k, v in sorted(build_args.items())],
            timeout=timeout_seconds,
            credentials=m.Credentials(source_registry=m.SourceRegistryCredentials(identity=source_registry_identity))
            if source_registry_identity
            else None,
        )
        r = self.registry
        try:
            with azure_errors(r.resource()):
                return _run_state(self.client.registries.schedule_run(r.resource_group, r.name, request))
        except AzureBadRequest as exc:
            if exc.code != TASKS_NOT_ALLOWED:
                raise
            raise AcrTasksNotAllowed(
                f"registry {r.name} (subscription {r.subscription_id}) refused the build: {TASKS_NOT_ALLOWED}; "
                f"{AcrTasksNotAllowed.hint}",
                status=exc.status,
                code=exc.code,
            ) from exc

    def get_run(self, run_id: str) -> RunState:
        with azure_errors(self._run_resource(run_id)):
            return _run_state(self.client.runs.get(self.registry.resource_group, self.registry.name, run_id))

    def cancel_run(self, run_id: str) -> None:
        with azure_errors(self._run_resource(run_id)):
            self.client.runs.cancel(self.registry.resource_group, self.registry.name, run_id)

    def list_runs(self, *, run_filter: str = "", top: int | None = None) -> list[RunState]:
        r = self.registry
        with azure_errors(r.resource()):
            return [
                _run_state(run) for run in self.client.runs.list(r.resource_group, r.name, filter=run_filter or None, top=top)
            ]

    def log_link(self, run_id: str) -> str:
        """The run log's SAS URL (a secret for as long as it is valid: do not log it)."""
        with azure_errors(self._run_resource(run_id)):
            return str(self.client.runs.get_log_sas_url(self.registry.resource_group, self.registry.name, run_id).log_link)

    def read_log(self, link: str, offset: int) -> bytes | None:
        """The log's bytes from `offset` on; b"" when nothing new; None when the link was refused (expired: ask again)."""
        try:
            response = self.http.get(
                link, headers={"x-ms-range": f"bytes={offset}-", "x-ms-version": "2021-08-06"}, timeout=(10, 60)
            )
        except requests.RequestException as exc:
            raise translate_blob_status(None, f"reading the run log of registry {self.registry.name}", str(exc)) from exc
        if response.status_code in (200, 206):
            return response.content if response.status_code == 206 or offset == 0 else response.content[offset:]
        if response.status_code in (404, 416):  # not written yet / nothing past `offset`
            return b""
        if response.status_code == 403:
            return None
        raise translate_blob_status(
            response.status_code,
            f"reading the run log of registry {self.registry.name}",
            response.headers.get("x-ms-error-code", ""),
        )

    def log_properties(self, link: str) -> LogProperties | None:
        """Get Blob Properties of the run log (`HEAD`): what `az acr` asks between reads; None when the link was
        refused (expired: ask again). No blob yet: length 0, not complete."""
        try:
            response = self.http.head(link, headers={"x-ms-version": "2021-08-06"}, timeout=(10, 60))
        except requests.RequestException as exc:
            raise translate_blob_status(None, f"reading the run log of registry {self.registry.name}", str(exc)) from exc
        if response.status_code == 404:
            return LogProperties(0, "")
        if response.status_code == 403:
            return None
        if response.status_code != 200:
            raise translate_blob_status(
                response.status_code,
                f"reading the run log of registry {self.registry.name}",
                response.headers.get("x-ms-error-code", ""),
            )
        complete = next((v for k, v in response.headers.items() if k.lower() == "x-ms-meta-complete"), "")
        return LogProperties(int(response.headers.get("Content-Length") or 0), complete)

    def admin_login(self) -> RegistryLogin:
        """The registry's admin user (Registries_ListCredentials): what an imagePullSecret is made of."""
        r = self.registry

        def ask() -> tuple[str, m.RegistryListCredentialsResult]:
            with azure_errors(r.resource()):
                server = str(self.client.registries.get(r.resource_group, r.name).login_server)
                return server, self.client.registries.list_credentials(r.resource_group, r.name)

        # Within the apply activity's 60 s: a throttled subscription waits here, then Temporal's retries take over.
        login_server, creds = unthrottled(ask, say=_log.info, give_up_seconds=40)
        passwords = [p.value for p in (creds.passwords or []) if p.value]
        if not creds.username or not passwords:
            raise AzureError(f"{r.resource().describe()}: ListCredentials returned no admin password; enable the admin user")
        return RegistryLogin(login_server, str(creds.username), str(passwords[0]))


T = TypeVar("T")
_log = logging.getLogger(__name__)
THROTTLED_GIVE_UP_SECONDS = 600.0  # a call ARM keeps throttling this long fails with AzureThrottled (retryable)


def unthrottled(
    call: Callable[[], T],
    *,
    say: Callable[[str], None],
    first_wait: float = 2.0,
    max_wait: float = 30.0,
    give_up_seconds: float = THROTTLED_GIVE_UP_SECONDS,
) -> T:
    """`call()`, waiting out 429s that outlast the SDK's own retries: their Retry-After (else a doubling back-off
    from `first_wait` to `max_wait`) plus up to a second of jitter, so that many callers refused together do not
    come back together. Gives up (re-raises AzureThrottled) once waiting would pass `give_up_seconds`.

    A throttled request was not carried out (ARM refuses it before the provider sees it), so calling again is safe
    even for an action such as scheduleRun.
    """
    deadline = time.monotonic() + give_up_seconds
    backoff = first_wait
    while True:
        try:
            return call()
        except AzureThrottled as exc:
            wait = (retry_after(exc) or backoff) + random.uniform(0, 1)
            backoff = min(backoff * 2, max_wait)
            if time.monotonic() + wait > deadline:
                raise
            say(f"ARM is throttling this identity; trying again in {wait:.0f}s")
            time.sleep(wait)


def retry_after(exc: AzureThrottled) -> float | None:
    """The `Retry-After` seconds of the 429 behind `exc` (after the SDK's own retries), if it said one."""
    response = getattr(exc.__cause__, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


@contextmanager
def session(registry: Registry) -> Iterator[Session]:
    s = Session(registry, acr_client(subscription_id=registry.subscription_id, endpoint=registry.endpoint))
    try:
        yield s
    finally:
        s.close()
