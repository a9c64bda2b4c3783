"""What every Temporal worker image shares, stdlib only; each image copies this package beside its own.

- `worker_health.early_sigterm`: SIGTERM heard from a process's first instruction;
- `worker_health.server`: `/healthz` and `/readyz` for the Kubernetes probes
  (HealthServer, HealthState).

This file imports nothing, and must stay so: an entry point's
`from worker_health import early_sigterm` runs it before the handler exists,
and every millisecond spent here is one in which a SIGTERM would be lost
(issue 11; `benchmarks/sigterm_bench.py` measures it).
"""
