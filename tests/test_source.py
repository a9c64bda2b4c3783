"""The build source as it travels (pipeline/source.py): a deterministic archive, refused when it holds secrets or is too big.

No registry here: everything refused is refused before anything is uploaded
(tests/test_source_upload.py uploads to the stack's registry).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from pipeline import source
from pipeline.builders.local import source_hash
from pipeline.errors import BadRequest
from pipeline.models import AppSpec, BuildSpec, ClusterRef, DeployRequest, ResourceSpec, RolloutSpec, TemporalTarget
from tests.helpers.cli import run
from tests.helpers.config import write_config

pytestmark = pytest.mark.unit


def make_context(directory: Path, *, mtime: int = 1_700_000_000) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    (directory / "app").mkdir(exist_ok=True)
    (directory / "app" / "main.py").write_text("print('hi')\n")
    (directory / "run.sh").write_text("#!/bin/sh\necho run\n")
    (directory / "run.sh").chmod(0o755)
    (directory / "app" / "main.py").chmod(0o640)
    (directory / "notes.txt").write_text("left out\n")
    (directory / ".dockerignore").write_text("notes.txt\n")
    for path in directory.rglob("*"):
        os.utime(path, (mtime, mtime))
    return directory


def pack(context: Path) -> source.Packed:
    return source.pack(context, dockerfile="Dockerfile", target="", build_args={"V": "1"})


def members(packed: source.Packed) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(packed.archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def request_for(spec: BuildSpec) -> DeployRequest:
    return DeployRequest(
        app=AppSpec(
            name="app",
            namespace="ns",
            task_queue="q",
            replicas=1,
            resources=ResourceSpec("100m", "100m", "64Mi", "64Mi"),
            rollout=RolloutSpec(60, 1, 0, 60, True),
            health_port=0,
            termination_grace_period_seconds=10,
            build=spec,
        ),
        environment="local",
        temporal=TemporalTarget(address="127.0.0.1:7233", namespace="default"),
        cluster=ClusterRef(),
    )


def test_the_same_files_pack_to_the_same_bytes_whatever_their_mtimes(tmp_path: Path) -> None:
    one = pack(make_context(tmp_path / "one", mtime=1_600_000_000))
    two = pack(make_context(tmp_path / "elsewhere" / "two", mtime=1_800_000_000))
    assert one.archive == two.archive and one.digest == two.digest and one.source_hash == two.source_hash
    assert pack(tmp_path / "one").archive == one.archive  # and twice in a row


def test_the_archive_is_normalized_and_its_gzip_header_names_nothing(tmp_path: Path) -> None:
    packed = pack(make_context(tmp_path / "ctx"))
    found = members(packed)
    assert list(found) == sorted(found)
    for info in found.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    header = packed.archive[:10]
    assert header[3] & 0x08 == 0, "no FNAME in the gzip header"
    assert header[4:8] == b"\0\0\0\0", "gzip mtime 0"
    assert gzip.decompress(packed.archive)  # a valid gzip stream


def test_modes_are_kept(tmp_path: Path) -> None:
    found = members(pack(make_context(tmp_path / "ctx")))
    assert found["run.sh"].mode == 0o755 and found["app/main.py"].mode == 0o640


def test_dockerignore_is_honoured_and_the_hash_is_the_one_render_computes(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    packed = pack(context)
    assert set(members(packed)) == {".dockerignore", "Dockerfile", "app/main.py", "run.sh"}
    assert packed.files == 4
    assert packed.source_hash == source_hash(context, dockerfile="Dockerfile", target=None, build_args={"V": "1"})


def test_a_changed_file_changes_the_archive_and_the_hash(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    before = pack(context)
    (context / "app" / "main.py").write_text("print('changed')\n")
    after = pack(context)
    assert before.digest != after.digest and before.source_hash != after.source_hash
    (context / "notes.txt").write_text("ignored, so no change\n")
    assert pack(context).digest == after.digest


@pytest.mark.parametrize(
    "secret", ["config.env", ".env", ".env.local", "tls.pem", "sub/server.key", "id_rsa", "id_ecdsa", "keys/id_ed25519"]
)
def test_a_context_holding_a_secret_file_is_refused_naming_it(tmp_path: Path, secret: str) -> None:
    context = make_context(tmp_path / "ctx")
    (context / secret).parent.mkdir(parents=True, exist_ok=True)
    (context / secret).write_text("TOKEN=do-not-upload\n")
    with pytest.raises(BadRequest) as raised:
        pack(context)
    assert raised.value.lines() == [
        f"the build context {context} would upload secret-looking files: {secret}; add them to {context / '.dockerignore'}"
    ]
    (context / ".dockerignore").write_text(f"notes.txt\n{secret}\n")
    assert secret not in members(pack(context))  # excluded: fine


def test_the_repositorys_own_contexts_pass_the_secret_check() -> None:
    from pipeline.config import load_config
    from tests.helpers.config import SHIPPED_CONFIG

    config = load_config(SHIPPED_CONFIG, env={})
    for app in config.apps.values():
        rel = os.path.relpath(app.dockerfile, app.build_context)
        found = source.secret_files(source.context_files(app.build_context, dockerfile=rel))
        assert not found, (app.name, found)


def test_a_context_over_the_size_limit_is_one_line_before_any_upload(tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    (context / "blob.bin").write_bytes(os.urandom(1_500_000))  # incompressible
    spec = BuildSpec(dockerfile="Dockerfile", target="", repository="127.0.0.1:1/none")  # nothing listens there
    with pytest.raises(BadRequest) as raised:
        source.ship(request_for(spec), context, max_mb=1, say=print)
    [line] = raised.value.lines()
    assert line.startswith(f"the build context {context} packs to 1.5 MB, over [pipeline].max_source_mb = 1; ")
    assert line.endswith(f"exclude what the image does not need in {context / '.dockerignore'}")


def test_progress_is_reported_every_tenth_for_big_archives() -> None:
    lines: list[str] = []
    report = source._progress(10 * source.PROGRESS_OVER, lines.append)
    assert report is not None and source._progress(source.PROGRESS_OVER, lines.append) is None
    body = source.body(b"x" * (10 * source.PROGRESS_OVER), report)
    assert isinstance(body, io.BytesIO)
    while body.read(1_000_000):
        pass
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == [str(p) for p in range(10, 101, 10)]


def test_deploy_context_without_the_dockerfile_is_one_line_exit_2(tmp_path: Path) -> None:
    write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(tmp_path, "deploy", "--context", str(elsewhere))
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"--context: {elsewhere} has no Dockerfile (the Dockerfile of sample-worker, relative to its build context)"
    ]


def test_deploy_context_that_is_not_a_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = run(tmp_path, "deploy", "--context", str(tmp_path / "missing"))
    assert (result.returncode, result.stderr.splitlines()) == (2, [f"--context: {tmp_path / 'missing'} is not a directory"])


def test_deploy_context_with_image_is_refused(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = run(tmp_path, "deploy", "--context", str(tmp_path), "--image", "127.0.0.1:5000/x@sha256:" + "0" * 64)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "--context and --image exclude each other: --image names an image that is not built"
    ]
