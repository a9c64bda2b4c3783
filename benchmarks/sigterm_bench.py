#!/usr/bin/env python3
"""How soon does a worker process hear SIGTERM? `python benchmarks/sigterm_bench.py [--runs N]` prints one JSON object.

Why a script and not a test: like the other benchmarks, these are numbers to
watch (issue 11), not pass/fail facts; a loaded machine must not turn them into
flaky failures. It exits 0 whatever the numbers are (1 only when it could not
measure); `targets_met` says how they compare.

In a pod the worker is PID 1, and a SIGTERM that comes before its first
handler is lost (worker_health/early_sigterm.py). So what matters is the time
from the start of the process to `early_sigterm.install()`. For each image
entry point (`python -m pipeline worker`, `python -m sample_worker`) and for a
floor (`python -c` that installs a handler and nothing else: the interpreter's
own start-up, which no entry point can beat), RUNS times, interleaved:

- start the process (Popen, cwd the repository root like the images' /app,
  Temporal pointed at a port nothing listens on);
- read `SigCgt` in /proc/<pid>/status in a tight loop until the SIGTERM bit is
  set (tests.helpers.processes.catches_signal): the moment the handler exists;
- SIGKILL the process.

The JSON has the median, p90 and max milliseconds from Popen to the handler for
each, and each entry point's median over the floor's (what its imports before
the handler cost). Progress goes to stderr, the JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.processes import catches_signal, free_port  # noqa: E402

FLOOR = "floor (python -c, handler only)"
ENTRY_POINTS = {
    FLOOR: ["-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); time.sleep(60)"],
    "python -m pipeline worker": ["-m", "pipeline", "worker"],
    "python -m sample_worker": ["-m", "sample_worker"],
}
# The early-SIGTERM tests used to signal 0.15 s after Popen; the handler must come well before that.
TARGETS = {"p90_ms": 100.0, "over_floor_median_ms": 25.0}
GIVE_UP_SECONDS = 10.0


def log(message: str) -> None:
    print(f"[sigterm_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    """The caller's environment without its Temporal and pipeline settings; Temporal is a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        PIPELINE__PIPELINE__TASK_QUEUE=f"sigterm-bench-{uuid.uuid4().hex[:8]}",
        TEMPORAL_TASK_QUEUE=f"sigterm-bench-{uuid.uuid4().hex[:8]}",
    )
    return env


def time_to_handler(args: Sequence[str], env: dict[str, str]) -> float:
    """Milliseconds from Popen to the SIGTERM bit in the child's SigCgt; the child is killed either way."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not catches_signal(process.pid, signal.SIGTERM):
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited {process.returncode} before it handled SIGTERM")
            if time.perf_counter() - started > GIVE_UP_SECONDS:
                raise RuntimeError(f"{' '.join(args)} had no SIGTERM handler after {GIVE_UP_SECONDS:.0f}s")
        return (time.perf_counter() - started) * 1000
    finally:
        process.kill()
        process.wait()


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = statistics.quantiles(ordered, n=10, method="inclusive")[-1] if len(ordered) > 1 else ordered[0]
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(p90, 1),
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
    }


def run(runs: int) -> dict[str, Any]:
    env = child_env()
    samples: dict[str, list[float]] = {name: [] for name in ENTRY_POINTS}
    for i in range(runs):
        for name, args in ENTRY_POINTS.items():
            samples[name].append(time_to_handler(args, env))
        log(f"run {i + 1}/{runs}: " + ", ".join(f"{n.split(' (')[0]} {v[-1]:.1f} ms" for n, v in samples.items()))
    stats = {name: summary(values) for name, values in samples.items()}
    floor = stats[FLOOR]["median"]
    over_floor = {name: round(s["median"] - floor, 1) for name, s in stats.items() if name != FLOOR}
    entry_points = [name for name in ENTRY_POINTS if name != FLOOR]
    return {
        "runs": runs,
        "cpus": os.cpu_count(),
        "popen_to_sigterm_handler_ms": stats,
        "median_over_floor_ms": over_floor,
        "targets": TARGETS,
        "targets_met": {
            "p90_ms": all(stats[n]["p90"] <= TARGETS["p90_ms"] for n in entry_points),
            "over_floor_median_ms": all(over_floor[n] <= TARGETS["over_floor_median_ms"] for n in entry_points),
        },
        "raw_ms": {name: [round(v, 1) for v in values] for name, values in samples.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="starts of each entry point (default 15)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    try:
        result = run(max(1, args.runs))
    except (RuntimeError, OSError) as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        return 1
    result["loadavg_1m_before"] = round(load, 2)
    print(json.dumps(result, indent=2))
    from benchmarks.report import write_report

    write_report("sigterm_bench", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
