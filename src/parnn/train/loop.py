"""The one training loop: every engine that walks mini-batches runs it.

The loop is the reference trainer's::

    for each batch of the batch source:
        hooks.before_step -> step(batch) -> LR schedule step -> hooks.after_step
        (a hook may stop the run: early stop, a target reached, a budget spent)

What an engine varies is passed in:

- the **batch source**: :func:`parnn.train.batch_stream`, the reference data order from a
  step on (resume), or one process's part of each mini-batch (data parallelism);
- the **step**: :class:`GradientStep` over the model the engine trains (the plain model;
  a ``DistributedDataParallel`` wrapper with its ``no_sync`` for gradient accumulation;
  a model in shared memory for Hogwild), with the engine's optimizer and criterion;
- the **LR schedule**, stepped once per step;
- the **hooks**: logging and progress (:class:`AfterStep`), evaluation per epoch
  (:class:`EpochEnd`), checkpoints by steps or seconds (:class:`CheckpointEvery`), early
  stop (``state.stop(reason)`` from any hook), parameter averaging every k steps and
  failure injection (the data-parallel engines' hooks).

Loss weighting in :class:`GradientStep`. The criterion averages over a micro-batch of ``m``
samples; the step multiplies it by

- ``m / n`` (``local`` weighting): the mean over the process's own ``n`` samples, the
  gradient the reference trainer (``n`` = the batch), Hogwild and local SGD follow;
- ``m * N / L`` (``global`` weighting, DDP): DDP then averages the N ranks' gradients,
  which gives the gradient of the mean loss over the whole mini-batch of ``L`` samples,
  i.e. exactly the reference trainer's, even when the last batch is not divisible by N.

With one micro-batch and local weighting the step is :func:`parnn.train.train_step`:
zero_grad, forward, mean loss, backward, optimizer step, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from parnn.errors import ConfigError
from parnn.train.batches import Batch

__all__ = [
    "WEIGHTINGS",
    "AfterStep",
    "CheckpointEvery",
    "EpochEnd",
    "GradientStep",
    "Hook",
    "LoopState",
    "StepOutcome",
    "train_loop",
]

WEIGHTINGS = ("local", "global")


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one step did."""

    loss: float
    """Mean loss over the step's samples, before the update (nan when it had none)."""
    loss_sum: float
    """Sum of the per-sample losses."""
    samples: int


@dataclass(slots=True)
class LoopState:
    """Where a run is; a resumed run starts from the values its checkpoint saved."""

    total_steps: int
    step: int = 0
    """Steps done."""
    samples: int = 0
    """Samples trained on (this process's)."""
    train_s: float = 0.0
    """Seconds inside the steps and the LR schedule (not the hooks)."""
    lr: float = math.nan
    """The learning rate of the last step (read before its update)."""
    last_loss: float | None = None
    stopped: str | None = None
    """Why a hook stopped the run early; None when it ran out of batches."""

    def stop(self, reason: str) -> None:
        self.stopped = reason

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


class Hook:
    """Something that runs around each step; the methods do nothing unless overridden."""

    def before_step(self, state: LoopState, batch: Batch) -> None:
        """Before ``batch``'s step (``state.step`` steps are done)."""

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        """After the step and the LR schedule step (``state`` counts it)."""


StepFunction = Callable[[Batch], StepOutcome]


def train_loop(
    step: StepFunction,
    batches: Iterable[Batch],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
    state: LoopState,
    hooks: Sequence[Hook] = (),
) -> LoopState:
    """Run ``step`` on every batch (hooks in the order given) until the batches run out
    or a hook calls ``state.stop``; returns ``state``, updated in place."""
    for batch in batches:
        for hook in hooks:
            hook.before_step(state, batch)
        state.lr = float(optimizer.param_groups[0]["lr"])
        started = time.perf_counter()
        outcome = step(batch)
        if scheduler is not None:
            scheduler.step()
        state.train_s += time.perf_counter() - started
        state.step += 1
        state.samples += outcome.samples
        state.last_loss = outcome.loss
        for hook in hooks:
            hook.after_step(state, batch, outcome)
        if state.stopped is not None:
            break
    return state


@dataclass(slots=True)
class GradientStep:
    """One optimizer step on a batch: zero_grad, forward and backward of each micro-batch
    (weighted, see the module's docstring), optimizer step.

    ``no_sync`` (DDP's) wraps every micro-batch but the last, so that gradients accumulate
    locally and are all-reduced once. Under ``global`` weighting a process whose part of
    a small last batch is empty still takes part: a forward of the whole batch with
    weight 0 adds a zero gradient to the all-reduce. A parameter without a gradient is
    left alone by the optimizer.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    inputs: torch.Tensor
    """The training inputs the batches index, (N, ...)."""
    targets: torch.Tensor
    """Their labels, (N,) int64."""
    accumulate_steps: int = 1
    weighting: str = "local"
    world_size: int = 1
    """Processes whose gradients are averaged (``global`` weighting)."""
    no_sync: Callable[[], AbstractContextManager[Any]] | None = None

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"unknown loss weighting {self.weighting!r}: choose one of {', '.join(WEIGHTINGS)}"
            )
        if self.accumulate_steps < 1:
            raise ConfigError(f"accumulate steps {self.accumulate_steps} must be >= 1")

    def __call__(self, batch: Batch) -> StepOutcome:
        self.optimizer.zero_grad(set_to_none=True)
        indices = batch.indices
        num_samples = int(indices.numel())
        if self.accumulate_steps == 1:
            micro = [indices] if num_samples else []
        else:
            micro = [
                idx for idx in torch.tensor_split(indices, self.accumulate_steps) if idx.numel()
            ]
        zero_weight = False
        if not micro:
            if self.weighting == "local":
                self.optimizer.step()
                return StepOutcome(loss=math.nan, loss_sum=0.0, samples=0)
            micro = [batch.round_indices]
            zero_weight = True
        loss_sum = 0.0
        last_loss = math.nan
        for position, idx in enumerate(micro):
            last = position == len(micro) - 1
            context = self.no_sync() if self.no_sync is not None and not last else nullcontext()
            with context:
                loss = self.criterion(self.model(self.inputs[idx]), self.targets[idx])  # mean
                size = int(idx.numel())
                if zero_weight:
                    scale = 0.0
                elif self.weighting == "global":
                    scale = size * self.world_size / batch.round_samples
                else:
                    scale = size / num_samples
                (loss * scale if scale != 1.0 else loss).backward()
            if not zero_weight:
                last_loss = float(loss.detach())
                loss_sum += last_loss * size
        self.optimizer.step()
        if zero_weight:
            return StepOutcome(loss=math.nan, loss_sum=0.0, samples=0)
        mean = last_loss if len(micro) == 1 else loss_sum / num_samples
        return StepOutcome(loss=mean, loss_sum=loss_sum, samples=num_samples)


class AfterStep(Hook):
    """``fn(state, batch, outcome)`` after every step: logging, progress, a stop rule."""

    def __init__(self, fn: Callable[[LoopState, Batch, StepOutcome], None]) -> None:
        self.fn = fn

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        self.fn(state, batch, outcome)


class EpochEnd(Hook):
    """``fn(state, epoch, complete)`` after an epoch's last step (``complete``) and after
    the run's last step when it ends inside an epoch (not ``complete``): evaluation."""

    def __init__(self, fn: Callable[[LoopState, int, bool], None]) -> None:
        self.fn = fn

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        if batch.last_of_epoch:
            self.fn(state, batch.epoch, True)
        elif state.finished:
            self.fn(state, batch.epoch, False)


class CheckpointEvery(Hook):
    """``save(state)`` every ``steps`` steps and/or every ``seconds`` seconds of wall time
    (the first timed save comes ``seconds`` after the hook is made), and after the last
    step when ``at_end``."""

    def __init__(
        self,
        save: Callable[[LoopState], None],
        *,
        steps: int | None = None,
        seconds: float | None = None,
        at_end: bool = False,
    ) -> None:
        self.save = save
        self.steps = steps
        self.seconds = seconds
        self.at_end = at_end
        self.last_saved = time.perf_counter()

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        if state.finished:
            due = self.at_end
        else:
            due = bool(self.steps and state.step % self.steps == 0) or bool(
                self.seconds and time.perf_counter() - self.last_saved >= self.seconds
            )
        if due:
            self.save(state)
            self.last_saved = time.perf_counter()
