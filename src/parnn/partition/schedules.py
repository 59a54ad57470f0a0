"""The schedule registry: every pipeline schedule parnn knows, in one place.

For each schedule: its name and aliases, the class of ``torch.distributed.pipelining`` that
runs it (a string: torch's pipelining module is imported only by the ranks that run it),
its constraints (stages per rank, micro-batches against ranks, rounds), where its stages
live (``stage_indices``, ``rank_of_stage``) and its actions for the simulator
(``schedule_actions``): for every rank, the ordered list of (kind, stage, micro-batch).
The runtime (:mod:`parnn.pipeline`), the simulator (:mod:`.simulate`), the cost model, the
planner and the CLI all ask this module; nothing else holds a schedule rule.

Kinds: ``F`` forward, ``B`` full backward, and for the zero-bubble family the backward
split in two: ``I`` (the gradient of the input, what the previous stage waits for) and
``W`` (the gradient of the weights, free to fill a bubble). The actions are torch's own
``pipeline_order`` without its idle slots (tests compare them with torch's
``_calculate_single_rank_operations`` for every multi-stage schedule); DualPipeV's
overlapped forward+backward pairs run one after the other, as torch runs them on a CPU.

With 4 stages (one per rank) and 4 micro-batches, ``F3`` = forward of micro-batch 3::

    gpipe   rank0: F0 F1 F2 F3 B0 B1 B2 B3          1f1b  rank0: F0 F1 F2 F3 B0 B1 B2 B3
            rank1: F0 F1 F2 F3 B0 B1 B2 B3                rank1: F0 F1 F2 B0 F3 B1 B2 B3
            rank2: F0 F1 F2 F3 B0 B1 B2 B3                rank2: F0 F1 B0 F2 B1 F3 B2 B3
            rank3: F0 F1 F2 F3 B0 B1 B2 B3                rank3: F0 B0 F1 B1 F2 B2 F3 B3

GPipe runs every forward, then every backward (micro-batches in order 0..m-1, as torch's
``ScheduleGPipe``). 1F1B (PipeDream-flush) runs ``k - d - 1`` warm-up forwards on rank
``d``, then alternates one forward and one backward, then drains the backwards, so rank
``d`` never holds more than ``min(m, k - d)`` micro-batches (torch's ``Schedule1F1B``).
Interleaved 1F1B (Megatron-LM, torch's ``ScheduleInterleaved1F1B``) gives each of the ``k``
ranks ``v`` stages (``d, d + k, d + 2k, ...``) and walks the micro-batches in
``max(1, m // k)`` rounds; ``m`` must be a multiple of the rounds. Looped BFS runs every
forward of its first stage, then of the next, and the backwards in reverse. Zero-bubble
(ZB1P) is interleaved 1F1B with the backward split into I and W, the W deferred to fill
bubbles. The V schedules (``zbv``, ``dualpipev``) give rank ``r`` the stages ``r`` and
``2k - 1 - r``, so the first and the last stage live on rank 0. The asynchronous
schedules (``pipedream``, ``pipedream-2bw``, :mod:`.async_schedule`) never flush: their
actions here are the forwards and backwards of a stream of ``k`` mini-batches of ``m``
micro-batches (the updates left out), from which the micro-batches in flight are read.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.errors import ScheduleError
from parnn.partition.async_schedule import async_actions, check_async_schedule

__all__ = [
    "ACTION_KINDS",
    "SCHEDULES",
    "Action",
    "ScheduleSpec",
    "canonical_schedule",
    "check_schedule",
    "format_schedule",
    "get_schedule",
    "interleaved_rounds",
    "rank_of_stage",
    "schedule_actions",
    "schedule_choices",
    "schedule_names",
    "stage_indices",
]

ACTION_KINDS = ("F", "B", "I", "W")
"""Forward, full backward, backward of the input only, backward of the weights only."""

_TORCH_SCHEDULES = "torch.distributed.pipelining.schedules"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What parnn knows of one schedule."""

    name: str
    torch_class: str
    """Class name in torch.distributed.pipelining.schedules (the async ones: the stage)."""
    description: str
    multi_stage: bool = False
    """Takes a list of stages per rank (torch's PipelineScheduleMulti)."""
    layout: str = "loop"
    """'loop': rank r holds stages r, r+R, ...; 'v': stages r and 2R-1-r."""
    fixed_stages_per_rank: int | None = None
    """The V schedules need exactly 2."""
    min_stages_per_rank: int = 1
    """Interleaved 1F1B interleaves 2 or more."""
    microbatches_per_rank: int = 0
    """m must be >= this many times the ranks (1F1B: 1; DualPipeV: 2)."""
    rounds: bool = False
    """m must be a multiple of the ``max(1, m // ranks)`` rounds (interleaved, zero-bubble)."""
    split_backward: bool = False
    """Runs the backward as I and W (zero-bubble family): the simulator needs both."""
    asynchronous: bool = False
    """parnn's own PipeDream engine (no flush, weight stashing)."""
    aliases: tuple[str, ...] = ()
    default_stages_per_rank: int = 1
    """What ``parnn partition/simulate --chunks`` defaults to."""
    waits_each_send: bool = False
    """torch waits for each of a stage's sends before its next action (Schedule1F1B fuses
    them with the next receive); the others wait for their sends at the end of the step.
    The simulator's 'posted' message model follows it."""

    @property
    def available(self) -> bool:
        """The installed torch offers the class (parnn's asynchronous engine always runs)."""
        return self.asynchronous or self.torch_class in _torch_schedule_classes()

    def torch_schedule(self) -> Any:
        """The torch class (imports torch's pipelining: only the ranks that run it call this)."""
        return getattr(importlib.import_module(_TORCH_SCHEDULES), self.torch_class)

    @property
    def stages_per_rank_text(self) -> str:
        if self.fixed_stages_per_rank:
            return str(self.fixed_stages_per_rank)
        if self.multi_stage:
            return f">= {self.min_stages_per_rank}"
        return "1"


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
            "all forwards, then all backwards (GPipe); m micro-batches in flight",
        ),
        ScheduleSpec(
            "1f1b",
            "Schedule1F1B",
            "one forward, one backward (PipeDream-flush); needs m >= stages",
            microbatches_per_rank=1,
            waits_each_send=True,
        ),
        ScheduleSpec(
            "interleaved-1f1b",
            "ScheduleInterleaved1F1B",
            "1F1B over several stages per rank (Megatron interleaving)",
            multi_stage=True,
            min_stages_per_rank=2,
            rounds=True,
            aliases=("interleaved",),
            default_stages_per_rank=2,
        ),
        ScheduleSpec(
            "looped-bfs",
            "ScheduleLoopedBFS",
            "breadth-first over several stages per rank",
            multi_stage=True,
            default_stages_per_rank=2,
        ),
        ScheduleSpec(
            "zero-bubble",
            "ScheduleInterleavedZeroBubble",
            "interleaved zero-bubble: weight gradients split off to fill bubbles",
            multi_stage=True,
            rounds=True,
            split_backward=True,
            default_stages_per_rank=2,
        ),
        ScheduleSpec(
            "zbv",
            "ScheduleZBVZeroBubble",
            "zero-bubble V schedule: 2 stages per rank in a V",
            multi_stage=True,
            layout="v",
            fixed_stages_per_rank=2,
            split_backward=True,
            default_stages_per_rank=2,
        ),
        ScheduleSpec(
            "dualpipev",
            "ScheduleDualPipeV",
            "DualPipe V schedule: 2 stages per rank in a V",
            multi_stage=True,
            layout="v",
            fixed_stages_per_rank=2,
            microbatches_per_rank=2,
            split_backward=True,
            default_stages_per_rank=2,
        ),
        ScheduleSpec(
            "pipedream",
            "PipelineStage",
            "asynchronous 1F1B, no flush, weight stashing (PipeDream); parnn's engine",
            asynchronous=True,
        ),
        ScheduleSpec(
            "pipedream-2bw",
            "PipelineStage",
            "PipeDream-2BW: asynchronous, 2 weight versions, needs m >= stages; parnn's engine",
            asynchronous=True,
            microbatches_per_rank=1,
        ),
    )
}

_ALIASES = {alias: spec.name for spec in SCHEDULES.values() for alias in spec.aliases}


def schedule_names() -> tuple[str, ...]:
    """The schedules the installed torch offers (and parnn's asynchronous ones)."""
    return tuple(name for name, spec in SCHEDULES.items() if spec.available)


def schedule_choices() -> tuple[str, ...]:
    """Every name a ``--schedule`` flag accepts: the names, then the aliases."""
    return (*SCHEDULES, *_ALIASES)


def get_schedule(name: str, *, runnable: bool = False) -> ScheduleSpec:
    """The schedule called ``name`` (or an alias); ScheduleError when unknown, or, with
    ``runnable``, when the installed torch lacks its class."""
    key = name.strip().lower()
    spec = SCHEDULES.get(_ALIASES.get(key, key))
    if spec is None or (runnable and not spec.available):
        raise ScheduleError(
            f"unknown schedule {name!r}; valid: {', '.join(schedule_names())} "
            "(see `parnn schedules`)"
        )
    return spec


def canonical_schedule(name: str) -> str:
    """The schedule's canonical name ('interleaved' -> 'interleaved-1f1b'); ScheduleError
    when unknown."""
    return get_schedule(name).name


def interleaved_rounds(num_ranks: int, num_microbatches: int) -> int:
    """Rounds of torch's interleaved schedules: ``max(1, m // k)``; ``m`` must be a multiple."""
    return max(1, num_microbatches // num_ranks)


def check_schedule(
    spec: ScheduleSpec,
    *,
    num_ranks: int,
    stages_per_rank: int,
    num_microbatches: int,
    simulated: bool = False,
) -> None:
    """Refuse, before any process starts, the settings under which ``spec`` cannot run
    (some of torch's schedules deadlock instead of failing when a rule is broken).

    ``simulated``: only the rules without which the order of actions is undefined; the
    simulator also replays what the runtime refuses but torch's order still defines (one
    rank, 1F1B with fewer micro-batches than stages, interleaving one stage per rank)."""
    if num_ranks < 1:
        raise ScheduleError(f"--stages must be >= 1, got {num_ranks}")
    if num_microbatches < 1:
        raise ScheduleError(f"--microbatches must be >= 1, got {num_microbatches}")
    if stages_per_rank < 1:
        raise ScheduleError(f"--stages-per-rank must be >= 1, got {stages_per_rank}")
    if not spec.multi_stage and stages_per_rank != 1:
        raise ScheduleError(
            f"schedule {spec.name!r} runs one stage per rank, got --stages-per-rank "
            f"{stages_per_rank}; for more, need --schedule interleaved-1f1b, looped-bfs or "
            "zero-bubble"
        )
    if spec.fixed_stages_per_rank and stages_per_rank != spec.fixed_stages_per_rank:
        raise ScheduleError(
            f"schedule {spec.name!r} needs exactly --stages-per-rank "
            f"{spec.fixed_stages_per_rank}, got {stages_per_rank}"
        )
    if stages_per_rank < spec.min_stages_per_rank and not simulated:
        raise ScheduleError(
            f"schedule {spec.name!r} interleaves {spec.min_stages_per_rank} or more stages per "
            f"rank, got --stages-per-rank {stages_per_rank}; use --stages-per-rank "
            f"{spec.min_stages_per_rank}, or --schedule 1f1b for one stage per rank"
        )
    if spec.multi_stage and num_ranks < 2 and not simulated:
        raise ScheduleError(
            f"schedule {spec.name!r} needs at least 2 ranks (--stages 2 or more), got {num_ranks}"
        )
    if spec.asynchronous:
        check_async_schedule(spec.name, num_stages=num_ranks, num_microbatches=num_microbatches)
    elif num_microbatches < spec.microbatches_per_rank * num_ranks:
        least = spec.microbatches_per_rank * num_ranks
        if spec.microbatches_per_rank > 1:
            raise ScheduleError(
                f"{spec.name} needs --microbatches >= {spec.microbatches_per_rank} x stages "
                f"({least}), got {num_microbatches}"
            )
        if not simulated:  # simulated, 1F1B's warm-up is all of m: GPipe's order
            raise ScheduleError(
                f"{spec.name} needs at least as many micro-batches as stages: --microbatches "
                f"{num_microbatches} < --stages {num_ranks}; use --microbatches {least} or "
                "more, or --schedule gpipe"
            )
    rounds = interleaved_rounds(num_ranks, num_microbatches)
    if spec.rounds and num_microbatches % rounds:
        raise ScheduleError(
            f"{spec.name} walks micro-batches in {rounds} rounds (micro-batches // stages): "
            f"{num_microbatches} micro-batches is not a multiple of {rounds}; use a multiple "
            f"of --stages {num_ranks}"
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


def rank_of_stage(spec: ScheduleSpec, stage: int, num_ranks: int) -> int:
    """The rank that holds pipeline stage ``stage`` (the inverse of :func:`stage_indices`)."""
    if spec.layout == "v":
        return stage if stage < num_ranks else 2 * num_ranks - 1 - stage
    return stage % num_ranks


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a rank: the forward or (part of the) backward of one micro-batch on one
    stage."""

    kind: str
    """'F' (forward), 'B' (full backward), 'I' (input gradient), 'W' (weight gradient)."""
    stage: int
    """The (virtual) stage, 0-based, in model order."""
    microbatch: int

    def __str__(self) -> str:
        return f"{self.kind}{self.microbatch}"

    @property
    def releases(self) -> bool:
        """The action frees the micro-batch's saved activations (B, or W after an I)."""
        return self.kind in ("B", "W")


def _gpipe(rank: int, k: int, v: int, m: int) -> list[Action]:
    return [Action("F", rank, j) for j in range(m)] + [Action("B", rank, j) for j in range(m)]


def _one_f_one_b(rank: int, k: int, v: int, m: int) -> list[Action]:
    warmup = min(k - rank - 1, m)
    actions = [Action("F", rank, j) for j in range(warmup)]
    for i in range(m - warmup):
        actions += [Action("F", rank, warmup + i), Action("B", rank, i)]
    return actions + [Action("B", rank, j) for j in range(m - warmup, m)]


def _interleaved_ops(rank: int, k: int, v: int, m: int, *, zero_bubble: bool) -> list[Action]:
    """torch's ``_get_1f1b_rank_ops`` (interleaved 1F1B; ZB1P with ``zero_bubble``)."""
    per_round = m // interleaved_rounds(k, m)
    factor = 1 if zero_bubble else 2
    warmup = min((v - 1) * per_round + factor * (k - 1 - rank), m * v)
    total = m * v

    def forward_stage(op: int) -> int:
        return ((op // per_round) % v) * k + rank

    def backward_stage(op: int) -> int:
        return (v - 1 - ((op - warmup) // per_round) % v) * k + rank

    counters: dict[tuple[str, int], int] = {}

    def action(kind: str, stage: int) -> Action:
        index = counters.get((kind, stage), 0)
        counters[(kind, stage)] = index + 1
        return Action(kind, stage, index)

    backward_kind = "I" if zero_bubble else "B"
    backward_ops: list[int] = []
    actions: list[Action] = []

    def backward(op: int) -> None:
        actions.append(action(backward_kind, backward_stage(op)))
        backward_ops.append(op)
        if zero_bubble and op - warmup >= rank:  # ZB1P: the rank's first W waits
            actions.append(action("W", backward_stage(backward_ops[counters_w()])))

    def counters_w() -> int:
        return sum(n for (kind, _), n in counters.items() if kind == "W")

    for op in range(total + warmup):  # warm-up, then 1F1B pairs, then the cool-down
        if op < warmup:
            actions.append(action("F", forward_stage(op)))
        elif op < total:
            actions.append(action("F", forward_stage(op)))
            backward(op)
        else:
            backward(op)
    while zero_bubble and counters_w() < len(backward_ops):
        actions.append(action("W", backward_stage(backward_ops[counters_w()])))
    return actions


def _looped_bfs(rank: int, k: int, v: int, m: int) -> list[Action]:
    stages = range(rank, k * v, k)
    actions = [Action("F", s, j) for s in stages for j in range(m)]
    return actions + [Action("B", s, j) for s in reversed(stages) for j in reversed(range(m))]


def _zbv(rank: int, k: int, v: int, m: int) -> list[Action]:
    """torch's ScheduleZBVZeroBubble, one rank (stages ``rank`` and ``2k - 1 - rank``)."""
    n_micro = max(2 * k - 1, m)
    s0, s1 = rank, 2 * k - 1 - rank
    f0 = f1 = b0 = b1 = 0
    ops: list[Action] = []
    for _ in range(2 * (k - rank) - 1):
        ops.append(Action("F", s0, f0))
        f0 += 1
    for _ in range(rank):
        ops += [Action("F", s1, f1), Action("F", s0, f0)]
        f1, f0 = f1 + 1, f0 + 1
    for _ in range(k - rank):
        ops += [Action("F", s1, f1), Action("I", s1, b1), Action("W", s1, b1)]
        f1, b1 = f1 + 1, b1 + 1
    while f1 < f0 or f0 < n_micro:
        if f0 < n_micro:
            ops.append(Action("F", s0, f0))
            f0 += 1
        ops += [Action("I", s0, b0), Action("W", s0, b0)]
        b0 += 1
        ops += [Action("F", s1, f1), Action("I", s1, b1), Action("W", s1, b1)]
        f1, b1 = f1 + 1, b1 + 1
    w0, w1 = b0, b1
    for _ in range(rank):
        ops += [Action("I", s0, b0), Action("I", s1, b1)]
        b0, b1 = b0 + 1, b1 + 1
    for _ in range(k - rank):
        ops += [Action("I", s0, b0), Action("W", s0, w0)]
        b0, w0 = b0 + 1, w0 + 1
    ops += [Action("W", s1, w) for w in range(w1, b1)]
    ops += [Action("W", s0, w) for w in range(w0, b0)]
    return [a for a in ops if a.microbatch < m]


def _dualpipev(rank: int, k: int, v: int, m: int) -> list[Action]:
    """torch's ScheduleDualPipeV, one rank; an overlapped F+B pair is its F then its B."""
    first, second = rank, 2 * k - 1 - rank
    counters: dict[tuple[str, int], int] = {}
    weights: list[tuple[int, int]] = []  # (stage, micro-batch) of the pending W
    ops: list[Action] = []

    def add(kind: str, stage: int) -> None:
        key = ("I" if kind == "B" else kind, stage)
        index = counters.get(key, 0)
        ops.append(Action(kind, stage, index))
        counters[key] = index + 1
        if kind == "I":
            weights.append((stage, index))

    def weight() -> None:
        if weights:
            stage, index = weights.pop(0)
            ops.append(Action("W", stage, index))

    def overlap(forward_stage: int, backward_stage: int) -> None:
        add("F", forward_stage)
        add("B", backward_stage)

    for _ in range((k - rank - 1) * 2):
        add("F", first)
    for _ in range(rank + 1):
        add("F", first)
        add("F", second)
    for _ in range(k - rank - 1):
        add("I", second)
        weight()
        add("F", second)
    for i in range(m - 2 * k + rank + 1):
        if i == 0 and rank == k - 1:
            add("F", first)
            add("B", second)
        else:
            overlap(first, second)
        overlap(second, first)
    for _ in range(k - rank - 1):
        add("B", second)
        overlap(second, first)
    split = False
    step_6 = rank + 1
    for i in range(step_6):
        if i == step_6 // 2 and rank % 2 == 1:
            split = True
        add("I" if split else "B", second)
        if i == step_6 // 2 and rank % 2 == 0:
            split = True
        add("I" if split else "B", first)
    for _ in range(k - rank - 1):
        weight()
        add("I" if split else "B", first)
    for _ in range(rank + 1):
        weight()
    return ops


_SYNCHRONOUS: dict[str, Callable[[int, int, int, int], list[Action]]] = {
    "gpipe": _gpipe,
    "1f1b": _one_f_one_b,
    "interleaved-1f1b": functools.partial(_interleaved_ops, zero_bubble=False),
    "looped-bfs": _looped_bfs,
    "zero-bubble": functools.partial(_interleaved_ops, zero_bubble=True),
    "zbv": _zbv,
    "dualpipev": _dualpipev,
}


def schedule_actions(
    schedule: str, num_ranks: int, num_microbatches: int, *, num_chunks: int = 1
) -> tuple[tuple[Action, ...], ...]:
    """The ordered actions of every rank (``num_chunks`` stages each); a stage lives on
    :func:`rank_of_stage`. ScheduleError for settings the runtime would refuse."""
    spec = get_schedule(schedule)
    if num_ranks < 1 or num_microbatches < 1 or num_chunks < 1:
        raise ScheduleError(
            f"need ranks, micro-batches and chunks >= 1; got {num_ranks}, "
            f"{num_microbatches}, {num_chunks}"
        )
    check_schedule(
        spec,
        num_ranks=num_ranks,
        stages_per_rank=num_chunks,
        num_microbatches=num_microbatches,
        simulated=True,
    )
    k, m = num_ranks, num_microbatches
    if spec.asynchronous:
        return tuple(
            tuple(Action(a.kind, a.stage, a.microbatch) for a in stream if a.kind != "U")
            for stream in async_actions(k, k, m)
        )
    build = _SYNCHRONOUS[spec.name]
    return tuple(tuple(build(rank, k, num_chunks, m)) for rank in range(k))


def format_schedule(plans: tuple[tuple[Action, ...], ...]) -> str:
    """The schedule as an ASCII grid, one line per rank: ``F3`` (the stage shown as
    ``F3.1``, the rank's chunk, when ranks hold several stages), ``I3``/``W3`` for a split
    backward."""
    num_ranks = len(plans)
    chunked = any(a.stage >= num_ranks for actions in plans for a in actions)
    lines = []
    for rank, actions in enumerate(plans):
        own = sorted({a.stage for a in actions})
        cells = [
            f"{a.kind}{a.microbatch}" + (f".{own.index(a.stage)}" if chunked else "")
            for a in actions
        ]
        lines.append(f"rank{rank}: " + " ".join(cells))
    return "\n".join(lines)
