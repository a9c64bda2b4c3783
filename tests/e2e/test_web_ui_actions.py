"""Stopping a deployment from the real Temporal Web UI, clicked through in headless Chromium.

v1                     verified (the revision to come back to)
v2, never ready        while it rolls out, a person opens its page in the Web UI, picks
                       More Actions > Send a Signal > `rollback`, leaves the input EMPTY and
                       submits: the deployment ends rolled_back, v1 runs and polls again, and
                       no workflow task failed on the input-less signal
v2, never ready again  "Request Cancellation", confirmed: v1 is restored and verified before
                       the workflow ends Canceled, and the `status` query answers "canceled"

The browser is Playwright driving the system's Chromium (`apt-get install chromium`;
Playwright's own browser builds are never downloaded). Screenshots of every step go to
the app's directory (printed with -s) for a look when something fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory

from pipeline.contract import STATUS_QUERY
from pipeline.models import DeploymentResult, DeploymentStatus
from tests.e2e.support import (
    EXIT_CANCELED,
    EXIT_ROLLED_BACK,
    NEVER_READY,
    TEMPORAL_NAMESPACE,
    UI_URL,
    Deployed,
    E2eApp,
    Run,
    assert_polling,
    deployed,
    failed_workflow_tasks,
    rolling_out,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

DEPLOY = ("deploy", "--follow")
# Long enough that only the person in front of the Web UI ends the rollout.
SLOW_ROLLOUT = {"progress_deadline_seconds": 600}
UI_TIMEOUT_MS = 20_000


# ----- the browser -----


@dataclass
class WorkflowPage:
    """A workflow's page in the Web UI, open in a fresh browser context."""

    page: Any
    shots: Path
    url: str
    taken: int = 0

    async def screenshot(self, what: str) -> Path:
        self.taken += 1
        path = self.shots / f"{self.taken:02d}-{re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-')}.png"
        with contextlib.suppress(Exception):  # a screenshot is a diagnosis, never the failure itself
            await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def step(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        """Do one thing a person does, with a screenshot after it (and the screenshot named if it fails)."""
        try:
            await action()
        except Exception as err:
            shot = await self.screenshot(f"failed {what}")
            pytest.fail(f"Web UI {self.url}: could not {what}: {type(err).__name__}: {err}\n(screenshot {shot})")
        await self.screenshot(what)


@contextlib.asynccontextmanager
async def workflow_page(browser: Any, app: E2eApp, run_id: str, label: str) -> AsyncIterator[WorkflowPage]:
    """Open the page of run `run_id` of `app`'s deployment as a person would: by its URL, waiting for its actions."""
    shots = app.directory / f"web-ui-{label}"
    shots.mkdir(parents=True, exist_ok=True)
    url = f"{UI_URL}/namespaces/{TEMPORAL_NAMESPACE}/workflows/{app.workflow_id}/{run_id}/history"
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        ui = WorkflowPage(page, shots, url)

        async def load() -> None:
            await page.goto(url)
            # The page is there when it names the workflow and offers the running workflow's actions.
            await page.get_by_text(app.workflow_id).first.wait_for()
            await page.get_by_role("button", name="Request Cancellation").wait_for()

        await ui.step("open the workflow page", load)
        print(f"Web UI: {url}; screenshots in {shots}")
        yield ui
    finally:
        await context.close()


async def send_rollback_signal_with_no_input(ui: WorkflowPage) -> None:
    from playwright.async_api import expect

    page = ui.page
    dialog = page.get_by_role("dialog", name="Send a Signal")

    async def open_dialog() -> None:
        await page.get_by_role("button", name="More Actions").click()
        await page.get_by_role("menuitem", name="Send a Signal").click()
        await dialog.wait_for()

    async def choose_rollback() -> None:
        # The signal names (and descriptions) come from the workflow's own definition
        # (the __temporal_workflow_metadata query): the option reads "rollback <its description>".
        await dialog.get_by_role("button", name="Select a signal").click()
        await dialog.get_by_role("option", name=re.compile(r"^rollback\b")).click()
        await dialog.get_by_role("button", name="rollback").wait_for()  # the select now shows it
        await dialog.get_by_role("listbox").wait_for(state="hidden")

    async def submit_empty() -> None:
        data = dialog.get_by_role("textbox", name="Data")
        text = (await data.inner_text()).strip()
        assert text == "", f"the signal's input box is not empty: {text!r}"
        submit = dialog.get_by_role("button", name="Submit")
        await expect(submit).to_be_enabled()
        await submit.click()
        await page.get_by_text("Workflow signaled").first.wait_for()
        await dialog.wait_for(state="hidden")

    await ui.step("open Send a Signal", open_dialog)
    await ui.step("choose the rollback signal", choose_rollback)
    await ui.step("submit it with no input", submit_empty)


async def request_cancellation(ui: WorkflowPage) -> None:
    page = ui.page
    dialog = page.get_by_role("dialog", name="Cancel Workflow")

    async def open_dialog() -> None:
        await page.get_by_role("button", name="Request Cancellation").click()
        await dialog.wait_for()

    async def confirm() -> None:
        await dialog.get_by_role("button", name="Confirm").click()
        await page.get_by_text("Workflow canceled").first.wait_for()
        await dialog.wait_for(state="hidden")

    await ui.step("click Request Cancellation", open_dialog)
    await ui.step("confirm the cancellation", confirm)


async def shows_status(ui: WorkflowPage, status: str) -> None:
    """Reload the page: its header shows the workflow's final status, and no longer offers to cancel it."""
    await ui.page.reload()
    await ui.page.get_by_text(re.compile(rf"^\s*{status}\s*$", re.IGNORECASE)).first.wait_for()
    await ui.page.get_by_role("button", name="Request Cancellation").wait_for(state="detached")


# ----- the deployments -----


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(chromium_browser: Any, e2e_app: E2eApp) -> Deployed:  # the browser first: no deployment when it is missing
    return deployed(await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v1")), e2e_app)


@pytest.fixture(scope="module")
def v1_template(e2e_app: E2eApp, v1: Deployed) -> tuple[str, Any]:
    """The Deployment's pod template container (image, command) as v1 left it: what every stop must restore."""
    template = template_of(e2e_app)
    assert template[0] == v1.image, template
    return template


@dataclass
class Rollout:
    """A never-ready version's `pipeline deploy --follow`, at its rollout step."""

    process: Any
    started: float
    run_id: str
    handle: WorkflowHandle[Any, DeploymentResult]


async def never_ready_rolling_out(app: E2eApp, client: Client) -> Rollout:
    latest = stack_handle(client, app)
    before = (await latest.describe()).run_id
    started = time.monotonic()
    process = await app.start(*DEPLOY, config=app.config("v2", command=NEVER_READY, rollout=SLOW_ROLLOUT))
    try:
        await eventually(
            rolling_out(latest, app, command=NEVER_READY, after_run=before),
            timeout=90,
            interval=0.5,
            what="the never-ready version rolling out",
        )
    except BaseException:
        await abandon(app, client, process)
        raise
    run_id = (await latest.describe()).run_id
    return Rollout(process, started, run_id, stack_handle(client, app, run_id))


def stack_handle(client: Client, app: E2eApp, run_id: str | None = None) -> WorkflowHandle[Any, DeploymentResult]:
    return client.get_workflow_handle(app.workflow_id, run_id=run_id, result_type=DeploymentResult)


async def abandon(app: E2eApp, client: Client, process: Any) -> None:
    """After a failure: terminate a deployment still running (the next test starts its own) and reap the CLI."""
    with contextlib.suppress(Exception):
        handle = stack_handle(client, app)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate(reason="tests/e2e/test_web_ui_actions.py: cleanup after a failed test")
    if process.returncode is None:
        try:
            out, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
        print(f"$ pipeline {' '.join(DEPLOY)}  # exit {process.returncode} (abandoned)\n{(out + err).decode()}")


async def closed(handle: WorkflowHandle[Any, Any], *, timeout: float) -> WorkflowHistory:
    """The run's history once it has closed; fails at once on a failed workflow task (it would retry forever)."""

    async def check() -> WorkflowHistory:
        history = await handle.fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED and failed_workflow_tasks(
                WorkflowHistory(handle.id, [event])
            ):
                failure = event.workflow_task_failed_event_attributes.failure
                pytest.fail(
                    f"workflow task failed (event {event.event_id}) in {handle.id} ({handle.run_id}): "
                    f"{failure.message}\n{failure.stack_trace[-2000:]}"
                )
        assert history.events[-1].event_type in CLOSE_EVENTS, "still running"
        return history

    return await eventually(check, timeout=timeout, interval=1, what=f"{handle.id} ({handle.run_id}) closing")


CLOSE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def template_of(app: E2eApp) -> tuple[str, Any]:
    """The Deployment's pod template container: image and command."""
    container = app.deployment()["spec"]["template"]["spec"]["containers"][0]
    return container["image"], container.get("command")


@dataclass(frozen=True)
class Activity:
    name: str
    summary: str
    scheduled: int  # event ids
    completed: int | None


def activities(history: WorkflowHistory) -> list[Activity]:
    """Every activity with the ids of its scheduled and completed events (None if it did not complete)."""
    scheduled: dict[int, tuple[str, str]] = {}
    completed: dict[int, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            summary = json.loads(event.user_metadata.summary.data or b'""') if event.user_metadata.HasField("summary") else ""
            scheduled[event.event_id] = (attrs.activity_type.name, summary)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed[event.activity_task_completed_event_attributes.scheduled_event_id] = event.event_id
    return [Activity(name, summary, sid, completed.get(sid)) for sid, (name, summary) in sorted(scheduled.items())]


def only_event(history: WorkflowHistory, event_type: int) -> Any:
    found = [e for e in history.events if e.event_type == event_type]
    assert len(found) == 1, f"expected one {EventType.Name(event_type)} event, found {len(found)}"
    return found[0]


async def act_in_the_web_ui(
    browser: Any,
    app: E2eApp,
    client: Client,
    rollout: Rollout,
    label: str,
    act: Callable[[WorkflowPage], Awaitable[None]],
    *,
    ends: str,
) -> tuple[WorkflowHistory, Run, float]:
    """On the rolling-out deployment's page: `act`, wait until the run closes and the page shows `ends`.

    Returns its history, the `pipeline deploy --follow` run, and the seconds from the click to the close.
    """
    try:
        async with workflow_page(browser, app, rollout.run_id, label) as ui:
            clicked = time.monotonic()
            await act(ui)
            history = await closed(rollout.handle, timeout=150)
            seconds = time.monotonic() - clicked
            await ui.step(f"see it {ends} after a reload", lambda: shows_status(ui, ends))
    except BaseException:
        await abandon(app, client, rollout.process)
        raise
    return history, await app.finish(rollout.process, DEPLOY, started=rollout.started, timeout=60), seconds


# ----- the tests -----


async def test_send_a_signal_rollback_with_no_input_rolls_back_to_v1(
    chromium_browser: Any,
    e2e_app: E2eApp,
    v1: Deployed,
    v1_template: tuple[str, Any],
    stack_client: Client,
    timings: dict[str, float],
) -> None:
    rollout = await never_ready_rolling_out(e2e_app, stack_client)
    assert template_of(e2e_app) != v1_template, "the never-ready version was not applied"
    history, deploy, seconds = await act_in_the_web_ui(
        chromium_browser, e2e_app, stack_client, rollout, "signal", send_rollback_signal_with_no_input, ends="Completed"
    )
    timings["Web UI: rollback signal (no input) -> rolled back, v1 verified"] = seconds

    signal = only_event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).workflow_execution_signaled_event_attributes
    assert signal.signal_name == "rollback"
    assert not signal.input.payloads, f"the Web UI sent an input: {signal.input}"
    result = await rollout.handle.result()
    assert result.outcome == "rolled_back", result
    assert result.restored_image == v1.image, result
    deploy.expect(EXIT_ROLLED_BACK, diagnose=e2e_app.diagnose)
    assert template_of(e2e_app) == v1_template, "the Deployment's pod template is not v1's again"
    await eventually(lambda: assert_polling(stack_client, e2e_app, v1), timeout=30, interval=1, what="v1 polling")


async def test_request_cancellation_restores_v1_then_ends_canceled(
    chromium_browser: Any,
    e2e_app: E2eApp,
    v1: Deployed,
    v1_template: tuple[str, Any],
    stack_client: Client,
    timings: dict[str, float],
) -> None:
    # Independent of the test before: if it failed, its deployment was terminated mid-rollout.
    rollout = await never_ready_rolling_out(e2e_app, stack_client)
    history, deploy, seconds = await act_in_the_web_ui(
        chromium_browser, e2e_app, stack_client, rollout, "cancel", request_cancellation, ends="Canceled"
    )
    timings["Web UI: cancellation -> v1 restored and verified, Canceled"] = seconds

    description = await rollout.handle.describe()
    assert description.status == WorkflowExecutionStatus.CANCELED, f"the workflow ended {description.status}"
    requested = only_event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED).event_id
    canceled = only_event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED).event_id
    # Between the request and the end: v1 re-applied, rolled out, verified with v1's build id, recorded.
    restore = [a for a in activities(history) if a.scheduled > requested]
    assert [a.name for a in restore] == ["apply_manifests", "wait_for_rollout", "verify_polling", "record_revision"], (
        f"after the cancellation request (event {requested}) v1 must be re-applied, rolled out, verified and recorded "
        f"before the workflow ends Canceled (event {canceled}); the activities scheduled after the request: {restore}"
    )
    assert all(a.completed is not None and a.completed < canceled for a in restore), restore
    short = v1.build_id[7:19]
    assert short in restore[2].summary and restore[3].summary.startswith(f"Record {short}"), restore
    status = await rollout.handle.query(STATUS_QUERY, result_type=DeploymentStatus)
    assert status.step == "canceled", status
    deploy.expect(EXIT_CANCELED, diagnose=e2e_app.diagnose)
    assert f"Canceled: restored {v1.image}, verified polling" in deploy.stderr, deploy.output
    assert template_of(e2e_app) == v1_template, "the Deployment's pod template is not v1's again"
    await eventually(lambda: assert_polling(stack_client, e2e_app, v1), timeout=30, interval=1, what="v1 polling")
