"""`bootstrap/stack down --purge` on a state directory of the test's own (STACK_DIR, free ports): never the shared stack's.

`down` finds nothing of this directory's running (no pid files), then `--purge` removes the directory and says
what it held; a second run has nothing to remove. While a service on the stack's ports still answers (one
`down` did not start, which may use the directory), it refuses in one line and removes nothing.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.__main__ import main
from tests.helpers.processes import free_port

pytestmark = pytest.mark.unit


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "stack-state"
    for part in ("cluster/kubelet", "registry/data", "temporal", "logs", "run"):
        (state / part).mkdir(parents=True)
    (state / "registry" / "data" / "blob").write_bytes(b"x" * 2_000_000)
    (state / "logs" / "cluster.log").write_text("log\n")
    monkeypatch.setenv("STACK_DIR", str(state))
    for name in ("STACK_TEMPORAL_PORT", "STACK_TEMPORAL_UI_PORT", "STACK_REGISTRY_PORT", "STACK_CLUSTER_PORT"):
        monkeypatch.setenv(name, str(free_port()))
    return state


def test_down_purge_removes_the_state_directory_and_says_what_it_held(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down", "--purge"]) == 0
    out = capsys.readouterr().out
    assert not state.exists()
    assert f"purge: removed {state} (cluster, logs, registry, run, temporal; 2.0 MB)" in out.splitlines(), out
    assert main(["down", "--purge"]) == 0
    assert f"purge: nothing to remove ({state} does not exist)" in capsys.readouterr().out


def test_down_without_purge_keeps_it(state: Path) -> None:
    assert main(["down"]) == 0
    assert (state / "registry" / "data" / "blob").exists()


@pytest.fixture
def registry_answering(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Something on the stack's registry port that `down` did not start."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    monkeypatch.setenv("STACK_REGISTRY_PORT", str(server.server_address[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_purge_refuses_while_a_service_it_did_not_start_answers(
    state: Path, registry_answering: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["down", "--purge"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [
        "bootstrap down: --purge: registry still answers (not started by bootstrap, so `down` left it) and may use "
        f"{state}; stop it, then run `bootstrap/stack down --purge` again; nothing removed"
    ]
    assert (state / "registry" / "data" / "blob").exists()


def test_purge_goes_with_down_of_the_whole_stack(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down", "--purge", "--only", "registry"]) == 1
    assert main(["status", "--purge"]) == 1
    assert "--purge goes with `down` and the whole stack (no --only)" in capsys.readouterr().err
    assert state.exists()
