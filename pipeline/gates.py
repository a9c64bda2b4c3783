"""Gates: checks a deployment must pass that only Temporal can give. Their activities:

    collect_replay_targets   the executions the new code will run: every open workflow on the app's task
                             queue (a versioned app: not the PINNED ones, which finish on their own
                             version) and the last N closed ones, from visibility
    run_replay_gate          a one-off Job of the candidate image replays them with the SDK's Replayer,
                             through the replay runner the pipeline delivers (pipeline/replay_runner.py,
                             mounted from a ConfigMap: nothing is asked of the image but temporalio);
                             the verdict comes back as the pod's termination message, never a history payload
    run_gate_workflow        a gate workflow that must succeed on the new version (pinned to it on a
                             versioned app), within its timeout

The Job and its ConfigMap are named after the build (`<app>-replay-<short build>`), so a retried
activity finds the Job it started instead of starting a second; both are deleted once read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import WorkflowFailureError
from temporalio.common import PinnedVersioningOverride, WorkerDeploymentVersion
from temporalio.exceptions import ApplicationError

from pipeline import clusters, kube, render
from pipeline.errors import GateFailed, PipelineError
from pipeline.keepalive import Keepalive
from pipeline.models import (
    AnalysisInput,
    GateResult,
    GateSpec,
    GateWorkflowInput,
    ReplayJobInput,
    ReplayResult,
    ReplayTarget,
    ReplayTargetsInput,
)
from pipeline.temporal_client import connect as temporal_connect

RUNNER = Path(__file__).with_name("replay_runner.py")
RUNNER_MOUNT = "/pipeline-replay"
VERDICT_PREFIX = "PIPELINE-REPLAY-VERDICT "
GATE_COMPONENT = "replay-gate"


def _application_error(exc: PipelineError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


# ----- replay -----


@activity.defn
async def collect_replay_targets(request: ReplayTargetsInput) -> list[ReplayTarget]:
    """Open executions on the task queue (not PINNED ones of a versioned app) and the last N closed ones."""
    client = await temporal_connect(request.temporal)
    base = f"TaskQueue = '{_quote(request.task_queue)}'"
    open_query = f"{base} AND ExecutionStatus = 'Running'"
    if request.exclude_pinned:
        open_query += " AND (TemporalWorkflowVersioningBehavior IS NULL OR TemporalWorkflowVersioningBehavior != 'Pinned')"
    targets: list[ReplayTarget] = []
    async for wf in client.list_workflows(open_query, limit=request.limit):
        targets.append(ReplayTarget(wf.id, wf.run_id, wf.workflow_type))
    if request.closed_histories:
        closed = ListWorkflowExecutionsRequest(
            namespace=request.temporal.namespace,
            # newest first is visibility's own order for closed executions (SQL visibility refuses ORDER BY)
            query=f"{base} AND ExecutionStatus != 'Running'",
            page_size=request.closed_histories,
        )
        resp = await client.workflow_service.list_workflow_executions(closed)
        targets += [
            ReplayTarget(e.execution.workflow_id, e.execution.run_id, e.type.name)
            for e in resp.executions[: request.closed_histories]
        ]
    return targets


def replay_job_name(app: str, build_id: str) -> str:
    return f"{app}-replay-{render.version_suffix(build_id)}"


def replay_objects(request: ReplayJobInput) -> list[dict[str, Any]]:
    """The ConfigMap (runner + the executions to replay) and the Job of the candidate image."""
    app, name = request.app, replay_job_name(request.app.name, request.build_id)
    labels = {
        "app.kubernetes.io/name": app.name,
        "app.kubernetes.io/instance": app.name,
        "app.kubernetes.io/component": GATE_COMPONENT,
        "app.kubernetes.io/version": render.label_value(request.build_id),
        "app.kubernetes.io/managed-by": render.MANAGED_BY,
    }
    meta = {"name": name, "namespace": app.namespace, "labels": labels}
    workflows = {"workflows": [{"workflow_id": t.workflow_id, "run_id": t.run_id} for t in request.targets]}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"replay_runner.py": RUNNER.read_text(), "workflows.json": json.dumps(workflows)},
    }
    settings = render.temporal_settings(app, request.temporal)
    env: list[dict[str, Any]] = [
        {"name": key, "value": value}
        for key, value in settings.items()
        if key in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE") or key.startswith("TEMPORAL_TLS")  # TLS and the mTLS files
    ]
    env += [
        {"name": "REPLAY_MODULES", "value": ",".join(app.replay_modules)},
        {"name": "REPLAY_DEADLINE_SECONDS", "value": str(max(1, request.gate.timeout_seconds - 10))},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    if request.temporal.api_key_secret is not None:  # a reference only: the value stays in the cluster
        ref = request.temporal.api_key_secret
        env.append({"name": "TEMPORAL_API_KEY", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": render.RUN_AS_ID,
            "runAsGroup": render.RUN_AS_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "replay",
                "image": request.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", f"{RUNNER_MOUNT}/replay_runner.py"],
                "env": env,
                "volumeMounts": [
                    {"name": "replay", "mountPath": RUNNER_MOUNT, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "resources": {
                    "requests": {"cpu": app.resources.cpu_request, "memory": app.resources.memory_request},
                    "limits": {"cpu": app.resources.cpu_limit, "memory": app.resources.memory_limit},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [{"name": "replay", "configMap": {"name": name}}, {"name": "tmp", "emptyDir": {}}],
    }
    tls_volumes, tls_mounts = render.tls_volume(request.temporal)  # [temporal].tls_secret, as the app's pods mount it
    pod_spec["volumes"] += tls_volumes
    pod_spec["containers"][0]["volumeMounts"] += tls_mounts
    if app.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": app.image_pull_secret}]
    if app.architecture:
        pod_spec["nodeSelector"] = {render.ARCH_NODE_LABEL: app.architecture}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": request.gate.timeout_seconds,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return [config_map, job]


def parse_verdict(log: str) -> dict[str, Any] | None:
    for line in reversed(log.splitlines()):
        if line.startswith(VERDICT_PREFIX):
            try:
                found = json.loads(line[len(VERDICT_PREFIX) :])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


def _job_finished(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    done = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    return bool(done & {"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"}) or bool(
        status.get("succeeded") or status.get("failed")
    )


@activity.defn
def run_replay_gate(request: ReplayJobInput) -> GateResult:
    """Replay the targets in a Job of the candidate image; the verdict per workflow id."""
    gate, app = request.gate, request.app
    if not request.targets:
        return GateResult(gate.name, gate.kind, True, "nothing to replay: no open workflow on the task queue")
    name = replay_job_name(app.name, request.build_id)
    deadline = time.monotonic() + gate.timeout_seconds + 60
    try:
        with Keepalive(activity.heartbeat), clusters.connect(request.cluster) as kc:
            try:
                if kube.get_object(kc, api_version="batch/v1", kind="Job", namespace=app.namespace, name=name) is None:
                    kube.server_side_apply(
                        kc, [render.namespace(name=app.namespace), *replay_objects(request)], field_manager=kube.FIELD_MANAGER
                    )
                return _await_verdict(kc, request, name, deadline)
            finally:
                kube.delete_object(kc, api_version="batch/v1", kind="Job", namespace=app.namespace, name=name)
                kube.delete_object(kc, api_version="v1", kind="ConfigMap", namespace=app.namespace, name=name)
    except PipelineError as exc:
        raise _application_error(exc) from exc


def _await_verdict(kc: kube.KubeClient, request: ReplayJobInput, name: str, deadline: float) -> GateResult:
    gate, app = request.gate, request.app
    while True:
        job = kube.get_object(kc, api_version="batch/v1", kind="Job", namespace=app.namespace, name=name) or {}
        if _job_finished(job):
            break
        if time.monotonic() > deadline:
            raise GateFailed(f"gate {gate.name}: the replay Job {name} did not finish within {gate.timeout_seconds}s")
        activity.heartbeat({"job": name, "replaying": len(request.targets)})
        time.sleep(0.5)
    # The verdict is the runner's termination message (it writes it to /dev/termination-log): read from
    # the pod's status, so the pipeline needs no right to read logs.
    pods = kube.list_pods(kc, namespace=app.namespace, selector={"job-name": name})
    log = "\n".join(c.message for p in pods for c in p.containers if c.message)
    verdict = parse_verdict(log)
    if verdict is None:
        last = pods[0].containers[0].last_message or pods[0].containers[0].message if pods and pods[0].containers else ""
        why = (job.get("status") or {}).get("conditions") or []
        reason = next((c.get("message") or c.get("reason") for c in why if c.get("status") == "True"), "") or last
        raise GateFailed(
            f"gate {gate.name}: the replay runner in {request.image} gave no verdict ({reason or 'no output'}); "
            "does the image have python and temporalio?"
        )
    return _result(request, verdict)


def _result(request: ReplayJobInput, verdict: dict[str, Any]) -> GateResult:
    gate = request.gate
    results = tuple(
        ReplayResult(
            workflow_id=str(r.get("workflow_id", "")),
            run_id=str(r.get("run_id", "")),
            workflow_type=str(r.get("workflow_type", "")),
            verdict=str(r.get("verdict", "")),
            message=str(r.get("message", ""))[:500],
        )
        for r in verdict.get("results") or []
    )
    if verdict.get("error"):
        return GateResult(gate.name, gate.kind, False, f"replay could not run: {str(verdict['error'])[:300]}", results)
    bad = [r for r in results if r.verdict in ("nondeterministic", "failed")]
    skipped = [r for r in results if r.verdict == "skipped"]
    if bad:
        first = bad[0]
        summary = (
            f"{len(bad)} of {len(results)} workflows would fail on the new code: {first.workflow_id} ({first.workflow_type}): "
            f"{first.message}"
        )
        return GateResult(gate.name, gate.kind, False, summary[:1000], results)
    if skipped:
        return GateResult(
            gate.name,
            gate.kind,
            False,
            f"{len(skipped)} of {len(results)} workflows not replayed within {gate.timeout_seconds}s",
            results,
        )
    return GateResult(
        gate.name, gate.kind, True, f"{len(results)} workflows replayed on the new code, all deterministic", results
    )


# ----- gate workflow -----


@activity.defn
async def run_gate_workflow(request: GateWorkflowInput) -> GateResult:
    """Start the gate workflow (pinned to the new version on a versioned app) and wait for its result."""
    gate = request.gate
    client = await temporal_connect(request.temporal)
    args = [json.loads(gate.input)] if gate.input else []
    override = (
        PinnedVersioningOverride(WorkerDeploymentVersion(request.pinned_deployment, request.pinned_build))
        if request.pinned_build
        else None
    )
    handle = await client.start_workflow(
        gate.workflow_type,
        args=args,
        id=request.workflow_id,
        task_queue=request.task_queue,
        execution_timeout=timedelta(seconds=gate.timeout_seconds),
        versioning_override=override,
        id_conflict_policy=_USE_EXISTING,
        id_reuse_policy=_REJECT_DUPLICATE,
        memo={"ramp_percent": request.ramp_percent} if request.ramp_percent >= 0 else None,
    )
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        return GateResult(
            gate.name, gate.kind, False, f"gate workflow {request.workflow_id} ({gate.workflow_type}) failed: {cause}"[:1000]
        )
    return GateResult(gate.name, gate.kind, True, f"gate workflow {request.workflow_id} ({gate.workflow_type}) succeeded")


# ----- analysis -----

_FAILED = "ExecutionStatus IN ('Failed', 'TimedOut')"


async def _count(client: Any, namespace: str, query: str) -> int:
    from temporalio.api.workflowservice.v1 import CountWorkflowExecutionsRequest

    resp = await client.workflow_service.count_workflow_executions(
        CountWorkflowExecutionsRequest(namespace=namespace, query=query)
    )
    return int(resp.count)


def judge_analysis(gate: GateSpec, new: tuple[int, int], baseline: tuple[int, int]) -> tuple[bool, str]:
    """(ok, summary) from (closed, failed) counts: refused when the new version has at least min_samples closed
    workflows and more than max_failed of them failed, or its failure rate exceeds the baseline's by more than
    max_failure_rate_delta; fewer samples are inconclusive, which passes and says so."""
    (total, failed), (base_total, base_failed) = new, baseline
    rate = failed / total if total else 0.0
    base_rate = base_failed / base_total if base_total else 0.0
    said = (
        f"new version: {failed} of {total} closed workflows failed ({rate:.0%}); "
        f"baseline: {base_failed} of {base_total} ({base_rate:.0%})"
    )
    if total < gate.min_samples:
        return True, f"inconclusive, passed: {said}; fewer than min_samples = {gate.min_samples}"
    if failed > gate.max_failed:
        return False, f"{said}: more than max_failed = {gate.max_failed}"
    if rate - base_rate > gate.max_failure_rate_delta:
        return (
            False,
            f"{said}: the rate is {rate - base_rate:+.0%} over the baseline, above max_failure_rate_delta = {gate.max_failure_rate_delta:g}",
        )
    return True, said


@activity.defn
async def run_analysis_gate(request: AnalysisInput) -> GateResult:
    """Wait out the soak window (heartbeating), then count closed and failed workflows of both sides."""
    import asyncio

    gate = request.gate
    deadline = time.monotonic() + request.soak_seconds
    while time.monotonic() < deadline:
        activity.heartbeat({"soaking": round(deadline - time.monotonic())})
        await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    client = await temporal_connect(request.temporal)
    ns, base = request.temporal.namespace, f"TaskQueue = '{_quote(request.task_queue)}'"
    if request.new_build:  # versioned: by deployment version, both sides over the same window
        new_q = f"{base} AND TemporalWorkerDeploymentVersion = '{_quote(request.deployment_name + ':' + request.new_build)}'"
        if request.baseline_build:
            base_q = (
                f"{base} AND TemporalWorkerDeploymentVersion = '{_quote(request.deployment_name + ':' + request.baseline_build)}'"
            )
        else:
            base_q = f"{base} AND TemporalWorkerDeploymentVersion IS NULL"
        new_q += f" AND CloseTime > '{request.window_start}'"
        base_q += f" AND CloseTime > '{request.window_start}'"
    else:  # rolling: every pod is new since window_start; the baseline is the window before the deployment
        new_q = f"{base} AND CloseTime > '{request.window_start}'"
        base_q = f"{base} AND CloseTime > '{request.baseline_start}' AND CloseTime < '{request.baseline_end}'"
    counts = [await _count(client, ns, q) for q in (new_q, f"{new_q} AND {_FAILED}", base_q, f"{base_q} AND {_FAILED}")]
    ok, summary = judge_analysis(gate, (counts[0], counts[1]), (counts[2], counts[3]))
    return GateResult(gate.name, gate.kind, ok, summary)


def _policies() -> tuple[Any, Any]:
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    return WorkflowIDConflictPolicy.USE_EXISTING, WorkflowIDReusePolicy.REJECT_DUPLICATE


_USE_EXISTING, _REJECT_DUPLICATE = _policies()

ALL: list[Callable[..., object]] = [collect_replay_targets, run_replay_gate, run_gate_workflow, run_analysis_gate]
