"""ARM's token buckets (bootstrap/azure_arm/throttle.py) and the ACR builder's poll schedule, without a stack."""

from __future__ import annotations

import pytest

from pipeline.builders import acr as acr_builder

pytestmark = pytest.mark.unit


def test_buckets_refill_and_the_global_bucket_is_fifteen_times_bigger(monkeypatch: pytest.MonkeyPatch) -> None:
    from bootstrap.azure_arm import throttle
    from bootstrap.azure_arm.faults import Faults

    now = [1000.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: now[0])
    faults = Faults()
    faults.add({"kind": "throttle", "scale": 10})
    buckets = throttle.Throttle(faults)
    first = buckets.admit("SUB", "a", "GET")
    assert first is not None and (first.remaining, first.remaining_global) == (24, 374)
    for _ in range(24):
        assert buckets.admit("sub", "a", "GET").allowed  # type: ignore[union-attr]
    refused = buckets.admit("sub", "a", "GET")
    assert refused is not None and not refused.allowed and refused.retry_after == 1
    other = buckets.admit("sub", "b", "GET")  # another principal: its own bucket, the same global one
    assert other is not None and other.allowed and other.remaining_global == 349
    assert buckets.admit("sub", "a", "DELETE").kind == "deletes"  # type: ignore[union-attr]
    assert buckets.admit("sub", "a", "POST").kind == "writes"  # type: ignore[union-attr]
    now[0] += 2  # 2.5 reads a second
    assert buckets.admit("sub", "a", "GET").allowed  # type: ignore[union-attr]
    faults.add({"kind": "throttle", "enabled": False})
    assert buckets.admit("sub", "a", "GET") is None
    faults.clear(requests=False)  # Azure's own figures again
    assert buckets.admit("sub", "a", "GET").remaining == 249  # type: ignore[union-attr]


def test_a_one_minute_build_is_polled_at_most_twenty_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder's follow loop against a fake session whose run ends after 60 s: ARM reads counted."""
    from pipeline.azure import acr

    clock = [0.0]
    monkeypatch.setattr(acr_builder.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(acr_builder.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    class Session:
        reads = 0
        written = b"line\n"

        def get_run(self, run_id: str) -> acr.RunState:
            Session.reads += 1
            return acr.RunState(run_id, "Succeeded" if clock[0] >= 60 else "Running")

        def log_link(self, run_id: str) -> str:
            return "link"

        def log_properties(self, link: str) -> acr.LogProperties:
            return acr.LogProperties(len(self.written), "Succeeded" if clock[0] >= 61 else "")

        def read_log(self, link: str, offset: int) -> bytes:
            return self.written[offset:]

    reporter = acr_builder.Reporter(heartbeat=lambda *a: None, log=lambda line: None, cancelled=lambda: False)
    state, tail = acr_builder._follow(Session(), "r1", 0, reporter)  # type: ignore[arg-type]
    assert state.status == "Succeeded" and tail == ["line"]
    assert Session.reads <= 20, Session.reads


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("pipeline-base:bookworm", "pipeline-base:bookworm"),
        ("python", "python:latest"),
        ("library/python:3.11-slim", "library/python:3.11-slim"),
        ("myorg/tool:1", "myorg/tool:1"),
        ("127.0.0.1:5000/pipeline-base:bookworm", None),
        ("myacr.azurecr.io/base:1", None),
        ("localhost/base:1", None),
        ("base@sha256:" + "a" * 64, None),
        ("--no-cache", None),
        ("hello world", None),
        ("", None),
    ],
)
def test_which_build_argument_values_are_docker_hub_style_images(value: str, name: str | None) -> None:
    from pipeline.azure import base_image

    assert base_image.docker_hub_name(value) == name


def test_a_base_argument_is_sent_as_the_registrys_copy_only_when_the_registry_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.azure import base_image

    held = {("myacr.azurecr.io/pipeline-base", "bookworm")}
    asked: list[tuple[str, str]] = []

    def find_image(repository: str, tag: str, **kwargs: object) -> object:
        asked.append((repository, tag))
        return object() if (repository, tag) in held else None

    monkeypatch.setattr(base_image, "find_image", find_image)
    lines: list[str] = []
    args = {"BASE_IMAGE": "pipeline-base:bookworm", "PY": "python:3.11-slim-bookworm", "MODE": "fast mode", "N": "3"}
    resolved = base_image.registry_copies(args, "myacr.azurecr.io", auth=None, log=lines.append)
    assert resolved == dict(args, BASE_IMAGE="myacr.azurecr.io/pipeline-base:bookworm")
    assert ("myacr.azurecr.io/python", "3.11-slim-bookworm") in asked and len(lines) == 1
