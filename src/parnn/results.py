"""Results are data first: JSON and JSON-lines files written atomically, with the facts
of the machine, the versions and the settings that produced them."""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "append_jsonl",
    "settings_differences",
    "atomic_write_bytes",
    "atomic_write_text",
    "machine_facts",
    "read_json",
    "read_jsonl",
    "write_json",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that a reader
    never sees half a file and a crash never leaves one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(payload: object, *, indent: int | None = 2) -> str:
    return json.dumps(payload, indent=indent, default=_default, sort_keys=False)


def write_json(path: str | os.PathLike[str], payload: object) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    return atomic_write_text(path, to_json(payload) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, object]) -> None:
    """Append one record as a line; a line is written whole or not at all (one write call,
    flushed and synced), so an interrupted run leaves every finished record readable."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = to_json(dict(record), indent=None) + "\n"
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    target = Path(path)
    if not target.exists():
        return
    with open(target, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """What produced a result: CPU, cores, memory, versions, threads and affinity."""
    import numpy
    import psutil
    import torch

    affinity: list[int] | None
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(affinity) if affinity is not None else os.cpu_count(),
        "affinity": affinity,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cuda_available": torch.cuda.is_available(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = _as_json(value)
    return flat


def _as_json(value: Any) -> Any:
    """JSON round-trips tuples as lists: compare them alike."""
    if isinstance(value, tuple | list):
        return [_as_json(item) for item in value]
    return value


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return "(unset)" if value is None else str(value)


def settings_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """'folds 5 -> 3' for every setting that differs (nested keys joined by dots): the
    one check by which every resumable run (a study, a k-fold run) refuses other
    settings."""
    old, new = _flatten(saved), _flatten(wanted)
    return [
        f"{key} {_show(old.get(key))} -> {_show(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
