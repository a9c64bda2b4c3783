#!/usr/bin/env python3
"""What does a second platform cost? `python benchmarks/platform_bench.py [--runs N] [--change code|deps|none]`.

Issue 16: the wall time of the build activity (`pipeline.activities.build_image`,
target local, run through temporalio's ActivityEnvironment as
tests/test_multiplatform_build.py does) for the sample worker (the repository
root's build context, Dockerfile target `sample-worker`, build arg
BASE_IMAGE=127.0.0.1:5000/pipeline-base:bookworm) with platforms
["linux/amd64"] and with ["linux/amd64", "linux/arm64"], median of RUNS (3)
each, the two kinds interleaved after one untimed warm-up build of each.
Like the other benchmarks it prints numbers and asserts none; it exits 1 only
when it could not measure. Needs the local stack (`bootstrap/stack up`: Docker,
the registry with the multi-platform base index, QEMU for arm64).

Every run is a new build (its own source hash, so its own tag: nothing is
reused from the registry): the source carries a unique build arg BENCH_RUN,
and, with `--change code` (the default), the copy of the context it is built
from differs by one line appended to sample_worker/__init__.py, which is what a
real code change costs. What the Docker engine may take from its cache, and
with `--change code` does (each build's steps are counted from the engine's
own output, and the steps run again are printed):

- the base image (already local; a multi-platform build pulls it for each
  platform, which checks the registry and re-points the local tag);
- the `deps` stage (the venv and the offline pip install of the wheelhouse)
  and the sample-worker stage's `RUN groupadd/useradd`, all before the first
  COPY of sample_worker/;
- built again: `COPY sample_worker/` and every step after it, the image's
  labels, and the push of its new layers; a two-platform build also pushes
  its OCI image index.

With `--change deps` the appended line is a comment in
sample_worker/requirements.txt: the `deps` stage's COPY and its `RUN python3
-m venv … pip install` run again (under QEMU for arm64), then everything after
`COPY --from=deps` in the sample-worker stage: what a dependency change costs.
With `--change none` only the build arg differs (it is not consumed by the
Dockerfile, so every engine step is cached but the final LABEL): the floor of
a rebuild, the build activity's own fixed costs (fetch the source, pull, push).

The context is the repository root's, as .dockerignore lets it through
(`context_files`), copied once to a temporary directory so that the
repository itself is never modified. Each build's source is uploaded (untimed)
before its activity runs, as `pipeline deploy` does. At the end the local
tags of the benchmark's repository are removed from the engine (the images
pushed to the registry stay, like every test's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import docker.api.build  # noqa: E402
import docker.errors  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from pipeline import activities  # noqa: E402
from pipeline.builders.local import context_files  # noqa: E402
from pipeline.models import BuildImageInput, BuildSpec, BuiltImage  # noqa: E402
from tests.helpers.source import ship_spec  # noqa: E402

REGISTRY = "127.0.0.1:5000"
BASE_IMAGE = f"{REGISTRY}/pipeline-base:bookworm"
TARGET = "sample-worker"
ONE = ("linux/amd64",)
TWO = ("linux/amd64", "linux/arm64")
# The file each run changes (a line appended), by --change: "code" a module of the worker, "deps" its requirements.
CHANGED = {"code": "sample_worker/__init__.py", "deps": "sample_worker/requirements.txt"}


def log(message: str) -> None:
    print(f"[platform_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- the engine's own account of each build


@dataclass
class Steps:
    """One engine build (one platform): its Dockerfile steps, and which of them the engine's cache answered."""

    platform: str
    steps: list[str] = field(default_factory=list)
    cached: set[int] = field(default_factory=set)

    def counted(self) -> list[int]:
        """The steps the cache can answer: not FROM, nor an ARG before the first FROM (those never say "Using cache")."""
        first_from = next((i for i, s in enumerate(self.steps) if s.upper().startswith("FROM")), 0)
        return [i for i, s in enumerate(self.steps) if i >= first_from and not s.upper().startswith("FROM")]

    def rebuilt(self) -> list[str]:
        """The steps run again."""
        return [self.steps[i] for i in self.counted() if i not in self.cached]


BUILDS: list[Steps] = []
_original_build = docker.api.build.BuildApiMixin.build


def _teed_build(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """The engine's build stream, unchanged, with each step and its "Using cache" noted in BUILDS."""
    record = Steps(kwargs.get("platform") or "engine default")
    BUILDS.append(record)
    for chunk in _original_build(self, *args, **kwargs):
        line = str(chunk.get("stream", "")).strip() if isinstance(chunk, dict) else ""
        if line.startswith("Step ") and " : " in line:
            record.steps.append(line.split(" : ", 1)[1])
        elif line == "---> Using cache" and record.steps:
            record.cached.add(len(record.steps) - 1)
        yield chunk


docker.api.build.BuildApiMixin.build = _teed_build  # type: ignore[method-assign]


# ----------------------------------------------------------------- one build


@dataclass
class Measurement:
    kind: str  # "one" | "two"
    seconds: float
    built: BuiltImage
    steps: list[Steps]


class Bench:
    def __init__(self, runs: int, change: str) -> None:
        self.runs = runs
        self.change = change
        self.app = f"platform-bench-{uuid.uuid4().hex[:6]}"
        self.repository = f"{REGISTRY}/{self.app}"
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.app}-"))
        self.context = self.directory / "context"
        self.changed = CHANGED.get(change, "")

    def copy_context(self) -> int:
        files = context_files(REPO_ROOT, dockerfile="Dockerfile")
        for rel in files:
            (self.context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, self.context / rel)
        shutil.copy2(REPO_ROOT / ".dockerignore", self.context / ".dockerignore")
        return len(files)

    def request(self, platforms: tuple[str, ...], run_id: str) -> BuildImageInput:
        """A new source: BENCH_RUN=<run_id>, and (change "code" or "deps") a comment line appended to CHANGED's file."""
        if self.changed:
            original = (REPO_ROOT / self.changed).read_bytes()
            (self.context / self.changed).write_bytes(original + f"# platform_bench run {run_id}\n".encode())
        spec = BuildSpec(
            dockerfile="Dockerfile",
            target=TARGET,
            repository=self.repository,
            build_args={"BASE_IMAGE": BASE_IMAGE, "BENCH_RUN": run_id},
            platforms=platforms,
        )
        return BuildImageInput(app=self.app, target="local", build=ship_spec(spec, self.context, app=self.app))

    def build(self, kind: str) -> Measurement:
        platforms = ONE if kind == "one" else TWO
        request = self.request(platforms, uuid.uuid4().hex)
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: None
        first = len(BUILDS)
        started = time.monotonic()
        built = env.run(activities.build_image, request)
        seconds = time.monotonic() - started
        assert isinstance(built, BuiltImage)
        if built.reused:
            raise RuntimeError(f"{built.repository}:{built.tag} was reused, not built: the run's source was not new")
        return Measurement(kind, seconds, built, BUILDS[first:])

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        try:
            client = docker.from_env(timeout=120)
        except docker.errors.DockerException as exc:
            log(f"cleanup: no Docker engine ({exc}); local tags of {self.repository} left")
            return
        removed = 0
        try:
            for image in client.images.list(name=self.repository):
                for tag in image.tags:
                    if tag.startswith(f"{self.repository}:"):
                        try:
                            client.images.remove(tag)
                            removed += 1
                        except docker.errors.DockerException as exc:
                            log(f"cleanup: could not remove {tag}: {exc}")
        finally:
            client.close()
        log(f"cleanup: removed {removed} local tags of {self.repository} (its images in the registry stay)")


def describe(m: Measurement) -> str:
    """One line: platforms, seconds, and the engine's cached/rebuilt steps per platform."""
    platforms = "+".join(p.split("/")[1] for p in (ONE if m.kind == "one" else TWO))
    parts = []
    for s in m.steps:
        counted = s.counted()
        arch = s.platform.split("/")[-1]
        parts.append(f"{arch}: {len([i for i in counted if i in s.cached])}/{len(counted)} steps cached")
    return f"{platforms}: {m.seconds:.2f} s ({'; '.join(parts)}; {m.built.repository}:{m.built.tag})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed builds of each kind (default 3)")
    parser.add_argument(
        "--change",
        choices=("code", "deps", "none"),
        default="code",
        help="what each run changes besides a build arg: code (default), a line of sample_worker/__init__.py; "
        "deps, a line of sample_worker/requirements.txt (the pip install runs again); none, nothing",
    )
    args = parser.parse_args()
    bench = Bench(args.runs, args.change)
    load_before = os.getloadavg()[0]
    try:
        log(f"copied {bench.copy_context()} context files of {REPO_ROOT} to {bench.context}")
        print(f"build activity, target local, {TARGET} from the repository root's context, BASE_IMAGE={BASE_IMAGE}")
        print(
            "each run a new source: unique BENCH_RUN build arg"
            + (f", plus a comment line appended to {CHANGED[args.change]}" if args.change in CHANGED else " only")
        )
        for kind in ("one", "two"):
            log(f"warm-up: {'one platform' if kind == 'one' else 'two platforms'}, untimed")
            print(f"warm-up (untimed) {describe(bench.build(kind))}", flush=True)
        measured: dict[str, list[Measurement]] = {"one": [], "two": []}
        for run in range(1, args.runs + 1):
            for kind in ("one", "two"):
                m = bench.build(kind)
                measured[kind].append(m)
                print(f"run {run}/{args.runs} {describe(m)}", flush=True)
        rebuilt = {s.platform.split("/")[-1]: s.rebuilt() for s in measured["two"][-1].steps}
        for arch, steps in rebuilt.items():
            print(f"rebuilt by the engine for {arch} (the rest cached): " + " | ".join(steps))
        one = statistics.median(m.seconds for m in measured["one"])
        two = statistics.median(m.seconds for m in measured["two"])
        print(
            f"second platform (linux/arm64) costs +{two - one:.1f} s over linux/amd64 alone "
            f"(median of {args.runs}: one platform {one:.1f} s, two platforms {two:.1f} s; "
            f"change: {args.change}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)"
        )
        from benchmarks.report import write_report

        write_report(
            "platform_bench" if args.change == "code" else f"platform_bench-{args.change}",
            {
                "change": args.change,
                "runs": args.runs,
                "one_platform_s": [round(m.seconds, 2) for m in measured["one"]],
                "two_platforms_s": [round(m.seconds, 2) for m in measured["two"]],
                "one_platform_s_median": round(one, 1),
                "two_platforms_s_median": round(two, 1),
                "second_platform_cost_s": round(two - one, 1),
                "rebuilt_steps": {arch: " | ".join(steps) for arch, steps in rebuilt.items()},
                "loadavg_1m_before": round(load_before, 2),
            },
        )
        return 0
    except Exception as exc:  # a benchmark reports why it could not measure, in one line
        log(f"could not measure: {type(exc).__name__}: {exc}")
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
