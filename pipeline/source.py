"""The build source as it travels: packed and uploaded by the CLI, fetched and built where the build runs.

The honest shape of `az acr build`: the client packs the build context
(.dockerignore honoured, exactly the files `source_hash` covers) into a
deterministic tar.gz and uploads it; the workflow input carries only a
content-addressed `SourceRef`, never a path of the client's machine.

    CLI:    pack(context) ─▶ target local: registry blob of the app's repository (HEAD, else POST + PUT ?digest=)
                           └▶ target aks:   ACR build source upload (listBuildSourceUploadUrl + PUT blob)
    worker: target local: GET the blob, check its sha256, `docker build` the archive
            target aks:   scheduleRun(sourceLocation = the upload's relativePath)

Deterministic: sorted entries, mtime 0, uid/gid 0 with empty names, modes kept, a
gzip header with mtime 0 and no file name: the same files give the same bytes on
any machine, so an unchanged source is found in the registry and uploads nothing.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import stat
import tarfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from pipeline.builders.local import context_files, is_complete_build_of, source_and_tag, source_hash, source_hash_of
from pipeline.errors import BadRequest, BuildError, RegistryError
from pipeline.models import BuildSpec, DeployRequest, SourceRef

# Files that hold secrets far more often than not; a context that would upload one is refused.
SECRET_PATTERNS = ("config.env", ".env", ".env.*", "*.pem", "*.key", "id_rsa", "id_ecdsa", "id_ed25519")
PROGRESS_OVER = 4 * 10**6  # bytes: bigger archives report their upload every 10%
MB = 10**6


@dataclass(frozen=True)
class Packed:
    """A packed build context: its source hash, the tar.gz bytes, and how many files they hold."""

    source_hash: str
    archive: bytes
    files: int

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.archive).hexdigest()

    @property
    def size(self) -> int:
        return len(self.archive)


def size_text(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def check_dockerfile(context: Path, dockerfile: str, *, app: str, option: str = "") -> None:
    """A BadRequest in one line unless `context` is a directory holding `dockerfile`."""
    where = option or f"apps.{app}.build_context"
    if not context.is_dir():
        raise BadRequest(f"{where}: {context} is not a directory")
    if not (context / dockerfile).is_file():
        raise BadRequest(f"{where}: {context} has no {dockerfile} (the Dockerfile of {app}, relative to its build context)")


def secret_files(files: list[str]) -> list[str]:
    """The files among `files` whose names look like secrets (SECRET_PATTERNS)."""
    return [rel for rel in files if any(fnmatch.fnmatchcase(Path(rel).name, p) for p in SECRET_PATTERNS)]


def pack(context: Path, *, dockerfile: str, target: str, build_args: dict[str, str], label: bool = False) -> Packed:
    """The context as a deterministic tar.gz; `label`: the Dockerfile gets the source-hash LABEL (ACR Tasks has no --label).

    Refuses (BadRequest) a context that would upload files named like secrets.
    """
    rels = context_files(context, dockerfile=dockerfile)
    if found := secret_files(rels):
        raise BadRequest(
            f"the build context {context} would upload secret-looking files: {', '.join(found)}; "
            f"add them to {context / '.dockerignore'}"
        )
    files = [(rel, (context / rel).read_bytes()) for rel in rels]
    digest_of_source = source_hash_of(files, dockerfile=dockerfile, target=target or None, build_args=build_args)
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, data in files:
            if label and Path(rel) == Path(dockerfile):
                from pipeline.builders.acr import labelled_dockerfile  # only target aks labels

                data = labelled_dockerfile(data.decode("utf-8"), target=target, label_value=digest_of_source).encode()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = stat.S_IMODE((context / rel).stat().st_mode)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return Packed(digest_of_source, raw.getvalue(), len(files))


def local_source(context: Path, spec: BuildSpec) -> SourceRef:
    """The source hash computed here, nothing uploaded (`render`, `--no-build`, and before `ship`)."""
    return SourceRef(source_hash(context, dockerfile=spec.dockerfile, target=spec.target or None, build_args=spec.build_args))


def with_source(request: DeployRequest, ref: SourceRef) -> DeployRequest:
    assert request.app.build is not None
    return replace(request, app=replace(request.app, build=replace(request.app.build, source=ref)))


def ship(request: DeployRequest, context: Path, *, max_mb: int, say: Callable[[str], None]) -> DeployRequest:
    """Pack `context` and upload it where the build runs; the request with its SourceRef; one line says what travelled."""
    build = request.app.build
    if build is None or request.image or request.restore:
        return request
    check_dockerfile(context, build.dockerfile, app=request.app.name)
    packed = pack(
        context, dockerfile=build.dockerfile, target=build.target, build_args=build.build_args, label=build.acr is not None
    )
    if packed.size > max_mb * MB:
        raise BadRequest(
            f"the build context {context} packs to {size_text(packed.size)}, over [pipeline].max_source_mb = {max_mb}; "
            f"exclude what the image does not need in {context / '.dockerignore'}"
        )
    progress = _progress(packed.size, say)
    if build.acr is None:
        location, sent = upload_blob(build.repository, packed, on_progress=progress)
    else:
        location, sent = _upload_to_acr(build, packed, request.tag, on_progress=progress)
    shown = f"source {packed.digest[:19]}… ({size_text(packed.size)}, {packed.files} files)"
    if sent:
        say(f"{shown}: uploaded {size_text(sent)} to {location.split('@')[0] if build.acr is None else build.acr.name}")
    elif location:
        say(f"{shown}: already in the registry, 0 bytes uploaded")
    else:
        say(f"{shown}: the image built from it is already in the registry, 0 bytes uploaded")
    return with_source(request, SourceRef(packed.source_hash, packed.digest, packed.size, location))


def _progress(total: int, say: Callable[[str], None]) -> Callable[[int], None] | None:
    if total <= PROGRESS_OVER:
        return None
    shown = [0]

    def report(done: int) -> None:
        tenth = min(10, done * 10 // total)
        if tenth > shown[0]:
            shown[0] = tenth
            say(f"uploading source: {tenth * 10}% ({size_text(done)} of {size_text(total)})")

    return report


class _Counting(io.BytesIO):
    """A request body that reports how much of it was read (and can be rewound by a retry)."""

    def __init__(self, data: bytes, on_progress: Callable[[int], None] | None) -> None:
        super().__init__(data)
        self._on_progress = on_progress

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self._on_progress is not None and chunk:
            self._on_progress(self.tell())
        return chunk


def body(data: bytes, on_progress: Callable[[int], None] | None) -> bytes | io.BytesIO:
    """`data` as a request body, reporting its progress when asked."""
    return data if on_progress is None else _Counting(data, on_progress)


# ----- target local: a blob of the app's image repository (Docker Registry HTTP API v2) -----


def _blob_base(repository: str) -> tuple[str, str]:
    host, _, name = repository.partition("/")
    return host, f"http://{host}/v2/{name}/blobs"


def blob_exists(repository: str, digest: str) -> bool:
    host, base = _blob_base(repository)
    try:
        response = requests.head(f"{base}/{digest}", timeout=10)
    except requests.RequestException as exc:
        raise RegistryError(f"registry {host} is unreachable: {exc}") from exc
    if response.status_code not in (200, 404):
        raise RegistryError(f"registry {host} answered {response.status_code} for blob {digest} of {repository}")
    return response.status_code == 200


def upload_blob(repository: str, packed: Packed, *, on_progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Put the archive in `repository` as a blob unless it is there; (location `repo@digest`, bytes sent)."""
    location = f"{repository}@{packed.digest}"
    if blob_exists(repository, packed.digest):
        return location, 0
    host, base = _blob_base(repository)
    try:
        started = requests.post(f"{base}/uploads/", timeout=30)
        if started.status_code != 202 or not started.headers.get("Location"):
            raise RegistryError(f"registry {host} refused to start an upload to {repository}: {started.status_code}")
        url = urllib.parse.urljoin(f"http://{host}/", started.headers["Location"])
        done = requests.put(
            url,
            params={"digest": packed.digest},
            data=body(packed.archive, on_progress),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(packed.size)},
            timeout=(10, 600),
        )
    except requests.RequestException as exc:
        raise RegistryError(f"upload of the build source to registry {host} failed: {exc}") from exc
    if done.status_code != 201:
        raise RegistryError(
            f"registry {host} refused the build source {packed.digest} for {repository}: {done.status_code} {done.text[:200]}"
        )
    return location, packed.size


def fetch_blob(ref: SourceRef) -> bytes:
    """The archive `ref` names, from the registry, its sha256 checked (target local's build activity)."""
    repository, _, digest = ref.location.partition("@")
    if not ref.location or digest != ref.digest:
        raise BuildError(
            f"the build source {ref.digest or ref.source_hash} was not uploaded (location {ref.location!r}); deploy again"
        )
    host, base = _blob_base(repository)
    try:
        response = requests.get(f"{base}/{digest}", timeout=(10, 600))
    except requests.RequestException as exc:
        raise RegistryError(f"registry {host} is unreachable: {exc}") from exc
    if response.status_code == 404:
        raise BuildError(f"the build source {digest} is not in {repository} (removed from the registry?); deploy again")
    if response.status_code != 200:
        raise RegistryError(f"registry {host} answered {response.status_code} for the build source {digest}")
    data = response.content
    got = "sha256:" + hashlib.sha256(data).hexdigest()
    if got != digest:
        raise BuildError(f"the build source from {repository} has sha256 {got}, not {digest}: refusing to build it")
    return data


# ----- target aks: ACR's build source upload -----


def _upload_to_acr(build: BuildSpec, packed: Packed, tag: str, *, on_progress: Callable[[int], None] | None) -> tuple[str, int]:
    """(relativePath, bytes sent); ("", 0) when the imitation's registry already holds the image of this source."""
    from pipeline.azure import acr  # only target aks needs the Azure SDKs
    from pipeline.builders import acr as acr_builder

    assert build.acr is not None
    built = replace(build, source=SourceRef(packed.source_hash))
    digest_of_source, tag = source_and_tag(built, tag)
    name = acr_builder.repository_name(build.repository, build.acr.login_server)
    existing = acr_builder.existing_image(build.acr.login_server, name, tag)
    if is_complete_build_of(existing, digest_of_source, build.platforms):
        return "", 0
    with acr.session(acr_builder.registry_of(build.acr)) as session:
        return session.upload_source(body(packed.archive, on_progress)), packed.size
