"""Watches pumped by a thread each into one queue: the shape the rollout wait and the readiness gate share.

    events: queue.Queue[Event] = queue.Queue()
    Pump("pods", events, stop, rv, stream=lambda w, rv: pod_events(kc, w, ...), relist=...).start()

A pump resumes from its last resourceVersion and relists after a 410 (Gone);
it hands over events, relisted items and its own failure, so only the
consuming thread touches its state, and judging happens the moment an event
arrives rather than after a watch slice ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import watch

from pipeline.kube.errors import KubeExpired, api_errors

# (source, event type or "RELIST" or "ERROR", object / list of objects / exception)
Event = tuple[str, str, Any]
Stream = Callable[[watch.Watch, str], Iterator[tuple[str, dict[str, Any]]]]
Relist = Callable[[], tuple[list[dict[str, Any]], str]]


class Pump(threading.Thread):
    """Streams one watch into `out`, resuming from its resourceVersion and relisting after 410."""

    def __init__(
        self,
        source: str,
        out: queue.Queue[Event] | Callable[[Event], None],
        stop: threading.Event,
        rv: str,
        stream: Stream,
        relist: Relist,
    ) -> None:
        super().__init__(name=f"watch-{source}", daemon=True)
        self.put = out.put if isinstance(out, queue.Queue) else out
        self.source, self.stop, self.rv, self.stream, self.relist = source, stop, rv, stream, relist

    def run(self) -> None:
        w = new_watch()
        while not self.stop.is_set():
            try:
                for kind, obj in self.stream(w, self.rv):
                    self.rv = str(obj.get("metadata", {}).get("resourceVersion") or self.rv)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.put((self.source, kind, obj))
                    if self.stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        return
            except KubeExpired:
                items, self.rv = self.relist()
                self.put((self.source, "RELIST", items))
            except Exception as exc:  # handed to the consuming thread, which raises it
                self.put((self.source, "ERROR", exc))
                return


def new_watch() -> watch.Watch:
    """A Watch that yields the API's JSON as dicts (no model classes to trip over)."""
    return watch.Watch(return_type="object")  # type: ignore[no-untyped-call]


def events(w: watch.Watch, func: Callable[..., Any], what: str, **kwargs: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) of each event of the list function `func` watched with `kwargs`; KubeErrors about `what`."""
    with api_errors(what):
        stream = w.stream(func, allow_watch_bookmarks=True, _request_timeout=(5, 30), **kwargs)  # type: ignore[no-untyped-call]
        for event in stream:
            yield str(event["type"]), event["raw_object"]
