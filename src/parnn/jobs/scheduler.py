"""Which job runs first: longest first, by a cost estimate of each model.

A pool that starts jobs in the order given ends when its last job ends. Starting the
longest jobs first (LPT, "longest processing time" list scheduling) leaves the short ones
to fill the gaps at the end, so the pool does not finish with one long job on one core
while the others idle. Its makespan is within 4/3 of the optimum (Graham, 1969).

The cost of a job is ``seconds per optimizer step x steps``. Seconds per step come from
the partitioner's profiler (:func:`parnn.partition.load_or_profile`: forward + backward of
every unit at the job's batch size and thread count, medians of repeats; cached), or,
with ``method="params"``, from a proxy: parameters x input elements x batch size
(relative units; no timing, so instant and deterministic).

    >>> order = longest_first([("a", 1.0), ("b", 3.0), ("c", 2.0)], cost=lambda job: job[1])
    >>> [name for name, _ in order]
    ['b', 'c', 'a']
    >>> list_schedule([3.0, 2.0, 2.0, 1.0], num_workers=2).makespan
    4.0
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from parnn.errors import ConfigError
from parnn.jobs.fold_job import ModelSource, build_job_model

__all__ = [
    "COST_METHODS",
    "Schedule",
    "estimate_step_costs",
    "list_schedule",
    "longest_first",
]

COST_METHODS = ("profile", "params")

T = TypeVar("T")


def longest_first(jobs: Sequence[T], *, cost: Callable[[T], float]) -> list[T]:
    """``jobs`` sorted by decreasing cost; equal costs keep their given order (stable)."""
    return sorted(jobs, key=lambda job: -cost(job))


@dataclass(frozen=True, slots=True)
class Schedule:
    """Where list scheduling puts each job: ``worker[i]`` runs job i from ``start[i]``."""

    worker: tuple[int, ...]
    start: tuple[float, ...]
    makespan: float  # when the last job ends


def list_schedule(costs: Sequence[float], *, num_workers: int) -> Schedule:
    """Simulate a pool: each job, in the given order, goes to the first worker to be free
    (ties: the lowest slot). The pool's behaviour when the costs are exact."""
    if num_workers < 1:
        raise ConfigError(f"num_workers must be >= 1, got {num_workers}")
    free: list[tuple[float, int]] = [(0.0, slot) for slot in range(num_workers)]
    heapq.heapify(free)
    workers: list[int] = []
    starts: list[float] = []
    end = 0.0
    for cost in costs:
        at, slot = heapq.heappop(free)
        workers.append(slot)
        starts.append(at)
        end = max(end, at + cost)
        heapq.heappush(free, (at + cost, slot))
    return Schedule(worker=tuple(workers), start=tuple(starts), makespan=end)


def _probe_seconds(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Median seconds of forward + loss + backward on one batch (one warm-up, 3 timed)."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    times = []
    for repeat in range(4):
        started = time.perf_counter()
        loss = criterion(model(inputs), targets)
        loss.backward()
        if repeat:
            times.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def _profile_seconds(
    model: str | nn.Sequential,
    input_shape: tuple[int, ...],
    num_classes: int,
    batch_size: int,
    threads: int,
) -> float:
    """Forward + backward seconds of all units, from the partitioner's profiler."""
    from parnn.partition import load_or_profile

    profile = load_or_profile(
        model,
        input_shape=input_shape,
        batch_size=batch_size,
        num_classes=num_classes,
        threads=threads,
        warmup=1,
        repeats=3,
    )
    return float(sum(unit.compute_s for unit in profile.units))


def estimate_step_costs(
    models: Mapping[str, ModelSource],
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    batch_size: int,
    threads: int = 1,
    method: str = "profile",
) -> dict[str, float]:
    """Cost of one optimizer step of each model: seconds (``profile``) or relative units
    (``params``)."""
    if method not in COST_METHODS:
        raise ConfigError(
            f"unknown cost method {method!r}: choose one of {', '.join(COST_METHODS)}"
        )
    costs: dict[str, float] = {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, source in models.items():
            if method == "profile" and isinstance(source, str):
                costs[name] = _profile_seconds(
                    source, input_shape, num_classes, batch_size, threads
                )
                continue
            torch.manual_seed(0)
            model = build_job_model(source, input_shape, num_classes)
            if method == "params":
                parameters = sum(p.numel() for p in model.parameters())
                costs[name] = float(parameters) * math.prod(input_shape) * batch_size
            elif isinstance(model, nn.Sequential) and len(model) > 0:
                costs[name] = _profile_seconds(model, input_shape, num_classes, batch_size, threads)
            else:  # not a sequence of units: time the whole model
                generator = torch.Generator().manual_seed(0)
                inputs = torch.randn((batch_size, *input_shape), generator=generator)
                targets = torch.randint(0, num_classes, (batch_size,), generator=generator)
                costs[name] = _probe_seconds(model, inputs, targets)
    finally:
        torch.set_num_threads(previous_threads)
    return costs
