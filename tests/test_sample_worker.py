"""The sample worker against the session's real dev server: in-process, then as a process.

No mocks: "Temporal is not reachable yet" is a real TCP proxy that holds
connections until the test opens it, and the SIGTERM test signals a real
`python -m sample_worker.worker` while one of its activities is in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from sample_worker.settings import Settings, SettingsError, load_settings
from sample_worker.worker import build_worker, run
from sample_worker.workflows import OrderInput, OrderResult, OrderWorkflow
from tests.helpers import REPO_ROOT, eventually, unique_name
from tests.helpers.processes import free_port, wait_for_sigterm_handler
from tests.helpers.workers import (
    ChargeRecord,
    charge_record,
    expect_charge_in_flight,
    expect_poller,
    expect_status,
    finish_with_fresh_worker,
    http_get,
)
from worker_health.server import HealthServer, HealthState

pytestmark = pytest.mark.unit

# Variables the worker reads; stripped from inherited environments so a developer's shell cannot leak in.
WORKER_VARS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CA_FILE",
    "TEMPORAL_TLS_CERT_FILE",
    "TEMPORAL_TLS_KEY_FILE",
    "TEMPORAL_API_KEY",
    "POD_NAME",
    "POD_NAMESPACE",
    "BUILD_ID",
    "HEALTH_HOST",
    "HEALTH_PORT",
    "SHUTDOWN_GRACE_SECONDS",
    "TEMPORAL_WORKER_BUILD_ID",
    "TEMPORAL_DEPLOYMENT_NAME",
    "TEMPORAL_USE_WORKER_VERSIONING",
)


# ---------------------------------------------------------------- helpers


def worker_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any worker variable, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class GatedProxy:
    """A TCP proxy to the dev server that holds every connection until `open()`.

    Until then the worker's connect hangs exactly as it does while a real
    frontend is unreachable, so readiness can be watched before and after.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._gate = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> GatedProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def open(self) -> None:
        self._gate.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._gate.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


# ---------------------------------------------------------------- workflows


async def test_order_workflow_completes(client: Client, task_queue: str) -> None:
    order_id = unique_name("order")
    async with build_worker(client, Settings(task_queue=task_queue, pod_name="pytest", build_id="t1")):
        result = await client.execute_workflow(
            OrderWorkflow.run, OrderInput(order_id=order_id), id=order_id, task_queue=task_queue
        )
    assert result == OrderResult(
        order_id=order_id, reservation_id=f"res-{order_id}", payment_id=f"pay-{order_id}", tracking_id=f"trk-{order_id}"
    )


async def test_invalid_order_fails_at_once(client: Client, task_queue: str) -> None:
    order_id = unique_name("order")
    async with build_worker(client, Settings(task_queue=task_queue, pod_name="pytest", build_id="t1")):
        with pytest.raises(WorkflowFailureError) as caught:
            await client.execute_workflow(
                OrderWorkflow.run, OrderInput(order_id=order_id, quantity=0), id=order_id, task_queue=task_queue
            )
    activity_err = caught.value.cause
    assert isinstance(activity_err, ActivityError)
    assert activity_err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    assert isinstance(activity_err.cause, ApplicationError)
    assert activity_err.cause.type == "InvalidOrder"


# ---------------------------------------------------------------- identity and health


async def test_identity_and_build_id_reach_describe_task_queue(client: Client, task_queue: str, temporal_address: str) -> None:
    settings = Settings(
        temporal_address=temporal_address, task_queue=task_queue, pod_name="pod-7f9c", build_id="sha-1234abc", health_port=0
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run(settings, stop))
    try:
        found = await eventually(
            lambda: expect_poller(client, task_queue, identity="pod-7f9c@sha-1234abc", build_id="sha-1234abc"),
            what="pollers with the pod@build identity",
        )
        assert found["workflow"].worker_version_capabilities.build_id == "sha-1234abc"
        # Reporting the build id must not opt the task queue into versioning.
        assert not found["workflow"].worker_version_capabilities.use_versioning
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 30) == 0


async def test_readiness_follows_connection_and_shutdown(client: Client, task_queue: str, temporal_address: str) -> None:
    port = free_port()
    stop = asyncio.Event()
    async with GatedProxy(temporal_address) as proxy:
        settings = Settings(
            temporal_address=proxy.address,
            task_queue=task_queue,
            pod_name="ready-pod",
            build_id="r1",
            health_host="127.0.0.1",
            health_port=port,
            shutdown_grace_seconds=20,
        )
        running = asyncio.create_task(run(settings, stop))
        handle: WorkflowHandle[OrderWorkflow, OrderResult] | None = None
        try:
            await eventually(lambda: expect_status(port, "/healthz", 200), what="/healthz 200")
            # Temporal is unreachable: alive but not ready, and it stays that way.
            for _ in range(5):
                body = await expect_status(port, "/readyz", 503)
                await asyncio.sleep(0.1)
            assert body["status"] == "not ready"

            proxy.open()
            body = await eventually(lambda: expect_status(port, "/readyz", 200), what="/readyz 200")
            assert body == {
                "pod": "ready-pod",
                "build_id": "r1",
                "task_queue": task_queue,
                "namespace": None,
                "ready": True,
                "status": "ready",
            }

            # Hold an activity in flight so the shutdown lasts long enough to be seen.
            order_id = unique_name("order")
            handle = await client.start_workflow(
                OrderWorkflow.run, OrderInput(order_id=order_id, delay_seconds=3), id=order_id, task_queue=task_queue
            )
            await eventually(lambda: expect_charge_in_flight(handle), what="charge_payment in flight")
            stop.set()
            await eventually(
                lambda: expect_status(port, "/readyz", 503), timeout=2, interval=0.05, what="/readyz 503 while draining"
            )
            assert not running.done(), "the worker must still be draining its in-flight activity"
            await expect_status(port, "/healthz", 200)
            assert await asyncio.wait_for(running, 30) == 0
            with pytest.raises(AssertionError, match="no answer"):
                await http_get(port, "/healthz")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            if handle is not None:
                await handle.terminate("test over")


async def test_health_server_answers_unknown_paths_with_404() -> None:
    server = HealthServer(HealthState(pod="p", build_id="b", task_queue="q"), host="127.0.0.1", port=0)
    await server.start()
    try:
        status, body = await http_get(server.port, "/metrics")
        assert (status, body) == (404, {"error": "not found; try /healthz or /readyz"})
    finally:
        await server.close()


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_identity() -> None:
    settings = load_settings({})
    assert settings.temporal_address == "127.0.0.1:7233"
    assert (settings.namespace, settings.task_queue, settings.build_id) == ("default", "sample-worker", "dev")
    assert (settings.health_host, settings.health_port, settings.shutdown_grace_seconds) == ("0.0.0.0", 0, 25.0)
    assert settings.tls is False and settings.api_key is None
    assert settings.identity == f"{socket.gethostname()}@dev"
    assert load_settings({"POD_NAME": "web-1", "BUILD_ID": "sha256:ab12"}).identity == "web-1@sha256:ab12"


def test_api_key_turns_tls_on_and_never_shows() -> None:
    settings = load_settings({"TEMPORAL_API_KEY": "fake-key-0123456789"})
    assert settings.tls is True
    assert settings.api_key == "fake-key-0123456789"
    assert "fake-key-0123456789" not in repr(settings)


EXISTING_FILE = str(REPO_ROOT / "pyproject.toml")

BAD_SETTINGS: list[tuple[dict[str, str], str]] = [
    ({"TEMPORAL_ADDRESS": "localhost"}, "TEMPORAL_ADDRESS must be host:port (for example 127.0.0.1:7233), got 'localhost'"),
    (
        {"TEMPORAL_ADDRESS": "localhost:http"},
        "TEMPORAL_ADDRESS must be host:port (for example 127.0.0.1:7233), got 'localhost:http'",
    ),
    ({"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS must be true or false, got 'maybe'"),
    ({"HEALTH_PORT": "eighty"}, "HEALTH_PORT must be a port number from 0 to 65535, got 'eighty'"),
    ({"HEALTH_PORT": "70000"}, "HEALTH_PORT must be a port number from 0 to 65535, got '70000'"),
    ({"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS must be a non-negative number of seconds, got '-1'"),
    ({"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS must be a non-negative number of seconds, got 'soon'"),
    (
        {"TEMPORAL_TLS_CA_FILE": "/nonexistent/ca.pem"},
        "TEMPORAL_TLS_CA_FILE points to '/nonexistent/ca.pem', which is not a readable file",
    ),
    (
        {"TEMPORAL_TLS_CERT_FILE": EXISTING_FILE},
        "TEMPORAL_TLS_CERT_FILE and TEMPORAL_TLS_KEY_FILE must be set together (only TEMPORAL_TLS_CERT_FILE is set)",
    ),
    (
        {"TEMPORAL_API_KEY": "fake-key-0123456789", "TEMPORAL_TLS": "false"},
        "TEMPORAL_TLS=false conflicts with TEMPORAL_API_KEY; unset TEMPORAL_TLS or set it to true",
    ),
    ({"TEMPORAL_API_KEY": "fake-key 0123456789"}, "TEMPORAL_API_KEY contains whitespace; check how the Secret was created"),
    ({"BUILD_ID": "v1 beta"}, "BUILD_ID must be at most 255 characters without spaces, got 'v1 beta'"),
]


@pytest.mark.parametrize(
    ("env", "message"), BAD_SETTINGS, ids=[m.split(" ")[0] + "-" + str(i) for i, (_, m) in enumerate(BAD_SETTINGS)]
)
def test_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value) == message


@pytest.mark.parametrize("case", [0, 5, 10], ids=["address", "grace", "api-key"])
def test_bad_setting_exits_2_with_one_line(case: int) -> None:
    env, message = BAD_SETTINGS[case]
    proc = subprocess.run(
        [sys.executable, "-m", "sample_worker.worker"],
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"sample-worker: configuration error: {message}\n"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "0123456789" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- the process and SIGTERM


def test_a_sigterm_during_start_up_is_heard_and_ends_the_process_cleanly(temporal_address: str, tmp_path: Path) -> None:
    """`python -m sample_worker` (the image's CMD) handles SIGTERM before its slow imports.

    In a container it is PID 1, which the kernel gives no default SIGTERM action: a
    signal before the handler would be lost and the pod would linger its whole grace
    period. Here (not PID 1) a lost handler shows as death by the signal instead of exit 0.
    """
    env = worker_env(TEMPORAL_ADDRESS=temporal_address, HEALTH_HOST="127.0.0.1", HEALTH_PORT=str(free_port()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO_ROOT
    )
    wait_for_sigterm_handler(proc)  # the early handler, installed before the worker module's imports
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"Received SIGTERM while starting" in out, out.decode()


async def test_sigterm_lets_the_inflight_activity_finish(
    client: Client, task_queue: str, temporal_address: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "worker.log"
    env = worker_env(
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE=task_queue,
        POD_NAME="term-pod",
        BUILD_ID="b-term",
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(port),
        SHUTDOWN_GRACE_SECONDS="20",
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sample_worker.worker"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    try:
        await eventually(lambda: expect_status(port, "/readyz", 200), what="/readyz 200")
        order_id = unique_name("order")
        handle = await client.start_workflow(
            OrderWorkflow.run, OrderInput(order_id=order_id, delay_seconds=3), id=order_id, task_queue=task_queue
        )
        await eventually(lambda: expect_charge_in_flight(handle), what="charge_payment in flight")

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: expect_status(port, "/readyz", 503), timeout=2, interval=0.05, what="/readyz 503 while draining")
        code = await asyncio.to_thread(proc.wait, 30)
        took = time.monotonic() - signalled

        log_text = log_path.read_text()
        assert code == 0, log_text
        assert took < 20, f"exit took {took:.1f}s, beyond SHUTDOWN_GRACE_SECONDS"
        for line in (
            "Starting worker... Awaiting tasks",
            "Received SIGTERM",
            "Shutdown requested: stopped accepting tasks, waiting up to 20.0s for in-flight activities",
            f"Charged 1000 cents for order {order_id}",
            "Worker stopped cleanly",
        ):
            assert line in log_text, f"{line!r} missing from the worker log:\n{log_text}"
        assert log_text.index("Received SIGTERM") < log_text.index(f"Charged 1000 cents for order {order_id}")

        result = await finish_with_fresh_worker(client, handle, task_queue)
        assert result.payment_id == f"pay-{order_id}"
        assert await charge_record(handle) == ChargeRecord(
            started_by="term-pod@b-term", attempt=1, completed_by="term-pod@b-term"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_pipeline_worker_also_hears_a_sigterm_during_start_up(temporal_address: str, tmp_path: Path) -> None:
    """`python -m pipeline worker` (the pipeline-worker image's CMD) installs the same early handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE", "TEMPORAL_"))}
    env.update(TEMPORAL_ADDRESS=temporal_address, PIPELINE__PIPELINE__TASK_QUEUE=unique_name("early-term"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    wait_for_sigterm_handler(proc)  # the early handler, installed before the CLI's imports
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert b"SIGTERM came while starting" in out, out.decode()
