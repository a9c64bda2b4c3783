"""The replay gate's runner: replay real histories against a candidate worker image's workflow code (issue 19).

A standalone script, not a module of the product: the pipeline copies this
file into a ConfigMap, mounts it at ``/pipeline-replay/`` in a one-off Job of
the *candidate* image, and runs ``python /pipeline-replay/replay_runner.py``
with the image's own working directory. That image is the user's, not this
repository's, so the script imports only the standard library and
``temporalio`` (any 1.x from 1.7 on: ``Client.connect``,
``WorkflowHandle.fetch_history``, ``Replayer.workflow_replay_iterator``, the
``__temporal_workflow_definition`` attribute ``@workflow.defn`` sets), never
``pipeline``.

What the SDK does, and what this adds around it. ``temporalio.worker.Replayer``
(temporalio/worker/_replayer.py) starts one core worker in replay mode, pushes
each history to it and waits for the run to be evicted: an eviction for
NONDETERMINISM becomes ``NondeterminismError(message)`` with core's message
("[TMPRL1100] Nondeterminism error: ..." naming command and event types and
ids, not payloads), any other eviction but a full cache ``RuntimeError``, which
carries the workflow's own failure text (and that may quote its input). This
script picks the definitions, fetches the histories, bounds the time, and turns
the results into one verdict line with no payload in it.

Input
    ``REPLAY_MODULES``          comma-separated modules to import, e.g.
                                ``sample_worker.workflows`` or ``worker``; every class
                                in them (defined there or imported there) that
                                ``@workflow.defn`` made a definition is collected, one
                                per workflow type (the first found wins). The current
                                directory (the image's WORKDIR) is put first on sys.path.
    ``workflows.json``          ``{"workflows": [{"workflow_id": ..., "run_id": ...}]}``,
                                next to this script (``/pipeline-replay/workflows.json``),
                                or where ``REPLAY_WORKFLOWS_FILE`` says; an empty
                                ``run_id`` means the latest run.
    ``TEMPORAL_ADDRESS``        host:port (default 127.0.0.1:7233)
    ``TEMPORAL_NAMESPACE``      default ``default``
    ``TEMPORAL_API_KEY``        optional; implies TLS
    ``TEMPORAL_TLS``            true/false (also 1/0, yes/no); default: on when an API
                                key or a TLS file is given
    ``TEMPORAL_TLS_CA_FILE``, ``TEMPORAL_TLS_CERT_FILE``, ``TEMPORAL_TLS_KEY_FILE``
                                (or envconfig's ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``,
                                ``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``;
                                ``TEMPORAL_TLS_SERVER_NAME``)
                                optional PEM files, as the app's pods get them
    ``REPLAY_DEADLINE_SECONDS`` default 120: no history is fetched or replayed after
                                it; what was not reached is ``skipped``. A run still busy
                                ``REPLAY_GRACE_SECONDS`` (default 20) after it (a hanging
                                import or replay) is cut off: the verdict is printed with
                                ``error`` set and the process exits 2. The Job's
                                activeDeadlineSeconds should exceed the sum.
    ``REPLAY_SANDBOXED``        default true; false replays with the SDK's
                                UnsandboxedWorkflowRunner (for apps whose worker uses it)

Output: one line on stdout, ``PIPELINE-REPLAY-VERDICT {json}``::

    {"ok": bool, "replayed": N, "failed": N, "skipped": N,
     "results": [{"workflow_id", "run_id", "workflow_type", "verdict", "message"}],
     "workflow_types": [...], "error": ""}

    verdict   ok                 replayed to its end without a mismatch
              nondeterministic   the SDK's NondeterminismError; message = core's text (500 chars)
              failed             any other replay failure; message = exception type and first
                                 line only (200 chars)
              unknown_type       no collected definition has the history's workflow type; not
                                 replayed, not counted in ``failed``, ``ok`` unaffected (the
                                 pipeline decides whether a type absent from the candidate
                                 fails the gate)
              skipped            not reached before the deadline, or its history could not be
                                 fetched (message says which)

``replayed`` counts ok + nondeterministic + failed; ``failed`` counts
nondeterministic + failed. Every message has each text found in the history's
payloads (inputs, results, signal arguments, memo...) replaced by
``<payload>``. The line stays under ``MAX_VERDICT_BYTES``: results are left
off (the failing ones kept first) and ``results_truncated`` says how many.

Exit codes: 0 every replayed history is ok; 1 any is nondeterministic or
failed; 2 the runner could not run (a module that does not import, no workflow
definition, a bad workflows.json, no connection, the replayer itself broke),
with ``error`` set in the line. stderr carries logs of counts and ids only; the
SDK's own loggers and core's log output are silenced, because they quote
workflow failures.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERDICT_PREFIX = "PIPELINE-REPLAY-VERDICT "
MAX_VERDICT_BYTES = 60_000
NONDETERMINISM_MESSAGE_CHARS = 500
FAILURE_MESSAGE_CHARS = 200
DEFAULT_DEADLINE_SECONDS = 120.0
DEFAULT_GRACE_SECONDS = 20.0
FETCH_CONCURRENCY = 16
CONNECT_TIMEOUT_SECONDS = 15.0
NOT_REACHED = "not reached before the deadline"
MIN_REDACTED_CHARS = 5  # shorter payload texts ("true", "ok") would blank out ordinary words
PAYLOAD_TYPE = "temporal.api.common.v1.Payload"

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

log = logging.getLogger("replay-runner")


class SetupProblem(Exception):
    """The runner cannot run at all (exit 2); the message is the verdict's ``error``."""


@dataclass
class Entry:
    """One execution to replay and what became of it."""

    workflow_id: str
    run_id: str
    workflow_type: str = ""
    verdict: str = "skipped"
    message: str = NOT_REACHED

    def as_json(self) -> dict[str, str]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "workflow_type": self.workflow_type,
            "verdict": self.verdict,
            "message": self.message,
        }


@dataclass
class Run:
    """The whole run's state; printed exactly once, by the main path or by the hard-stop watchdog."""

    entries: list[Entry] = field(default_factory=list)
    workflow_types: list[str] = field(default_factory=list)
    error: str = ""
    printed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self, error: str = "") -> int:
        """Print the verdict line (once) and return the exit code."""
        with self.lock:
            if error and not self.error:
                self.error = error
            if self.error:
                for entry in self.entries:
                    if entry.verdict == "skipped" and entry.message == NOT_REACHED:
                        entry.message = "not replayed: see error"
            code = exit_code(self.entries, self.error)
            if not self.printed:
                self.printed = True
                line = verdict_line(self.entries, self.workflow_types, self.error)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                write_termination_message(verdict_line(self.entries, self.workflow_types, self.error, TERMINATION_BYTES))
                counts = {v: sum(e.verdict == v for e in self.entries) for v in VERDICTS}
                log.info("verdict: exit %d, %s", code, ", ".join(f"{n} {v}" for v, n in counts.items() if n))
            return code


VERDICTS = ("ok", "nondeterministic", "failed", "unknown_type", "skipped")
# Kubernetes keeps at most 4096 bytes of a container's termination message: the pipeline reads the
# verdict there (the pod's status), so it needs no right to read logs.
TERMINATION_BYTES = 4000


def write_termination_message(line: str) -> None:
    """The verdict (shortened to fit) in the container's terminationMessagePath, when there is one."""
    path = os.environ.get("REPLAY_TERMINATION_LOG", "/dev/termination-log")
    if not os.path.exists(path):  # the kubelet creates it in a pod; elsewhere (a test, a laptop) stdout has it
        return
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError:
        pass


def exit_code(entries: Iterable[Entry], error: str) -> int:
    if error:
        return EXIT_ERROR
    return EXIT_FAILED if any(e.verdict in ("nondeterministic", "failed") for e in entries) else EXIT_OK


def verdict_line(entries: list[Entry], workflow_types: list[str], error: str, limit: int = MAX_VERDICT_BYTES) -> str:
    """The one stdout line; results are left off (failing ones kept first) until it fits `limit` bytes."""
    body: dict[str, Any] = {
        "ok": exit_code(entries, error) == EXIT_OK,
        "replayed": sum(e.verdict in ("ok", "nondeterministic", "failed") for e in entries),
        "failed": sum(e.verdict in ("nondeterministic", "failed") for e in entries),
        "skipped": sum(e.verdict == "skipped" for e in entries),
        "results": [],
        "workflow_types": workflow_types,
        "error": error[: min(2000, limit // 4)],
    }
    rank = {"nondeterministic": 0, "failed": 1, "unknown_type": 2, "skipped": 3, "ok": 4}
    order = sorted(range(len(entries)), key=lambda i: (rank.get(entries[i].verdict, 5), i))
    kept: list[int] = []
    size = len(VERDICT_PREFIX) + len(json.dumps(body, separators=(",", ":"))) + 40  # room for results_truncated
    for i in order:
        item = len(json.dumps(entries[i].as_json(), separators=(",", ":"))) + 1
        if size + item > limit:
            break
        kept.append(i)
        size += item
    body["results"] = [entries[i].as_json() for i in sorted(kept)]  # back in the input order
    if len(kept) < len(entries):
        body["results_truncated"] = len(entries) - len(kept)
    return VERDICT_PREFIX + json.dumps(body, separators=(",", ":"))


# ---------------------------------------------------------------- input


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SetupProblem(f"{name}={raw!r} is not a boolean (true/false)")


def env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SetupProblem(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise SetupProblem(f"{name}={raw!r} is negative")
    return value


def workflows_file() -> Path:
    given = os.environ.get("REPLAY_WORKFLOWS_FILE", "").strip()
    return Path(given) if given else Path(__file__).resolve().parent / "workflows.json"


def read_workflows(path: Path) -> list[Entry]:
    """The executions the pipeline chose, from workflows.json."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise SetupProblem(f"{path}: the list of workflows to replay is missing") from None
    except (OSError, ValueError) as e:
        raise SetupProblem(f"{path}: not readable JSON ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    items = document.get("workflows") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise SetupProblem(f'{path}: expected {{"workflows": [{{"workflow_id": ..., "run_id": ...}}, ...]}}')
    entries: list[Entry] = []
    for n, item in enumerate(items):
        workflow_id = item.get("workflow_id") if isinstance(item, dict) else None
        run_id = item.get("run_id", "") if isinstance(item, dict) else None
        if not isinstance(workflow_id, str) or not workflow_id or not isinstance(run_id, (str, type(None))):
            raise SetupProblem(f"{path}: workflows[{n}] needs a string workflow_id (and a string run_id)")
        entries.append(Entry(workflow_id=workflow_id, run_id=run_id or ""))
    return entries


def module_names() -> list[str]:
    names = [m.strip() for m in os.environ.get("REPLAY_MODULES", "").split(",") if m.strip()]
    if not names:
        raise SetupProblem("REPLAY_MODULES is empty: name the modules that define the workflows (e.g. app.workflows)")
    return names


def collect_workflows(names: list[str]) -> dict[str, type]:
    """Import each module and collect its workflow definitions by type name ("" = the dynamic workflow)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    found: dict[str, type] = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except BaseException as e:  # noqa: B036  (SystemExit from an app's import-time check too)
            first = (str(e).splitlines() or [""])[0][:200]
            raise SetupProblem(
                f"REPLAY_MODULES: module {name!r} does not import in this image (cwd {cwd}): {type(e).__name__}: {first}"
            ) from None
        classes = [v for v in vars(module).values() if isinstance(v, type)]
        # Classes defined in the module first: they win over same-named ones it imported.
        classes.sort(key=lambda c: c.__module__ != module.__name__)
        for cls in classes:
            definition = workflow_definition(cls)
            if definition is None:
                continue
            type_name = definition.name or ""
            if type_name in found:
                if found[type_name] is not cls:
                    log.warning(
                        "workflow type %r defined twice; keeping %s", type_name or "(dynamic)", _qualname(found[type_name])
                    )
                continue
            found[type_name] = cls
    if not found:
        raise SetupProblem(f"REPLAY_MODULES={','.join(names)}: no @workflow.defn class in these modules")
    return found


def workflow_definition(cls: type) -> Any:
    """The SDK's definition of a workflow class, only if @workflow.defn was applied to this very class."""
    from temporalio import workflow

    definer = getattr(workflow, "_Definition", None)
    if definer is not None and hasattr(definer, "from_class"):
        return definer.from_class(cls)
    definition = cls.__dict__.get("__temporal_workflow_definition")
    return definition if definition is not None and getattr(definition, "cls", None) is cls else None


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------- connection


def connection_options() -> tuple[str, dict[str, Any]]:
    """The address and Client.connect keywords from the TEMPORAL_* variables the app's pods get."""
    from temporalio.service import TLSConfig

    address = os.environ.get("TEMPORAL_ADDRESS", "").strip() or "127.0.0.1:7233"
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "").strip() or "default"
    api_key = os.environ.get("TEMPORAL_API_KEY", "").strip() or None
    files: dict[str, bytes] = {}
    # envconfig's names (what the pipeline sets for [temporal].tls_secret), else the older ones.
    envconfig = {
        "TEMPORAL_TLS_CA_FILE": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_CERT_FILE": "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_KEY_FILE": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    }
    for var in ("TEMPORAL_TLS_CA_FILE", "TEMPORAL_TLS_CERT_FILE", "TEMPORAL_TLS_KEY_FILE"):
        if os.environ.get(envconfig[var], "").strip():
            var = envconfig[var]
        path = os.environ.get(var, "").strip()
        if path:
            try:
                files[var] = Path(path).read_bytes()
            except OSError as e:
                raise SetupProblem(f"{var}={path}: {e.strerror or type(e).__name__}") from None
    for legacy, name in envconfig.items():  # one spelling from here on
        if name in files:
            files[legacy] = files.pop(name)
    if ("TEMPORAL_TLS_CERT_FILE" in files) != ("TEMPORAL_TLS_KEY_FILE" in files):
        raise SetupProblem("TEMPORAL_TLS_CERT_FILE and TEMPORAL_TLS_KEY_FILE must be set together")
    tls = env_bool("TEMPORAL_TLS", default=bool(api_key or files))
    if api_key and not tls:
        raise SetupProblem("TEMPORAL_TLS=false conflicts with TEMPORAL_API_KEY (an API key needs TLS)")
    if not tls and files:
        raise SetupProblem("TEMPORAL_TLS=false conflicts with the TEMPORAL_TLS_* files")
    tls_config: bool | TLSConfig = tls
    if tls and files:
        tls_config = TLSConfig(
            domain=os.environ.get("TEMPORAL_TLS_SERVER_NAME", "").strip() or None,
            server_root_ca_cert=files.get("TEMPORAL_TLS_CA_FILE"),
            client_cert=files.get("TEMPORAL_TLS_CERT_FILE"),
            client_private_key=files.get("TEMPORAL_TLS_KEY_FILE"),
        )
    options: dict[str, Any] = {"namespace": namespace, "tls": tls_config}
    if api_key:
        options["api_key"] = api_key
    return address, options


async def connect(address: str, options: dict[str, Any]) -> Any:
    from temporalio.client import Client

    namespace = options["namespace"]
    try:
        client = await asyncio.wait_for(Client.connect(address, **options), timeout=CONNECT_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:  # noqa: UP041  (not the builtin before Python 3.11)
        raise SetupProblem(f"no connection to Temporal at {address} within {CONNECT_TIMEOUT_SECONDS:.0f} s") from None
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:300]
        raise SetupProblem(
            f"no connection to Temporal at {address} (namespace {namespace}): {type(e).__name__}: {first}"
        ) from None
    log.info("connected to %s, namespace %s, tls %s", address, namespace, "on" if options["tls"] else "off")
    return client


# ---------------------------------------------------------------- payloads out of messages


def payload_texts(events: Iterable[Any]) -> list[str]:
    """Every text found in the history's payloads (the raw data, and each string in it when it is JSON), longest first."""
    texts: set[str] = set()

    def add_payload(payload: Any) -> None:
        raw = bytes(payload.data).decode("utf-8", errors="ignore")
        texts.add(raw)
        try:
            texts.update(_json_strings(json.loads(raw)))
        except ValueError:
            pass

    def walk(message: Any) -> None:
        for descriptor, value in message.ListFields():
            if descriptor.message_type is None:
                continue
            if descriptor.message_type.GetOptions().map_entry:
                value_field = descriptor.message_type.fields_by_name["value"]
                values = list(value.values()) if value_field.message_type is not None else []
            elif hasattr(value, "DESCRIPTOR"):  # a singular message field
                values = [value]
            else:  # a repeated one (FieldDescriptor.label is gone from newer protobuf runtimes)
                values = list(value)
            for item in values:
                if item.DESCRIPTOR.full_name == PAYLOAD_TYPE:
                    add_payload(item)
                else:
                    walk(item)

    for event in events:
        walk(event)
    variants: set[str] = set()
    for text in texts:
        variants.update((text, json.dumps(text)[1:-1], repr(text)[1:-1]))
    return sorted((t for t in variants if len(t.strip()) >= MIN_REDACTED_CHARS), key=len, reverse=True)


def _json_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _json_strings(k)
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and len(str(value)) >= MIN_REDACTED_CHARS:
        yield str(value)


def redact(message: str, events: Iterable[Any]) -> str:
    for text in payload_texts(events):
        message = message.replace(text, "<payload>")
    return message


def failure_message(failure: BaseException, events: Iterable[Any]) -> tuple[str, str]:
    """(verdict, message) for a replay failure; no payload text survives in the message."""
    from temporalio.workflow import NondeterminismError

    if isinstance(failure, NondeterminismError):
        text = core_failure_message(str(failure)) or str(failure)
        return "nondeterministic", redact(text.strip(), events)[:NONDETERMINISM_MESSAGE_CHARS]
    return "failed", redact(failed_summary(failure), events)[:FAILURE_MESSAGE_CHARS]


def failed_summary(failure: BaseException) -> str:
    """The exception type and the first line of its message.

    The Replayer's RuntimeError for a failed workflow task reads ``"<eviction reason>: Workflow activation
    completion failed: Failure { failure: Some(Failure { message: "...", stack_trace: "...", ...
    ApplicationFailureInfo { r#type: "RuntimeError", ... }"`` (core's Debug text on one line): keep what
    failed, the workflow's exception type and its message's first line, not the stack trace.
    """
    text = str(failure).strip()
    message = core_failure_message(text)
    if message is not None:
        head = re.sub(r"^\d+: ", "", text.split(": Failure {", 1)[0])
        kind = re.search(r'r#type: "([^"]*)"', text)
        first = (message.strip().splitlines() or [""])[0]
        return f"{head}: {kind.group(1) if kind else 'failure'}: {first}"
    first = (text.splitlines() or [""])[0]
    return f"{type(failure).__name__}: {first}"


def core_failure_message(text: str) -> str | None:
    """The message of the Failure in core's Debug text (``Failure { message: "..." ...``), unescaped; None if absent.

    Core's eviction message for a non-determinism reads ``Workflow activation completion failed: Failure {
    failure: Some(Failure { message: "[TMPRL1100] Nondeterminism error: Activity type of scheduled event
    'step_a' does not match activity type of activity command 'step_x'", ... }), force_cause:
    NonDeterministicError }``: the inner message is the part a person reads.
    """
    inner = re.search(r'Failure \{ message: "((?:[^"\\]|\\.)*)"', text)
    if inner is None:
        return None
    return inner.group(1).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


# ---------------------------------------------------------------- fetch and replay


def started_type(events: Any) -> str:
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        return ""
    return str(events[0].workflow_execution_started_event_attributes.workflow_type.name)


async def fetch_histories(client: Any, entries: list[Entry], deadline: float) -> dict[int, Any]:
    """Fetch every history, FETCH_CONCURRENCY at a time, until the deadline; a fetch error skips that entry."""
    from temporalio.service import RPCError

    histories: dict[int, Any] = {}
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(i: int) -> None:
        entry = entries[i]
        async with gate:
            if time.monotonic() >= deadline:
                return
            try:
                history = await client.get_workflow_handle(entry.workflow_id, run_id=entry.run_id or None).fetch_history()
            except RPCError as e:
                status = getattr(getattr(e, "status", None), "name", "") or type(e).__name__
                entry.message = f"history not fetched: {status}"
                log.warning("%s (%s): history not fetched: %s", entry.workflow_id, entry.run_id, status)
                return
            histories[i] = history
            entry.workflow_type = started_type(history.events)
            if not entry.run_id and history.events:
                entry.run_id = str(history.events[0].workflow_execution_started_event_attributes.original_execution_run_id)

    remaining = deadline - time.monotonic()
    if remaining <= 0 or not entries:
        return histories
    tasks = [asyncio.ensure_future(fetch(i)) for i in range(len(entries))]
    done, pending = await asyncio.wait(tasks, timeout=remaining)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in done:
        if task.exception() is not None:
            raise SetupProblem(f"fetching histories broke: {type(task.exception()).__name__}")
    log.info("fetched %d of %d histories", len(histories), len(entries))
    return histories


async def replay(run: Run, definitions: dict[str, type], histories: dict[int, Any], deadline: float) -> None:
    """Replay the fetched histories of known types with one Replayer, in input order, until the deadline."""
    from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

    entries = run.entries
    dynamic = "" in definitions
    queue: list[int] = []
    for i in sorted(histories):
        entry = entries[i]
        if not entry.workflow_type:
            entry.verdict, entry.message = "failed", "history does not start with WorkflowExecutionStarted"
        elif entry.workflow_type in definitions or dynamic:
            queue.append(i)
        else:
            entry.verdict = "unknown_type"
            entry.message = f"no workflow definition of type {entry.workflow_type!r} in REPLAY_MODULES"
    if not queue or time.monotonic() >= deadline:
        return
    options: dict[str, Any] = {"workflows": list(definitions.values())}
    if not env_bool("REPLAY_SANDBOXED", default=True):
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    replayer = Replayer(**options)
    fed: list[int] = []

    async def feed() -> AsyncIterator[Any]:
        for i in queue:
            if time.monotonic() >= deadline:
                log.warning("deadline reached: %d histories not replayed", len(queue) - len(fed))
                return
            fed.append(i)
            yield histories[i]

    try:
        async with replayer.workflow_replay_iterator(feed()) as results:
            n = 0
            async for result in results:
                entry = entries[fed[n]]
                n += 1
                if result.replay_failure is None:
                    entry.verdict, entry.message = "ok", ""
                else:
                    entry.verdict, entry.message = failure_message(result.replay_failure, histories[fed[n - 1]].events)
                    log.info("%s (%s): %s", entry.workflow_id, entry.run_id, entry.verdict)
    except Exception as e:
        # The replayer itself broke (not one workflow's replay): the rest were not judged.
        raise SetupProblem(f"the replayer stopped: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}") from None


# ---------------------------------------------------------------- main


def silence_sdk_logs() -> None:
    """The SDK's loggers and core's log output quote workflow failures (payloads): keep them off stderr."""
    for name in ("temporalio", "temporal_sdk_core", "temporal_sdk_bridge"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        from temporalio.runtime import Runtime, TelemetryConfig

        Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=None)), error_if_already_set=False)
    except Exception:  # an SDK without these: its core logs stay at their default (warnings, to stderr)
        log.warning("could not turn off the SDK core's logs")


async def main_async(run: Run, started: float) -> None:
    budget = env_seconds("REPLAY_DEADLINE_SECONDS", DEFAULT_DEADLINE_SECONDS)
    deadline = started + budget
    run.entries.extend(read_workflows(workflows_file()))
    definitions = collect_workflows(module_names())
    run.workflow_types = sorted(name or "(dynamic)" for name in definitions)
    log.info("%d workflow types, %d executions, deadline %.0f s", len(definitions), len(run.entries), budget)
    address, options = connection_options()
    client = await connect(address, options)
    histories = await fetch_histories(client, run.entries, deadline)
    await replay(run, definitions, histories, deadline)


def watchdog(run: Run, at: float, grace: float) -> None:
    """If the run hangs past the deadline and its grace (an import, a replay), print what is known and exit."""
    time.sleep(max(0.0, at - time.monotonic()))
    code = run.finish(f"the runner was still busy {grace:g} s after REPLAY_DEADLINE_SECONDS and was stopped")
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="replay-runner: %(message)s")
    started = time.monotonic()
    run = Run()
    try:
        silence_sdk_logs()
        budget = env_seconds("REPLAY_DEADLINE_SECONDS", DEFAULT_DEADLINE_SECONDS)
        grace = env_seconds("REPLAY_GRACE_SECONDS", DEFAULT_GRACE_SECONDS)
        threading.Thread(target=watchdog, args=(run, started + budget + grace, grace), daemon=True).start()
        asyncio.run(main_async(run, started))
    except SetupProblem as e:
        log.error("%s", e)
        return run.finish(str(e))
    except Exception as e:  # a bug here must still end in a verdict line, without the exception's text
        log.error("replay runner broke: %s", "".join(traceback.format_exception_only(type(e), None)).strip())
        return run.finish(f"the replay runner broke: {type(e).__name__}")
    log.info("done in %.1f s", time.monotonic() - started)
    return run.finish()


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the SDK core's threads can abort interpreter finalisation (after a failed connect,
    # "PyGILState_Release: thread state ... must be current"), which would replace the exit code by SIGABRT.
    os._exit(status)
