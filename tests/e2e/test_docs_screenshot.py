"""The picture in docs/architecture.md: a deployment's history in the real Temporal Web UI.

v1 of a small app (the sample worker, as every e2e module deploys it) is deployed with the
real CLI; its workflow page is opened in headless Chromium (the system's, under Playwright, as
tests/e2e/test_web_ui_actions.py drives it) once the page shows the deployment's step summaries
and its Completed status, and saved as a PNG. With DOCS_SCREENSHOTS=1 the PNG is written to
docs/images/deployment-history.png (the file the docs link), else to the test's tmp_path:

    DOCS_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_docs_screenshot.py

Like every e2e test it skips, naming what is missing, when the stack or chromium is not there.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.support import REPLICAS, Deployed, E2eApp, deployed
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.e2e

DOCS_IMAGE = REPO_ROOT / "docs" / "images" / "deployment-history.png"
UI_TIMEOUT_MS = 20_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIEWPORT = {"width": 1600, "height": 1000}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def v1(chromium_browser: Any, e2e_app: E2eApp) -> Deployed:  # the browser first: no deployment when it is missing
    return deployed(await e2e_app.cli("deploy", "--follow", config=e2e_app.config("v1")), e2e_app)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; AssertionError when `data` is not a PNG."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG: starts with {data[:8]!r}"
    assert data[12:16] == b"IHDR", "a PNG without IHDR first"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def screenshot_path(tmp_path: Path) -> Path:
    return DOCS_IMAGE if os.environ.get("DOCS_SCREENSHOTS") == "1" else tmp_path / DOCS_IMAGE.name


async def test_the_deployment_history_page_is_saved_as_a_png(
    chromium_browser: Any, e2e_app: E2eApp, v1: Deployed, tmp_path: Path
) -> None:
    url = v1.run.web_ui_url
    assert url.endswith(f"/{v1.run.run_id}/history"), url
    target = screenshot_path(tmp_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    context = await chromium_browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        await page.goto(url)
        # The page is complete when it names the workflow, shows its final status and the steps' summaries.
        await page.get_by_text(e2e_app.workflow_id).first.wait_for()
        await page.get_by_text(re.compile(r"^\s*Completed\s*$", re.IGNORECASE)).first.wait_for()
        await page.get_by_text(f"Deploy {e2e_app.name} to local ({REPLICAS} replicas)").first.wait_for()
        await page.get_by_text("as the last verified revision").first.wait_for()
        await page.screenshot(path=str(target), full_page=True)
    finally:
        await context.close()
    data = target.read_bytes()
    width, height = png_size(data)
    assert width >= VIEWPORT["width"] and height >= VIEWPORT["height"], f"{target}: {width}x{height}, smaller than the page"
    assert 20_000 <= len(data) <= 20_000_000, f"{target}: {len(data)} bytes, not a rendered page"
    print(f"Web UI page {url} saved as {target} ({width}x{height}, {len(data)} bytes)")


def test_png_size_reads_a_png_header() -> None:
    header = PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 1600, 1000) + b"\x08\x06\x00\x00\x00"
    assert png_size(header) == (1600, 1000)
    with pytest.raises(AssertionError, match="not a PNG"):
        png_size(b"GIF89a" + header)
