"""Pipeline schedules as data: for every device, the ordered list of (F|B, stage, micro-batch).

With 4 stages (one per device) and 4 micro-batches, ``F3`` = forward of micro-batch 3::

    gpipe   dev0: F0 F1 F2 F3 B0 B1 B2 B3          1f1b  dev0: F0 F1 F2 F3 B0 B1 B2 B3
            dev1: F0 F1 F2 F3 B0 B1 B2 B3                dev1: F0 F1 F2 B0 F3 B1 B2 B3
            dev2: F0 F1 F2 F3 B0 B1 B2 B3                dev2: F0 F1 B0 F2 B1 F3 B2 B3
            dev3: F0 F1 F2 F3 B0 B1 B2 B3                dev3: F0 B0 F1 B1 F2 B2 F3 B3

GPipe runs every forward, then every backward (micro-batches in order, as torch's
``ScheduleGPipe``). 1F1B (PipeDream-flush) runs ``k - d - 1`` warm-up forwards on device
``d``, then alternates one forward and one backward, then drains the backwards, so device
``d`` never holds more than ``min(m, k - d)`` micro-batches (torch's ``Schedule1F1B``).
Interleaved 1F1B (Megatron-LM, as torch's ``ScheduleInterleaved1F1B`` runs it) gives each of
the ``k`` devices ``v`` model chunks (virtual stages ``d, d + k, d + 2k, ...``) and walks the
micro-batches in ``max(1, m // k)`` rounds; ``m`` must be a multiple of the rounds.
``interleaved`` is accepted for ``interleaved-1f1b``. The asynchronous schedules
(``pipedream``, ``pipedream-2bw``, :mod:`.async_schedule`) never flush: their actions here
are the forwards and backwards of a stream of ``k`` mini-batches of ``m`` micro-batches (the
updates left out), from which the micro-batches in flight are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from parnn.errors import ScheduleError
from parnn.partition.async_schedule import ASYNC_SCHEDULES, async_actions

__all__ = [
    "SCHEDULES",
    "Action",
    "canonical_schedule",
    "format_schedule",
    "interleaved_rounds",
    "schedule_actions",
]

SCHEDULES: tuple[str, ...] = ("gpipe", "1f1b", "interleaved-1f1b", *ASYNC_SCHEDULES)


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a device: the forward or backward of one micro-batch on one stage."""

    kind: str
    """'F' (forward) or 'B' (backward)."""
    stage: int
    """The (virtual) stage, 0-based, in model order."""
    microbatch: int

    def __str__(self) -> str:
        return f"{self.kind}{self.microbatch}"


_ALIASES = {"interleaved": "interleaved-1f1b"}


def canonical_schedule(name: str) -> str:
    """The schedule's canonical name ('interleaved' -> 'interleaved-1f1b'); ScheduleError
    when unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return key


def interleaved_rounds(num_devices: int, num_microbatches: int) -> int:
    """Rounds of torch's interleaved 1F1B: ``max(1, m // k)``; ``m`` must be a multiple."""
    return max(1, num_microbatches // num_devices)


def _check(schedule: str, num_devices: int, num_microbatches: int, num_chunks: int) -> str:
    schedule = canonical_schedule(schedule)
    if num_devices < 1 or num_microbatches < 1 or num_chunks < 1:
        raise ScheduleError(
            f"need devices, micro-batches and chunks >= 1; got {num_devices}, "
            f"{num_microbatches}, {num_chunks}"
        )
    if schedule != "interleaved-1f1b" and num_chunks != 1:
        raise ScheduleError(
            f"schedule {schedule!r} puts one stage on each device; {num_chunks} chunks per "
            "device need --schedule interleaved-1f1b"
        )
    rounds = interleaved_rounds(num_devices, num_microbatches)
    if schedule == "interleaved-1f1b" and num_microbatches % rounds:
        raise ScheduleError(
            f"interleaved-1f1b walks micro-batches in {rounds} rounds (micro-batches // "
            f"devices): {num_microbatches} micro-batches is not a multiple of {rounds}; "
            f"use a multiple of the {num_devices} devices"
        )
    return schedule


def _interleaved(device: int, k: int, v: int, m: int) -> list[Action]:
    """torch's ScheduleInterleaved1F1B (the "flex" Megatron-LM schedule), one device."""
    per_round = m // interleaved_rounds(k, m)
    total = m * v
    warmup = min((v - 1) * per_round + 2 * (k - 1 - device), total)

    def forward_stage(op: int) -> int:
        return ((op // per_round) % v) * k + device

    def backward_stage(op: int) -> int:
        return (v - 1 - ((op - warmup) // per_round) % v) * k + device

    next_forward: dict[int, int] = {}
    next_backward: dict[int, int] = {}

    def forward(op: int) -> Action:
        stage = forward_stage(op)
        next_forward[stage] = next_forward.get(stage, -1) + 1
        return Action("F", stage, next_forward[stage])

    def backward(op: int) -> Action:
        stage = backward_stage(op)
        next_backward[stage] = next_backward.get(stage, -1) + 1
        return Action("B", stage, next_backward[stage])

    actions: list[Action] = []
    for op in range(total + warmup):  # warm-up, then 1F1B pairs, then the cool-down
        if op < warmup:
            actions.append(forward(op))
        elif op < total:
            actions += [forward(op), backward(op)]
        else:
            actions.append(backward(op))
    return actions


def schedule_actions(
    schedule: str, num_devices: int, num_microbatches: int, *, num_chunks: int = 1
) -> tuple[tuple[Action, ...], ...]:
    """The ordered actions of every device. Virtual stage ``s`` lives on device ``s % k``."""
    schedule = _check(schedule, num_devices, num_microbatches, num_chunks)
    k, m = num_devices, num_microbatches
    plans: list[list[Action]] = []
    for device in range(k):
        if schedule == "gpipe":
            actions = [Action("F", device, mb) for mb in range(m)]
            actions += [Action("B", device, mb) for mb in range(m)]
        elif schedule == "1f1b":
            warmup = min(k - device - 1, m)
            actions = [Action("F", device, mb) for mb in range(warmup)]
            for i in range(m - warmup):
                actions += [Action("F", device, warmup + i), Action("B", device, i)]
            actions += [Action("B", device, mb) for mb in range(m - warmup, m)]
        elif schedule in ASYNC_SCHEDULES:
            stream = async_actions(k, k, m)[device]
            actions = [Action(a.kind, a.stage, a.microbatch) for a in stream if a.kind != "U"]
        else:
            actions = _interleaved(device, k, num_chunks, m)
        plans.append(actions)
    return tuple(tuple(actions) for actions in plans)


def format_schedule(plans: tuple[tuple[Action, ...], ...]) -> str:
    """The schedule as an ASCII grid, one line per device (chunks shown as F3.1 when > 1)."""
    num_devices = len(plans)
    chunked = any(a.stage >= num_devices for actions in plans for a in actions)
    lines = []
    for device, actions in enumerate(plans):
        cells = [
            f"{a.kind}{a.microbatch}" + (f".{a.stage // num_devices}" if chunked else "")
            for a in actions
        ]
        lines.append(f"dev{device}: " + " ".join(cells))
    return "\n".join(lines)
