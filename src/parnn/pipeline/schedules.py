"""Pipeline schedules by name: parnn's names for the schedules of
``torch.distributed.pipelining``, and the rules each one needs, checked before any process
starts (some schedules deadlock instead of failing when a rule is broken).

A rank holds one stage (``gpipe``, ``1f1b``) or several (``interleaved-1f1b``,
``looped-bfs``, ``zero-bubble`` and the V-shaped ``zbv``/``dualpipev``). GPipe with four
stages and four micro-batches (F = forward, B = backward of micro-batch n)::

    rank 0 | F0 F1 F2 F3 .  .  .  .  .  .  B0 B1 B2 B3
    rank 1 |    F0 F1 F2 F3 .  .  .  .  B0 B1 B2 B3
    rank 2 |       F0 F1 F2 F3 .  .  B0 B1 B2 B3
    rank 3 |          F0 F1 F2 F3 B0 B1 B2 B3

(torch's ``ScheduleGPipe`` runs the backward passes in micro-batch order, as the last
stage finishes them.)

1F1B starts backward passes as soon as the last stage can, so at most ``num_stages``
micro-batches are in flight per stage instead of ``m``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.errors import ScheduleError

__all__ = ["SCHEDULES", "ScheduleSpec", "get_schedule", "schedule_names", "stage_indices"]


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What parnn knows of one schedule."""

    name: str
    torch_class: str  # class name in torch.distributed.pipelining.schedules
    multi_stage: bool  # takes a list of stages per rank
    layout: str  # "loop": rank r holds stages r, r+R, ...; "v": stages r and 2R-1-r
    description: str
    fixed_stages_per_rank: int | None = None  # V schedules need exactly 2
    asynchronous: bool = False  # parnn's own PipeDream engine (no flush, weight stashing)

    @property
    def available(self) -> bool:
        return self.asynchronous or self.torch_class in _torch_schedule_classes()

    def torch_schedule(self) -> Any:
        return getattr(importlib.import_module(_TORCH_SCHEDULES), self.torch_class)


_TORCH_SCHEDULES = "torch.distributed.pipelining.schedules"


@functools.cache
def _torch_schedule_classes() -> frozenset[str]:
    """The classes torch's schedules module defines, read from its source: importing it
    imports torch._dynamo and DTensor (~2 s), which only the ranks that run a schedule need.
    Falls back to importing it where the source cannot be read."""
    try:
        torch_spec = importlib.util.find_spec("torch")  # finds torch, imports nothing
        if torch_spec is None or torch_spec.origin is None:
            raise OSError("torch")
        path = Path(torch_spec.origin).parent / "distributed" / "pipelining" / "schedules.py"
        source = path.read_text(encoding="utf-8")
    except (OSError, ImportError, ValueError):
        module = importlib.import_module(_TORCH_SCHEDULES)
        return frozenset(name for name in dir(module) if not name.startswith("_"))
    return frozenset(re.findall(r"^class (\w+)\b", source, flags=re.MULTILINE))


SCHEDULES: dict[str, ScheduleSpec] = {
    spec.name: spec
    for spec in (
        ScheduleSpec(
            "gpipe",
            "ScheduleGPipe",
            False,
            "loop",
            "all forwards, then all backwards (GPipe); m micro-batches in flight",
        ),
        ScheduleSpec(
            "1f1b",
            "Schedule1F1B",
            False,
            "loop",
            "one forward, one backward (PipeDream-flush); needs m >= stages",
        ),
        ScheduleSpec(
            "interleaved-1f1b",
            "ScheduleInterleaved1F1B",
            True,
            "loop",
            "1F1B over several stages per rank (Megatron interleaving)",
        ),
        ScheduleSpec(
            "looped-bfs",
            "ScheduleLoopedBFS",
            True,
            "loop",
            "breadth-first over several stages per rank",
        ),
        ScheduleSpec(
            "zero-bubble",
            "ScheduleInterleavedZeroBubble",
            True,
            "loop",
            "interleaved zero-bubble: weight gradients split off to fill bubbles",
        ),
        ScheduleSpec(
            "zbv",
            "ScheduleZBVZeroBubble",
            True,
            "v",
            "zero-bubble V schedule: 2 stages per rank in a V",
            fixed_stages_per_rank=2,
        ),
        ScheduleSpec(
            "dualpipev",
            "ScheduleDualPipeV",
            True,
            "v",
            "DualPipe V schedule: 2 stages per rank in a V",
            fixed_stages_per_rank=2,
        ),
        ScheduleSpec(
            "pipedream",
            "PipelineStage",
            False,
            "loop",
            "asynchronous 1F1B, no flush, weight stashing (PipeDream); parnn's engine",
            asynchronous=True,
        ),
        ScheduleSpec(
            "pipedream-2bw",
            "PipelineStage",
            False,
            "loop",
            "PipeDream-2BW: asynchronous, 2 weight versions, needs m >= stages; parnn's engine",
            asynchronous=True,
        ),
    )
}


def schedule_names() -> tuple[str, ...]:
    """The schedules the installed torch offers."""
    return tuple(name for name, spec in SCHEDULES.items() if spec.available)


def get_schedule(name: str) -> ScheduleSpec:
    key = name.strip().lower()
    spec = SCHEDULES.get(key)
    if spec is None or not spec.available:
        raise ScheduleError(
            f"unknown schedule {name!r}; this torch offers: {', '.join(schedule_names())} "
            "(see `parnn schedules`)"
        )
    return spec


def check_schedule(
    spec: ScheduleSpec, *, num_ranks: int, stages_per_rank: int, num_microbatches: int
) -> None:
    """Refuse, before any process starts, the settings under which ``spec`` cannot run."""
    if num_microbatches < 1:
        raise ScheduleError(f"--microbatches must be >= 1, got {num_microbatches}")
    if stages_per_rank < 1:
        raise ScheduleError(f"--stages-per-rank must be >= 1, got {stages_per_rank}")
    if not spec.multi_stage and stages_per_rank != 1:
        raise ScheduleError(
            f"schedule {spec.name!r} runs one stage per rank, got --stages-per-rank "
            f"{stages_per_rank}; use interleaved-1f1b, looped-bfs or zero-bubble for more"
        )
    if spec.fixed_stages_per_rank and stages_per_rank != spec.fixed_stages_per_rank:
        raise ScheduleError(
            f"schedule {spec.name!r} needs exactly --stages-per-rank "
            f"{spec.fixed_stages_per_rank}, got {stages_per_rank}"
        )
    if spec.name == "interleaved-1f1b" and stages_per_rank < 2:
        raise ScheduleError(
            f"schedule {spec.name!r} interleaves 2 or more stages per rank, got "
            f"--stages-per-rank {stages_per_rank}; use --stages-per-rank 2, or --schedule 1f1b "
            "for one stage per rank"
        )
    if spec.multi_stage and num_ranks < 2:
        raise ScheduleError(
            f"schedule {spec.name!r} needs at least 2 ranks (--stages 2 or more), got {num_ranks}"
        )
    if spec.name == "1f1b" and num_microbatches < num_ranks:
        raise ScheduleError(
            f"1f1b needs at least as many micro-batches as stages: --microbatches "
            f"{num_microbatches} < --stages {num_ranks}; use --microbatches {num_ranks} or more, "
            "or --schedule gpipe"
        )
    if spec.asynchronous:
        from parnn.partition.async_schedule import check_async_schedule

        check_async_schedule(spec.name, num_stages=num_ranks, num_microbatches=num_microbatches)
    if spec.name in ("interleaved-1f1b", "zero-bubble"):
        rounds = max(1, num_microbatches // num_ranks)
        if num_microbatches % rounds:
            raise ScheduleError(
                f"{spec.name} needs --microbatches to be a multiple of the number of rounds "
                f"({rounds} = microbatches // stages); got {num_microbatches}: use a multiple "
                f"of --stages {num_ranks}"
            )
    if spec.name == "dualpipev" and num_microbatches < 2 * num_ranks:
        raise ScheduleError(
            f"{spec.name} needs --microbatches >= 2 x stages ({2 * num_ranks}), got "
            f"{num_microbatches}"
        )


def stage_indices(
    spec: ScheduleSpec, *, rank: int, num_ranks: int, stages_per_rank: int
) -> list[int]:
    """The pipeline stages rank ``rank`` holds.

    Looped layouts give rank r the stages r, r+R, r+2R...; V layouts give rank r the
    stages r and 2R-1-r, so that the first and the last stage live on rank 0.
    """
    if spec.layout == "v":
        return [rank, 2 * num_ranks - 1 - rank]
    return [rank + i * num_ranks for i in range(stages_per_rank)]
