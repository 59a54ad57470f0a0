"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is a closed-form factor of the peak LR at step ``t`` (the number of optimizer
steps already taken), so the LR never depends on history and a resumed run follows the same
curve. With ``T = total_steps`` and ``W = warmup_steps``::

    constant  1
    step      1 until T/2, then 0.1 until 3T/4, then 0.01
    cosine    (1 + cos(pi * t / T)) / 2                        falls from 1 towards 0
    warm      (t + 1) / W for t < W (linear rise to 1),
              then (1 + cos(pi * (t - W) / (T - W))) / 2       falls from 1 towards 0
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from parnn.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a scheduler is made: the names stay light
    import torch
    from torch.optim.lr_scheduler import LambdaLR

__all__ = ["SCHEDULES", "LRFactor", "default_warmup_steps", "make_scheduler"]

SCHEDULES = ("constant", "step", "cosine", "warm")

_STEP_MILESTONES = (0.5, 0.75)  # fractions of total_steps where the 'step' schedule decays
_STEP_GAMMA = 0.1  # factor applied at each milestone


def default_warmup_steps(total_steps: int) -> int:
    """10% of the run, at least one step: the warm-up of ``warm`` when none is given."""
    return max(1, total_steps // 10)


class LRFactor:
    """The factor of the peak LR after ``t`` optimizer steps; a picklable callable whose
    ``__dict__`` LambdaLR saves in its state_dict (so it must not use ``__slots__``)."""

    def __init__(self, name: str, total_steps: int, warmup_steps: int) -> None:
        self.name = name
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, t: int) -> float:
        total = self.total_steps
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            passed = sum(t >= int(fraction * total) for fraction in _STEP_MILESTONES)
            return float(_STEP_GAMMA**passed)
        if self.name == "cosine":
            return _cosine(t, total)
        warmup = self.warmup_steps
        if t < warmup:
            return (t + 1) / warmup
        return _cosine(t - warmup, total - warmup)


def _cosine(t: int, span: int) -> float:
    if span <= 0:
        return 1.0
    progress = min(t, span) / span
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    total_steps: int,
    warmup_steps: int | None = None,
) -> LambdaLR:
    """The LR schedule ``name`` over ``total_steps`` optimizer steps; call ``.step()`` after
    every ``optimizer.step()``. ``warmup_steps`` applies to ``warm`` only (default 10%)."""
    from torch.optim.lr_scheduler import LambdaLR

    key = str(name).lower()
    if key not in SCHEDULES:
        raise ConfigError(f"unknown LR schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ConfigError(f"total_steps {total_steps} must be > 0 for the LR schedule")
    if warmup_steps is not None and key != "warm":
        warnings.warn(
            f"warmup_steps={warmup_steps} is ignored by the {key!r} schedule; use 'warm'",
            stacklevel=2,
        )
        warmup_steps = 0
    if warmup_steps is None:
        warmup_steps = default_warmup_steps(total_steps) if key == "warm" else 0
    if warmup_steps < 0 or (key == "warm" and not 0 < warmup_steps <= total_steps):
        raise ConfigError(
            f"warm-up of {warmup_steps} steps must be in [1, {total_steps}] (the total steps); "
            "leave it unset for 10% of the run"
        )
    return LambdaLR(optimizer, LRFactor(key, total_steps, warmup_steps))
