"""`pipeline doctor [APP]`: what a deployment of APP needs, checked one thing at a time, as data.

    checks = run(config_or_error, "sample-worker")    # or: await run_checks(config, app)
    for check in checks:
        print("\\n".join(format_check(check)))

Each check is a small function that returns one `Check` (ok, FAIL with the concrete
fix, or skip saying why), in this order: the config, Temporal reachable, its
namespace, the API key, the registry, the cluster and the pipeline's verbs there,
the pipeline worker polling its queue, the app's pods, the app's queue pollers,
the queue's backlog. A check that needs what an earlier one could not get (a
Temporal client, a cluster) skips, naming that check. Nothing here raises: any
error becomes its check's FAIL line. Secret values are never read into a line:
the API key variable and the Secret are shown by name, the Secret's key by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueKind
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pipeline import clusters, kube, render
from pipeline.config import AppConfig, PipelineConfig
from pipeline.diagnose import format_sightings, where_seen
from pipeline.errors import ConfigError, PipelineError
from pipeline.inputs import app_spec, cluster_ref, temporal_target
from pipeline.models import Poller, RenderInput
from pipeline.temporal_client import connect as temporal_connect, run as run_async
from pipeline.verify import QUEUE_TYPES, as_poller, describe_pollers, polled_since

OK, FAIL, SKIP = "ok", "FAIL", "skip"

CONFIG = "config"
TEMPORAL = "temporal"
NAMESPACE = "namespace"
API_KEY = "tls/api key"
REGISTRY = "registry"
AZURE_ROLES = "azure roles"
CLUSTER = "cluster"
PIPELINE_WORKER = "pipeline worker"
PODS = "pods"
POLLERS = "pollers"
BACKLOG = "backlog"
NAMES = (CONFIG, TEMPORAL, NAMESPACE, API_KEY, REGISTRY, AZURE_ROLES, CLUSTER, PIPELINE_WORKER, PODS, POLLERS, BACKLOG)

CONNECT_TIMEOUT = 5.0  # seconds to reach Temporal
RPC_TIMEOUT = timedelta(seconds=5)  # each Temporal call
POLLERS_TIMEOUT = 10.0  # describe_pollers: 2 queue types x every partition
REGISTRY_TIMEOUT = 3.0
# A live worker starts a long poll (which records its access) at least every ~70 s; Temporal lists
# a poller for minutes after it stopped.
LIVE_WINDOW = timedelta(seconds=120)
LOG_LINES = 5
LOGGED_PODS = 3  # the crashing pods whose log lines are shown
# The placeholder a dry run renders: a valid digest reference that is never pulled.
PLACEHOLDER_IMAGE = "registry/app@sha256:" + "0" * 64
PLACEHOLDER_BUILD_ID = "doctor"
# A container waiting with one of these is crashing; with one of START_FAILURES it cannot start.
CRASH_REASONS = frozenset({"CrashLoopBackOff", "Error", "RunContainerError", "OOMKilled"})
START_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAIL or SKIP
    detail: str
    fix: str = ""  # FAIL only: the concrete fix
    extra_lines: tuple[str, ...] = ()  # printed indented under the line (e.g. a crashing pod's last log lines)


def format_check(check: Check) -> list[str]:
    """The check as printed: `ok    temporal         127.0.0.1:7233 answers ...`, `FAIL ... — fix: ...`, then its extra lines."""
    line = f"{check.status:<4}  {check.name:<15}  {check.detail}"
    if check.status == FAIL and check.fix:
        line += f" — fix: {check.fix}"
    return [line, *(f"      {extra}" for extra in check.extra_lines)]


def failed(checks: Iterable[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def run(config: PipelineConfig | ConfigError, app: str | None = None) -> list[Check]:
    """`run_checks` to the end, for the CLI."""
    return run_async(run_checks(config, app))


async def run_checks(config: PipelineConfig | ConfigError, app: str | None = None) -> list[Check]:
    """Every check in order; `config` may be the ConfigError loading it raised (then the others skip)."""
    if isinstance(config, ConfigError):
        return _config_failed(config, source="")
    try:
        app_config = config.app(app)
    except ConfigError as error:
        return _config_failed(error, source=config.source)
    state = _State(config=config, app=app_config)
    checks = [Check(CONFIG, OK, f"{config.path} (target {config.target}, app {app_config.name})")]
    try:
        for name, step in _STEPS:
            checks.append(await _guarded(name, step, state))
    finally:
        if state.kc is not None:
            state.kc.close()
    return checks


def _config_failed(error: ConfigError, *, source: str) -> list[Check]:
    where = source or "the config file"
    fix = f"correct {where} as said (`pipeline config` shows what the pipeline reads)"
    checks = [Check(CONFIG, FAIL, "; ".join(error.lines()), fix=fix)]
    return checks + [Check(name, SKIP, "the config is not valid") for name in NAMES[1:]]


@dataclass
class _State:
    """What the checks found that later checks need."""

    config: PipelineConfig
    app: AppConfig
    client: Client | None = None
    no_temporal: str = "Temporal was not reached"  # why the Temporal checks skip
    namespace_ok: bool = False
    kc: kube.KubeClient | None = None
    kube_problem: str = ""  # set once connecting to the cluster failed
    kube_tried: bool = False
    kube_error: PipelineError | None = None  # what connecting to the cluster raised
    cluster_ok: bool = False  # reachable, namespace there, every verb allowed
    pods_readable: bool = False  # reachable and the namespace there: the pods check may still list them
    pods: list[kube.PodInfo] | None = None
    crashing: dict[str, str] = field(default_factory=dict)
    app_pollers: list[Poller] | None = None

    @property
    def namespace(self) -> str:
        return self.config.temporal.namespace

    @property
    def k8s_namespace(self) -> str:
        return self.config.kubernetes.namespace

    def temporal_skip(self, name: str) -> Check | None:
        """The skip line of a check that needs Temporal and its namespace, or None when both are there."""
        if self.client is None:
            return Check(name, SKIP, f"{self.no_temporal} (see {TEMPORAL})")
        if not self.namespace_ok:
            return Check(name, SKIP, f"namespace {self.namespace} is not usable (see {NAMESPACE})")
        return None

    def cluster(self) -> kube.KubeClient | None:
        """The cluster's client (made once); None with `kube_problem` saying why."""
        if not self.kube_tried:
            self.kube_tried = True
            try:
                self.kc = clusters.connect(cluster_ref(self.config), patient=True)
            except PipelineError as error:
                self.kube_error = error
                self.kube_problem = _server_message(error)
        return self.kc


Step = Callable[[_State], Awaitable[Check]]


async def _guarded(name: str, step: Step, state: _State) -> Check:
    try:
        return await step(state)
    except PipelineError as error:
        return Check(name, FAIL, _one_line(error.message))
    except RPCError as error:
        return Check(name, FAIL, f"Temporal answered {error.status.name}: {_one_line(error.message)}")
    except TimeoutError:
        return Check(name, FAIL, f"no answer within {POLLERS_TIMEOUT:.0f} s (Temporal or the cluster is overloaded or hanging)")
    except Exception as error:  # a doctor never ends in a traceback
        return Check(name, FAIL, f"unexpected {type(error).__name__}: {_one_line(str(error))}")


# ----- 2. Temporal reachable -----


async def check_temporal(state: _State) -> Check:
    t = state.config.temporal
    if t.api_key_env and not os.environ.get(t.api_key_env):
        state.no_temporal = f"not connected: the API key variable {t.api_key_env} is unset"
        return Check(TEMPORAL, SKIP, f"{t.address}: not tried without the API key ({t.api_key_env} is unset, see {API_KEY})")
    try:
        client = await asyncio.wait_for(temporal_connect(temporal_target(state.config)), CONNECT_TIMEOUT)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=RPC_TIMEOUT)
    except TimeoutError:
        problem = f"no answer within {CONNECT_TIMEOUT:.0f} s"
    except PipelineError as error:
        problem = connect_problem(str(error.__cause__ or error.message))
    except RPCError as error:
        problem = f"{error.status.name}: {_one_line(error.message)}"
    else:
        state.client = client
        tls = " over TLS" if t.tls or t.api_key_env or t.tls_client_cert_path else ""
        tls += " with a client certificate" if t.tls_client_cert_path else ""
        return Check(TEMPORAL, OK, f"{t.address} answers{tls} (Temporal server {info.server_version or '?'})")
    state.no_temporal = f"Temporal at {t.address} is unreachable"
    if problem.startswith("TLS"):
        fix = (
            f"make [temporal].tls (TEMPORAL_TLS) match what {t.address} speaks; an API key ([temporal].api_key_env) "
            "turns TLS on, so a plain-text dev server needs neither"
        )
    elif state.config.target == "local":
        fix = "start the local stack (`bootstrap/stack up`), or point TEMPORAL_ADDRESS / [temporal].address at a running Temporal"
    else:
        fix = "point TEMPORAL_ADDRESS / [temporal].address at a reachable Temporal frontend (host:port)"
    return Check(TEMPORAL, FAIL, f"{t.address}: {problem}", fix=fix)


def connect_problem(message: str) -> str:
    """The SDK's connect error in a few words."""
    lower = message.lower()
    if "connection refused" in lower:
        return "connection refused"
    if "dns error" in lower or "failed to lookup" in lower or "name or service not known" in lower:
        return "cannot resolve the host name"
    if "timed out" in lower or "deadline" in lower:
        return "timed out"
    if any(word in lower for word in ("invalidcontenttype", "tls", "certificate", "handshake", "ssl")):
        return f"TLS handshake failed ({_one_line(message, limit=160)})"
    return _one_line(message, limit=200)


# ----- 3. the namespace exists -----


async def check_namespace(state: _State) -> Check:
    if state.client is None:
        return Check(NAMESPACE, SKIP, f"{state.no_temporal} (see {TEMPORAL})")
    ns, address = state.namespace, state.config.temporal.address
    try:
        await state.client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=ns), timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return Check(
                NAMESPACE,
                FAIL,
                f"{ns} does not exist on {address}",
                fix=f"`temporal operator namespace create -n {ns} --address {address}`, or set TEMPORAL_NAMESPACE / "
                "[temporal].namespace to an existing namespace (`temporal operator namespace list`)",
            )
        if error.status == RPCStatusCode.PERMISSION_DENIED:
            return Check(
                NAMESPACE,
                FAIL,
                f"{ns}: permission denied: {_one_line(error.message)}",
                fix=f"use an API key that may use namespace {ns}, or set TEMPORAL_NAMESPACE / [temporal].namespace to the key's namespace",
            )
        return Check(NAMESPACE, FAIL, f"{ns}: {error.status.name}: {_one_line(error.message)}")
    state.namespace_ok = True
    return Check(NAMESPACE, OK, f"{ns} exists")


# ----- 4. TLS / API key -----


async def check_api_key(state: _State) -> Check:
    t = state.config.temporal
    tls = "TLS on" if t.tls or t.api_key_env else "TLS off"
    if not t.api_key_env and not t.api_key_secret:
        return Check(API_KEY, OK, f"no API key configured ({tls})")
    parts: list[tuple[str, str, str]] = []  # (status, text, fix)
    if t.api_key_env:
        if os.environ.get(t.api_key_env):
            parts.append((OK, f"API key variable {t.api_key_env} is set", ""))
        else:
            parts.append(
                (
                    FAIL,
                    f"[temporal].api_key_env names {t.api_key_env}, which is empty or unset here",
                    f"export {t.api_key_env}=<the API key> (or name another variable in [temporal].api_key_env / TEMPORAL_API_KEY_ENV)",
                )
            )
    if t.api_key_secret:
        parts.append(await asyncio.to_thread(_secret_part, state, t.api_key_secret))
    statuses = {status for status, _, _ in parts}
    status = FAIL if FAIL in statuses else OK if OK in statuses else SKIP
    detail = "; ".join(text for _, text, _ in parts) + f" ({tls})"
    return Check(API_KEY, status, detail, fix="; ".join(fix for s, _, fix in parts if s == FAIL and fix))


def _secret_part(state: _State, reference: str) -> tuple[str, str, str]:
    """Does the Secret `name/key` of [temporal].api_key_secret exist with that key? Never reads a value into the answer."""
    name, _, key = reference.partition("/")
    ns = state.k8s_namespace
    where = f"Secret {ns}/{name}"
    kc = state.cluster()
    if kc is None:
        return SKIP, f"{where} not checked: {state.kube_problem} (see {CLUSTER})", ""
    create = f"`kubectl create secret generic {name} -n {ns} --from-literal={key}=<the API key>`"
    try:
        secret = kube.get_object(kc, api_version="v1", kind="Secret", namespace=ns, name=name)
    except kube.KubeForbidden as error:
        return (
            FAIL,
            f"{where} cannot be read (get secrets refused: 403)",
            f"grant get on secrets in {ns}, or check it by hand ({_one_line(error.message, limit=120)})",
        )
    except kube.KubeError as error:
        return SKIP, f"{where} not checked: {_one_line(error.message, limit=160)}", ""
    if secret is None:
        return FAIL, f"{where} (from [temporal].api_key_secret) does not exist", create
    keys = sorted(str(k) for k in (secret.get("data") or {}))
    del secret  # holds the value: nothing of it but the key names goes further
    if key not in keys:
        return FAIL, f"{where} has no key {key!r} (its keys: {', '.join(keys) or 'none'})", create
    return OK, f"{where} has key {key!r}", ""


# ----- 5. the registry -----


async def check_registry(state: _State) -> Check:
    if state.config.target != "local":
        return Check(
            REGISTRY,
            SKIP,
            f"target {state.config.target}: ACR {state.config.acr.login_server} is reached by ACR Tasks at build time, not probed here",
        )
    address = state.config.registry.address
    url = f"http://{address}/v2/"
    status, problem = await asyncio.to_thread(_registry_answer, url)
    if status in (200, 401):
        return Check(REGISTRY, OK, f"{url} answered {status}")
    return Check(
        REGISTRY,
        FAIL,
        f"{url}: {problem}",
        fix="start the local registry (`bootstrap/stack up`), or point [registry].address "
        "(PIPELINE__REGISTRY__ADDRESS) at a running one",
    )


def _registry_answer(url: str) -> tuple[int, str]:
    """(HTTP status, "") or (0, what went wrong)."""
    try:
        with urllib.request.urlopen(url, timeout=REGISTRY_TIMEOUT) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return (error.code, "") if error.code == 401 else (0, f"answered {error.code} (expected 200 or 401)")
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ConnectionRefusedError):
            return 0, "connection refused"
        if isinstance(reason, TimeoutError):
            return 0, f"no answer within {REGISTRY_TIMEOUT:.0f} s"
        return 0, _one_line(str(reason))
    except (OSError, ValueError) as error:
        return 0, "connection refused" if isinstance(error, ConnectionRefusedError) else _one_line(str(error))


# ----- 6. the cluster, and the pipeline's verbs in it -----


async def check_azure_roles(state: _State) -> Check:
    """target aks: the role assignments `pipeline bootstrap --azure` makes (pipeline/azure/role_status.py)."""
    if state.config.target != "aks":
        return Check(AZURE_ROLES, OK, f"target {state.config.target}: no Azure role assignments needed")
    from pipeline.azure import role_status  # only target aks needs the Azure SDKs

    present, missing = await asyncio.to_thread(role_status.status, state.config)
    if not missing:
        return Check(AZURE_ROLES, OK, f"{len(present)} role assignments exist: " + "; ".join(g.line() for g in present))
    return Check(
        AZURE_ROLES,
        FAIL,
        f"{len(missing)} of {len(present) + len(missing)} role assignments missing: " + "; ".join(g.line() for g in missing),
        fix="an administrator (Owner, User Access Administrator or Role Based Access Control Administrator) runs: "
        + " && ".join(g.command() for g in missing),
    )


async def check_cluster(state: _State) -> Check:
    return await asyncio.to_thread(_cluster_check, state)


def _cluster_check(state: _State) -> Check:
    kc = state.cluster()
    ns, app = state.k8s_namespace, state.app.name
    if kc is None:
        return Check(CLUSTER, FAIL, state.kube_problem, fix=_kube_fix(state))
    try:
        found = kube.get_object(kc, api_version="v1", kind="Namespace", name=ns)
    except kube.KubeForbidden:
        found = {}  # may not read namespaces: the dry run below still says what matters
    except kube.KubeError as error:
        state.kube_problem = f"{kc.host}: {_kube_words(error)}"
        return Check(CLUSTER, FAIL, state.kube_problem, fix=_kube_fix(state))
    try:
        objects = render.render_manifests(
            RenderInput(
                app=app_spec(state.config, state.app),
                temporal=temporal_target(state.config),
                image=PLACEHOLDER_IMAGE,
                build_id=PLACEHOLDER_BUILD_ID,
            )
        ).objects
    except PipelineError as error:
        return Check(CLUSTER, FAIL, f"cannot render {app}'s manifests: {_one_line(error.message)}")
    if found is None:
        objects = [o for o in objects if o.get("kind") == "Namespace"]
    for obj in objects:
        try:
            kube.server_side_apply(kc, [obj], field_manager=kube.FIELD_MANAGER, dry_run=True)
        except kube.KubeError as error:
            what = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            return _refused(state, kc, f"patch {_plural(obj)} (server-side apply of {what}, dry run)", error)
    if found is None:
        state.kube_problem = f"namespace {ns} does not exist"
        return Check(
            CLUSTER,
            FAIL,
            f"{kc.host}: namespace {ns} does not exist",
            fix=f"`pipeline bootstrap` creates it (with the pipeline worker; `pipeline deploy --app {app}` also would)",
        )
    lists: list[tuple[str, Callable[[], Any]]] = [
        ("pods", lambda: kube.list_pods(kc, namespace=ns, selector={"app.kubernetes.io/name": app})),
        ("deployments", lambda: _list(kc, f"/apis/apps/v1/namespaces/{ns}/deployments", f"deployments in {ns}")),
        ("replicasets", lambda: _list(kc, f"/apis/apps/v1/namespaces/{ns}/replicasets", f"replicasets in {ns}")),
    ]
    for resource, call in lists:
        try:
            answer = call()
        except kube.KubeError as error:
            return _refused(state, kc, f"list {resource}", error)
        if resource == "pods":
            state.pods = answer
    state.cluster_ok = True
    return Check(
        CLUSTER,
        OK,
        f"{kc.host}: dry-run apply of {len(objects)} objects and list pods, deployments, replicasets allowed in {ns}",
    )


def _refused(state: _State, kc: kube.KubeClient, verb: str, error: kube.KubeError) -> Check:
    ns = state.k8s_namespace
    if isinstance(error, kube.KubeForbidden):
        state.kube_problem = f"{verb} refused"
        state.pods_readable = True
        return Check(
            CLUSTER,
            FAIL,
            f"{kc.host}: {verb} refused (403): {_server_message(error)}",
            fix=f"grant the kubeconfig's user `{verb.split()[0]}` on {verb.split()[1]} in namespace {ns} "
            "(a Role and RoleBinding; render.PIPELINE_RULES lists every verb the pipeline uses)",
        )
    state.kube_problem = f"{kc.host}: {_kube_words(error)}"
    fix = _kube_fix(state) if isinstance(error, kube.KubeUnavailable) else error.hint
    return Check(CLUSTER, FAIL, f"{kc.host}: {verb}: {_kube_words(error)}", fix=fix)


def _list(kc: kube.KubeClient, path: str, what: str) -> dict[str, Any]:
    return kc.request(method="GET", path=path, what=what, query=[("limit", "1")])


def _plural(obj: dict[str, Any]) -> str:
    return f"{str(obj.get('kind', '?')).lower()}s"


def _server_message(error: PipelineError) -> str:
    """A KubeError's own words, without the kube layer's hint (the check's fix says what to do)."""
    message = error.message
    if message.endswith(error.hint):
        message = message[: -len(error.hint)].rstrip("; ")
    return _one_line(message, limit=300)


def _kube_words(error: kube.KubeError) -> str:
    if isinstance(error, kube.KubeUnavailable) and error.reason == "Unreachable":
        return "the API server does not answer"
    return _server_message(error)


def _kube_fix(state: _State) -> str:
    if isinstance(state.kube_error, kube.KubeConfigError):
        local = " (target local: `bootstrap/stack up` writes .stack/cluster/kubeconfig)" if state.config.target == "local" else ""
        return f"point [kubernetes].kubeconfig (KUBECONFIG) and [kubernetes].context at a usable kubeconfig{local}"
    if isinstance(state.kube_error, kube.KubeError):
        return state.kube_error.hint
    if state.config.target == "local":
        return (
            "start the local cluster (`bootstrap/stack up`), or point [kubernetes].kubeconfig (KUBECONFIG) at a "
            "cluster that answers"
        )
    return "check [kubernetes].kubeconfig / [kubernetes].context, or the [aks] and [azure] settings (`az aks get-credentials`)"


# ----- 7. the pipeline worker polls its queue -----


async def check_pipeline_worker(state: _State) -> Check:
    if (skip := state.temporal_skip(PIPELINE_WORKER)) is not None:
        return skip
    assert state.client is not None
    queue = state.config.pipeline.task_queue
    pollers = await asyncio.wait_for(
        describe_pollers(
            state.client, namespace=state.namespace, task_queue=queue, partitions=state.config.temporal.task_queue_partitions
        ),
        POLLERS_TIMEOUT,
    )
    live = live_pollers(pollers, now=datetime.now(UTC))
    missing = [t for t in QUEUE_TYPES if not any(p.task_queue_type == t for p in live)]
    identities = ", ".join(sorted({short(p.identity) for p in live}))
    if not missing:
        return Check(PIPELINE_WORKER, OK, f"'{queue}' polled by {identities}")
    fix = (
        "start the pipeline worker: `pipeline worker` here, or in the cluster `pipeline bootstrap` "
        "(target local: `bootstrap/stack up` does it)"
    )
    if live:
        return Check(PIPELINE_WORKER, FAIL, f"'{queue}' has no {' or '.join(missing)} poller (polled by {identities})", fix=fix)
    return Check(PIPELINE_WORKER, FAIL, f"nothing polls '{queue}' in namespace {state.namespace}{_last_seen(pollers)}", fix=fix)


# ----- 8. the app's pods -----


async def check_pods(state: _State) -> Check:
    return await asyncio.to_thread(_pods_check, state)


def _pods_check(state: _State) -> Check:
    app, ns = state.app.name, state.k8s_namespace
    kc = state.cluster()
    if kc is None or not (state.cluster_ok or state.pods_readable):
        return Check(PODS, SKIP, f"the cluster is not usable: {state.kube_problem or 'see above'} (see {CLUSTER})")
    if state.pods is None:  # the cluster check stopped at a refused verb before listing them
        try:
            state.pods = kube.list_pods(kc, namespace=ns, selector={"app.kubernetes.io/name": app})
        except kube.KubeError as error:
            return Check(PODS, SKIP, f"cannot list the pods of {app}: {_kube_words(error)} (see {CLUSTER})")
    pods = [p for p in state.pods if not p.terminating] or state.pods
    if not pods:
        return Check(PODS, FAIL, f"no pods of {app} in namespace {ns}", fix=f"`pipeline deploy --app {app}`")
    phases: dict[str, int] = {}
    for pod in pods:
        phases[pod.phase] = phases.get(pod.phase, 0) + 1
    restarts = sum(c.restart_count for p in pods for c in p.containers)
    not_ready = [f"{p.name}: {_not_ready_reason(kc, ns, p.name)}" for p in pods if not p.ready]
    summary = (
        f"{len(pods)} pod{'s' if len(pods) != 1 else ''} ({', '.join(f'{n} {phase}' for phase, n in sorted(phases.items()))}), "
        f"ready {len(pods) - len(not_ready)}/{len(pods)}"
        + (f" (not ready: {'; '.join(not_ready)})" if not_ready else "")
        + f", restarts {restarts}"
    )
    state.crashing = {p.name: why for p in pods if (why := crash_of(p))}
    if not state.crashing:
        return Check(PODS, OK, summary)
    extra: list[str] = []
    for name, why in list(state.crashing.items())[:LOGGED_PODS]:
        extra.append(f"{name}: {why}; last log lines:")
        extra.extend(f"  | {line}" for line in _last_log_lines(kc, ns, name))
    if len(state.crashing) > LOGGED_PODS:
        extra.append(f"(and {len(state.crashing) - LOGGED_PODS} more crashing pods)")
    crashing = ", ".join(state.crashing)
    return Check(
        PODS,
        FAIL,
        f"{summary}; crashing: {crashing}",
        fix=f"read why below (`kubectl logs -n {ns} <pod> --previous`), fix the worker and `pipeline deploy --app {app}`; "
        f"`pipeline rollback {app}` restores the last verified revision",
        extra_lines=tuple(extra),
    )


def crash_of(pod: kube.PodInfo) -> str:
    """Why `pod` counts as crashing or unable to start ("" when it does not): a container waiting in
    CrashLoopBackOff/Error (or an image/config failure), one terminated with a non-zero code, or restarts
    after a non-zero exit. A restart after a clean exit (code 0, e.g. a node restart) is not a crash,
    and neither is a pod that is only not Ready (a readiness gate, a probe)."""
    for c in [*pod.init_containers, *pod.containers]:
        restarts = f", {c.restart_count} restart{'s' if c.restart_count != 1 else ''}" if c.restart_count else ""
        last = f", last exit {c.last_exit_code}" if c.last_exit_code is not None else ""
        if c.state == "waiting" and c.reason in CRASH_REASONS:
            return f"container {c.name} {c.reason}{restarts}{last}"
        if c.state == "waiting" and c.reason in START_FAILURES:
            return f"container {c.name} cannot start: {c.reason}{': ' + _one_line(c.message, limit=160) if c.message else ''}"
        if c.state == "terminated" and c.exit_code not in (None, 0):
            return f"container {c.name} exited {c.exit_code}{' (' + c.reason + ')' if c.reason else ''}{restarts}"
        if c.restart_count and c.last_exit_code not in (None, 0):
            return f"container {c.name} restarted {c.restart_count} time{'s' if c.restart_count != 1 else ''}{last}"
    return ""


def _not_ready_reason(kc: kube.KubeClient, ns: str, name: str) -> str:
    """The pod's Ready condition reason (e.g. ReadinessGatesNotReady, ContainersNotReady), or "not ready"."""
    try:
        raw = kube.get_object(kc, api_version="v1", kind="Pod", namespace=ns, name=name)
    except kube.KubeError:
        return "not ready"
    for condition in ((raw or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("reason") or "not ready")
    return "not ready"


def _last_log_lines(kc: kube.KubeClient, ns: str, name: str) -> list[str]:
    """The last LOG_LINES lines of the pod's previous container run, else of the current one."""
    problem = ""
    for previous in (True, False):
        try:
            text = kube.pod_logs(kc, namespace=ns, name=name, previous=previous, tail_lines=LOG_LINES)
        except kube.KubeError as error:
            problem = _server_message(error)
            continue
        lines = [line for line in text.splitlines() if line.strip()][-LOG_LINES:]
        if lines:
            return lines
    return [f"(no log: {problem})" if problem else "(its log is empty)"]


# ----- 9. the app's queue pollers -----


async def check_pollers(state: _State) -> Check:
    if (skip := state.temporal_skip(POLLERS)) is not None:
        return skip
    assert state.client is not None
    queue = state.app.task_queue
    pollers = await asyncio.wait_for(
        describe_pollers(
            state.client, namespace=state.namespace, task_queue=queue, partitions=state.config.temporal.task_queue_partitions
        ),
        POLLERS_TIMEOUT,
    )
    state.app_pollers = pollers
    listed = ", ".join(sorted({short(p.identity) for p in live_pollers(pollers, now=datetime.now(UTC))})) or "none"
    if state.pods is None:
        return Check(
            POLLERS, SKIP, f"'{queue}' live pollers: {listed}; not matched to pods: the cluster is not usable (see {CLUSTER})"
        )
    running = [p for p in state.pods if p.phase == "Running" and not p.terminating and p.name not in state.crashing]
    if not running:
        if state.crashing:
            why = f"crashing: {', '.join(state.crashing)}"
        elif state.pods:
            why = f"none of its {len(state.pods)} pods is Running"
        else:
            why = f"it has none, see {PODS}"
        return Check(POLLERS, SKIP, f"no running pod of {state.app.name} to match ({why}); '{queue}' live pollers: {listed}")
    matched = {pod.name: pollers_of(pod, pollers) for pod in running}
    silent = [name for name, found in matched.items() if not found]
    others = sorted(
        {short(p.identity) for p in live_pollers(pollers, now=datetime.now(UTC))}
        - {short(p.identity) for found in matched.values() for p in found}
    )
    polling = ", ".join(_describe_pod_pollers(name, found) for name, found in matched.items() if found)
    if not silent:
        return Check(POLLERS, OK, f"'{queue}' polled by {polling}" + (f"; also polling: {', '.join(others)}" if others else ""))
    queues = sorted({a.task_queue for a in state.config.apps.values()} | {state.config.pipeline.task_queue})
    sightings = await where_seen(
        state.client,
        pods=silent,
        namespaces=[state.namespace],
        task_queues=queues,
        partitions=state.config.temporal.task_queue_partitions,
    )
    app = state.app.name
    return Check(
        POLLERS,
        FAIL,
        f"{', '.join(silent)} running but not polling '{queue}' (namespace {state.namespace}): {format_sightings(sightings)}"
        + (f"; polling: {polling}" if polling else ""),
        fix=f"the worker must poll [apps.{app}].task_queue ('{queue}'), which its pods get as TEMPORAL_TASK_QUEUE "
        f"(ConfigMap {app}-temporal): read the queue from TEMPORAL_TASK_QUEUE, do not override it "
        f"([apps.{app}].command, the image), then `pipeline deploy --app {app}`",
    )


def pollers_of(pod: kube.PodInfo, pollers: Sequence[Poller]) -> list[Poller]:
    """The pollers whose identity names `pod` and whose last access is after the pod started."""
    return [p for p in pollers if polled_since(p, pod.name, _time(pod.start_time))]


def _describe_pod_pollers(pod: str, found: Sequence[Poller]) -> str:
    builds = ", ".join(sorted({short(p.build_id) for p in found if p.build_id})) or "no build id"
    types = "+".join(t for t in QUEUE_TYPES if any(p.task_queue_type == t for p in found))
    return f"{pod} ({builds}; {types})"


# ----- 10. the queue's backlog -----


async def check_backlog(state: _State) -> Check:
    if (skip := state.temporal_skip(BACKLOG)) is not None:
        return skip
    assert state.client is not None
    queue = state.app.task_queue
    answers = await asyncio.gather(
        *(
            state.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=state.namespace,
                    task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                    task_queue_type=kind,
                    report_stats=True,  # the root partition answers for all of them
                ),
                timeout=RPC_TIMEOUT,
            )
            for kind in QUEUE_TYPES.values()
        )
    )
    if state.app_pollers is None:
        state.app_pollers = [p for t, a in zip(QUEUE_TYPES, answers, strict=True) for p in _as_pollers(t, a.pollers)]
    live = live_pollers(state.app_pollers, now=datetime.now(UTC))
    parts: list[str] = []
    stuck: list[str] = []
    for type_name, answer in zip(QUEUE_TYPES, answers, strict=True):
        if not answer.HasField("stats"):
            parts.append(f"{type_name}: no stats (this server does not report them)")
            continue
        count = answer.stats.approximate_backlog_count
        age = answer.stats.approximate_backlog_age.ToTimedelta()
        parts.append(f"{type_name} {count} task{'s' if count != 1 else ''}" + (f" (oldest {_age(age)})" if count else ""))
        if count and not any(p.task_queue_type == type_name for p in live):
            stuck.append(type_name)
    detail = f"'{queue}': " + ", ".join(parts)
    if stuck:
        app = state.app.name
        return Check(
            BACKLOG,
            FAIL,
            f"{detail}; no live {' or '.join(stuck)} poller takes them",
            fix=f"get {app}'s workers polling '{queue}' (see {PODS} and {POLLERS}; `pipeline deploy --app {app}`)",
        )
    return Check(BACKLOG, OK, detail)


def _as_pollers(type_name: str, infos: Iterable[Any]) -> list[Poller]:
    return [as_poller(type_name, i) for i in infos]


# ----- helpers -----


def live_pollers(pollers: Iterable[Poller], *, now: datetime) -> list[Poller]:
    """Pollers Temporal saw within LIVE_WINDOW of `now` (it lists stopped ones for minutes)."""
    out = []
    for p in pollers:
        seen = _time(p.last_access_time)
        if seen is not None and seen >= now - LIVE_WINDOW:
            out.append(p)
    return out


def _last_seen(pollers: Sequence[Poller]) -> str:
    times = [(t, p) for p in pollers if (t := _time(p.last_access_time)) is not None]
    if not times:
        return ""
    when, poller = max(times, key=lambda tp: tp[0])
    return f" (last poll by {short(poller.identity)} {_age(datetime.now(UTC) - when)} ago)"


def short(text: str) -> str:
    """`sha256:<64 hex>` inside `text` cut to 12 hex digits and an ellipsis, for reading."""
    head, sep, digest = text.partition("sha256:")
    if sep and len(digest) >= 64:
        return f"{head}sha256:{digest[:12]}…{digest[64:]}"
    return text


def _time(value: str) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _one_line(text: str, *, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_STEPS: tuple[tuple[str, Step], ...] = (
    (TEMPORAL, check_temporal),
    (NAMESPACE, check_namespace),
    (API_KEY, check_api_key),
    (REGISTRY, check_registry),
    (AZURE_ROLES, check_azure_roles),
    (CLUSTER, check_cluster),
    (PIPELINE_WORKER, check_pipeline_worker),
    (PODS, check_pods),
    (POLLERS, check_pollers),
    (BACKLOG, check_backlog),
)
