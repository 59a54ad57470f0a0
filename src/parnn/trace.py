"""Timeline events -> a Chrome trace (JSON) that Perfetto and chrome://tracing draw, one
named track per pipeline stage or data-parallel worker.

Each rank records spans on its own :class:`TraceRecorder`, sends ``recorder.events``
(plain dicts, picklable) to rank 0, and rank 0 writes them all with
:func:`write_chrome_trace`::

    recorder = TraceRecorder(track=rank, track_name=f"stage {rank}")
    with recorder.span("forward", "compute", microbatch=3):
        ...
    events = gather_to_rank_0(recorder.events)
    write_chrome_trace(out / "trace.json", events, metadata={"schedule": "1f1b"})

Clock: ``time.perf_counter`` (CLOCK_MONOTONIC on Linux), shared by every process of one
machine, so the spans of different ranks line up. Spans from different machines do not
share a clock and are only comparable within a machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parnn.errors import DataError
from parnn.results import atomic_write_text, to_json

__all__ = [
    "TraceRecorder",
    "chrome_trace",
    "load_chrome_trace",
    "track_names",
    "write_chrome_trace",
]

_EVENT_KEYS = ("name", "category", "start_s", "duration_s", "track", "track_name", "process_name")


class TraceRecorder:
    """Collects the spans of one track (one stage, one worker) as plain dicts.

    An event is ``{"name", "category", "start_s", "duration_s", "track", "track_name",
    "process_name", "args"}`` with times in seconds of ``time.perf_counter``.
    """

    def __init__(self, track: int, track_name: str | None = None, process_name: str = "parnn"):
        if isinstance(track, bool) or not isinstance(track, int) or track < 0:
            raise ValueError(f"track={track!r}: must be an integer >= 0 (e.g. the rank)")
        self.track = track
        self.track_name = track_name if track_name is not None else f"track {track}"
        self.process_name = process_name
        self.events: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.events)

    def add(
        self, name: str, category: str, start_s: float, duration_s: float, **args: Any
    ) -> dict[str, Any]:
        """Record a span that started at ``start_s`` (perf_counter seconds) and lasted
        ``duration_s`` seconds; ``args`` show in the viewer's detail pane."""
        if not duration_s >= 0:
            raise ValueError(f"duration_s={duration_s}: a span cannot last less than 0 s")
        event = {
            "name": name,
            "category": category,
            "start_s": float(start_s),
            "duration_s": float(duration_s),
            "track": self.track,
            "track_name": self.track_name,
            "process_name": self.process_name,
            "args": dict(args),
        }
        self.events.append(event)
        return event

    @contextmanager
    def span(self, name: str, category: str, **args: Any) -> Iterator[dict[str, Any]]:
        """Time the ``with`` block. Yields the span's args, to which the block may add
        (``info["loss"] = ...``); a block that raises is recorded with ``error``."""
        details = dict(args)
        start = time.perf_counter()
        try:
            yield details
        except BaseException as exc:
            details["error"] = type(exc).__name__
            raise
        finally:
            self.add(name, category, start, time.perf_counter() - start, **details)


def _flatten(items: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Recorders, events, or lists of events (one per rank, as gathered) -> events."""
    events: list[Mapping[str, Any]] = []
    for item in items:
        if isinstance(item, TraceRecorder):
            events.extend(item.events)
        elif isinstance(item, Mapping):
            events.append(item)
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            events.extend(_flatten(item))
        else:
            raise DataError(
                f"cannot trace {type(item).__name__}: pass TraceRecorders, event dicts or "
                "lists of event dicts"
            )
    for index, event in enumerate(events):
        missing = [key for key in _EVENT_KEYS if key not in event]
        if missing:
            raise DataError(
                f"trace event {index} lacks {', '.join(missing)}: record events with "
                "TraceRecorder.add or TraceRecorder.span"
            )
    return events


def chrome_trace(
    recorders_or_events: Iterable[Any], metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Chrome trace object: complete events (``ph: "X"``, ``ts``/``dur`` in
    microseconds from the earliest span, sorted by time) and ``ph: "M"`` metadata events
    naming each process and track, in track order."""
    events = _flatten(recorders_or_events)
    origin_s = min((event["start_s"] for event in events), default=0.0)
    process_ids: dict[str, int] = {}
    tracks: dict[tuple[int, int], str] = {}
    spans: list[dict[str, Any]] = []
    for event in events:
        pid = process_ids.setdefault(str(event["process_name"]), len(process_ids) + 1)
        tid = int(event["track"])
        tracks.setdefault((pid, tid), str(event["track_name"]))
        spans.append(
            {
                "name": event["name"],
                "cat": event["category"],
                "ph": "X",
                "ts": round((event["start_s"] - origin_s) * 1e6, 3),  # microseconds
                "dur": round(event["duration_s"] * 1e6, 3),  # microseconds
                "pid": pid,
                "tid": tid,
                "args": dict(event.get("args", {})),
            }
        )
    spans.sort(key=lambda span: (span["ts"], span["pid"], span["tid"]))
    named: list[dict[str, Any]] = []
    for process_name, pid in process_ids.items():
        named.append(_meta("process_name", pid, 0, {"name": process_name}))
        named.append(_meta("process_sort_index", pid, 0, {"sort_index": pid}))
    for (pid, tid), track_name in sorted(tracks.items()):
        named.append(_meta("thread_name", pid, tid, {"name": track_name}))
        named.append(_meta("thread_sort_index", pid, tid, {"sort_index": tid}))
    return {
        "traceEvents": named + spans,
        "displayTimeUnit": "ms",
        "metadata": {"clock": "time.perf_counter", "origin_s": origin_s, **(metadata or {})},
    }


def _meta(kind: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args}


def write_chrome_trace(
    path: str | os.PathLike[str],
    recorders_or_events: Iterable[Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`chrome_trace` to ``path`` (atomically); open it in ui.perfetto.dev."""
    return atomic_write_text(
        path, to_json(chrome_trace(recorders_or_events, metadata), indent=None)
    )


def load_chrome_trace(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a trace written by :func:`write_chrome_trace` (or any JSON-object trace)."""
    try:
        with open(path, encoding="utf-8") as handle:
            trace = json.load(handle)
    except FileNotFoundError:
        raise DataError(f"trace {path} does not exist: write it with write_chrome_trace") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"trace {path} is not valid JSON ({exc}); rewrite it") from None
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise DataError(f"trace {path} has no traceEvents list: not a Chrome trace object")
    return trace


def track_names(trace: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """``(pid, tid) -> track name`` from the trace's thread_name metadata events."""
    return {
        (event["pid"], event["tid"]): event["args"]["name"]
        for event in trace["traceEvents"]
        if event.get("ph") == "M" and event.get("name") == "thread_name"
    }
