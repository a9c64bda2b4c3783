#!/usr/bin/env python3
"""How many ARM requests does an ACR build cost? `python benchmarks/acr_bench.py [--builds N] [--seconds S] [--scale K]`.

Issue 22: ARM throttles per principal (token buckets: 250 reads refilled at 25 a second, 200
writes at 10 a second, in Azure's public cloud; bootstrap/azure_arm/throttle.py). The ACR
builder (pipeline/builders/acr.py, the `aks` target's build activity, run through temporalio's
ActivityEnvironment as tests/azure/test_acr_builder.py does) follows a run through its log
blob (storage, not ARM) and polls Runs_Get with back-off. This benchmark starts its own ARM
imitation (`bootstrap.azure_arm.start`, a temporary state directory, throttling on with Azure's
figures divided by `--scale`, 1 = Azure's own), then runs BUILDS builds at once, each held
`Running` for SECONDS (60: a one-minute build; a `runDelay` fault before the real docker
build) and prints, per build, the ARM requests counted by the imitation: reads (GET Runs_Get,
the builder's polls; target: at most 20 for a one-minute build), writes (scheduleRun,
listLogSasUrl), the 429s ARM answered (retried by azure-core below the builder) and the blob
reads (Get Blob Properties and ranged Get Blob of the log, which are not ARM). The build
context is a two-line Dockerfile FROM the registry's base (`127.0.0.1:5000/pipeline-base:bookworm`,
pushed by `bootstrap/stack up`). Like the other benchmarks it prints numbers and asserts none;
it exits 1 only when it could not measure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from temporalio.testing import ActivityEnvironment  # noqa: E402

from bootstrap.azure_arm import start  # noqa: E402
from pipeline import activities  # noqa: E402
from pipeline.azure import credentials  # noqa: E402
from tests.azure.pipeline_support import Heartbeats, build_input  # noqa: E402


def build(request: Any) -> tuple[Any, Heartbeats, float]:
    heartbeats = Heartbeats()
    env = ActivityEnvironment()
    env.on_heartbeat = heartbeats
    started = time.monotonic()
    built = env.run(activities.build_image, request)
    return built, heartbeats, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=1, help="builds run at once (default 1)")
    parser.add_argument("--seconds", type=float, default=60, help="how long each run stays Running (default 60)")
    parser.add_argument("--scale", type=float, default=1, help="ARM's bucket sizes and rates divided by this (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acr-bench-") as tmp:
        imitation = start(Path(tmp) / "arm")
        try:
            os.environ.update(imitation.env)
            credentials.reset()
            requests = []
            for n in range(args.builds):
                context = Path(tmp) / f"context{n}"
                context.mkdir()
                (context / "Dockerfile").write_text(
                    f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}} AS app\nRUN echo bench-{n}-{time.time_ns()}\n"
                )
                requests.append(build_input(imitation, context=context, target="app"))
            imitation.inject(kind="runDelay", seconds=args.seconds, count=args.builds)
            if args.scale != 1:
                imitation.inject(kind="throttle", scale=args.scale)
            before = len(imitation.requests()["log"])
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.builds) as pool:
                results = list(pool.map(build, requests))
            log = imitation.requests()["log"][before:]
        except Exception as exc:  # noqa: BLE001 - a benchmark that could not measure says why and exits 1
            print(f"could not measure: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            imitation.stop()
    reads, writes = [], []
    print(f"{args.builds} build(s) held Running {args.seconds:.0f}s, throttle scale {args.scale:g}")
    for _, heartbeats, seconds in results:
        [run_id] = heartbeats.run_ids()
        mine = [e for e in log if re.search(f"/(runs|logs)/{run_id}(/|$)", e["path"], re.IGNORECASE)]
        arm = [e for e in mine if e["path"].startswith("/subscriptions/")]
        reads.append(sum(1 for e in arm if e["method"] == "GET"))
        writes.append(sum(1 for e in arm if e["method"] != "GET"))
        print(
            f"  run {run_id}: {seconds:5.1f}s, ARM reads {reads[-1]}, ARM writes {writes[-1]} (+1 scheduleRun), "
            f"429s {sum(1 for e in arm if e['status'] == 429)}, blob reads {len(mine) - len(arm)}"
        )
    throttled = sum(1 for e in log if e["status"] == 429)
    print(
        f"ARM reads per build: median {statistics.median(reads):g}, max {max(reads)} (target <= 20 for a one-minute build); "
        f"429s answered in all: {throttled}"
    )
    from benchmarks.report import write_report

    write_report(
        "acr_bench",
        {
            "builds": args.builds,
            "held_running_s": args.seconds,
            "throttle_scale": args.scale,
            "build_seconds": [round(seconds, 1) for _, _, seconds in results],
            "arm_reads_per_build": reads,
            "arm_writes_per_build_besides_scheduleRun": writes,
            "arm_reads_per_build_median": statistics.median(reads),
            "arm_reads_per_build_max": max(reads),
            "arm_reads_target_for_a_one_minute_build": "<= 20",
            "arm_429s_answered": throttled,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
