"""The batch-size scaling study (Shallue et al., 2018, "Measuring the Effects of Data
Parallelism on Neural Network Training"): how many optimizer steps does training need to
reach a target validation accuracy, as a function of the batch size?

Data parallelism buys a larger batch per step; it pays only while a larger batch cuts the
steps. Steps are hardware-independent, so the study runs the one training loop
(:func:`parnn.train.train_loop`) in one process, its stop rules a hook.
For each batch size the learning rate is tuned over a small grid (a hill climb from the
previous batch size's best rate, which grows with the batch), and the best steps count.
On a log-log plot the curve shows three regimes::

    log steps
      |\\            perfect scaling: slope -1 (doubling the batch halves the steps)
      | \\
      |  `--.        diminishing returns: -1 < slope < 0
      |      `-----  maximal data parallelism: slope ~ 0 (a larger batch buys nothing)
      +-------------- log batch size

Each finished trial is one cell of the study's store (``cells.jsonl`` in the output
directory, :class:`~parnn.bench.cells.StudyStore`), so an interrupted study resumes where
it stopped; :mod:`.batch_scaling_report` renders it (``parnn report DIR``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import nn

from parnn.bench.cells import Cell, StudyStore
from parnn.data import ArrayDataset
from parnn.errors import ConfigError
from parnn.train import (
    Batch,
    GradientStep,
    Hook,
    LoopState,
    OptimizerConfig,
    StepOutcome,
    batch_stream,
    evaluate,
    make_criterion,
    make_optimizer,
    num_batches,
    train_loop,
)

__all__ = [
    "KIND",
    "REGIME_THRESHOLDS",
    "BatchScalingConfig",
    "BatchScalingResult",
    "ScalingPoint",
    "Trial",
    "best_points",
    "hill_climb",
    "locate_regimes",
    "parse_batch_sizes",
    "run_batch_scaling",
    "run_trial",
    "trials_of",
]

REGIME_THRESHOLDS = (-0.75, -0.1)
"""Local slope of log(steps) vs log(batch): <= -0.75 perfect scaling, >= -0.1 maximal data
parallelism, between them diminishing returns."""
_DIVERGED_LOSS = 1e3


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'8,16,...,1024' -> (8, 16, 32, ..., 1024) (the ratio of the first two, repeated);
    '8,32,128' as given."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        if "..." in parts:
            position = parts.index("...")
            if position < 2 or position != len(parts) - 2:
                raise ValueError
            first, second, last = int(parts[0]), int(parts[1]), int(parts[-1])
            if second <= first or second % first:
                raise ValueError
            sizes = [int(part) for part in parts[:position]]
            while sizes[-1] * (second // first) <= last:
                sizes.append(sizes[-1] * (second // first))
        else:
            sizes = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"bad batch sizes {text!r}: give integers like 8,16,32 or a doubling run "
            "like 8,16,...,1024"
        ) from None
    if not sizes or any(size < 1 for size in sizes) or sorted(set(sizes)) != sizes:
        raise ConfigError(
            f"bad batch sizes {text!r}: they must be positive and increasing, e.g. 8,16,...,1024"
        )
    return tuple(sizes)


@dataclass(kw_only=True, slots=True)
class BatchScalingConfig:
    """What to sweep and when a trial stops."""

    batch_sizes: tuple[int, ...]
    """Increasing batch sizes to measure."""
    learning_rates: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    """The LR grid; each batch size tries a few of them (hill climb)."""
    target_accuracy: float = 0.97
    """Validation accuracy a trial must reach, in (0, 1]."""
    max_epochs: float = 20.0
    """Budget of one trial in epochs; a trial that misses the target by then 'fails'."""
    optimizer: str = "sgd"
    momentum: float = 0.9
    seed: int = 0
    """Seed of the weights (each trial starts from the same ones) and of the data order."""
    eval_growth: float = 0.1
    """Evaluate when the step count has grown by this fraction since the last evaluation
    (so the steps to target are known within this relative error)."""
    patience: int = 10
    """Give a trial up ('stalled') after this many evaluations without a better accuracy,
    once it has trained for one epoch and for (1 + eval_growth) ** patience times the
    steps of its last improvement (2.6 times with the defaults)."""

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(sorted(set(self.batch_sizes)))
        self.learning_rates = tuple(sorted(set(self.learning_rates)))
        if not self.batch_sizes or self.batch_sizes[0] < 1:
            raise ConfigError(f"batch sizes {self.batch_sizes} must be >= 1, e.g. 8,16,...,1024")
        if not self.learning_rates or self.learning_rates[0] <= 0:
            raise ConfigError(f"learning rates {self.learning_rates} must be > 0")
        if not 0 < self.target_accuracy <= 1:
            raise ConfigError(
                f"target accuracy {self.target_accuracy} must be in (0, 1], e.g. 0.97"
            )
        if not self.max_epochs > 0:
            raise ConfigError(f"max epochs {self.max_epochs} must be > 0")
        if not 0 < self.eval_growth <= 1:
            raise ConfigError(f"eval growth {self.eval_growth} must be in (0, 1], e.g. 0.1")
        if self.patience < 1:
            raise ConfigError(f"patience {self.patience} must be >= 1 evaluations")
        OptimizerConfig(name=self.optimizer, lr=self.learning_rates[0], momentum=self.momentum)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_sizes": list(self.batch_sizes),
            "learning_rates": list(self.learning_rates),
            "target_accuracy": self.target_accuracy,
            "max_epochs": self.max_epochs,
            "optimizer": self.optimizer,
            "momentum": self.momentum,
            "seed": self.seed,
            "eval_growth": self.eval_growth,
            "patience": self.patience,
        }


@dataclass(slots=True)
class Trial:
    """One (batch size, learning rate) run until the target, the budget or divergence."""

    batch_size: int
    lr: float
    steps_to_target: int | None
    """First evaluated step at which validation accuracy reached the target; None if never."""
    steps_run: int
    best_accuracy: float
    evaluations: int
    stopped: str
    """'target', 'budget' (max epochs), 'stalled' (no progress for ``patience``
    evaluations), 'pruned' (already slower than a better LR) or 'diverged'."""
    elapsed_s: float

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None


@dataclass(slots=True)
class ScalingPoint:
    """The best trial of one batch size."""

    batch_size: int
    best_lr: float | None
    steps: int | None
    epochs: float | None
    samples: int | None
    trials: int


class _TrialStop(Hook):
    """The trial's stop rules, after each step: divergence, the target (evaluated when the
    steps have grown by ``eval_growth``), the budget, a stall, or a better LR's steps."""

    def __init__(
        self,
        model: nn.Module,
        val_data: ArrayDataset,
        config: BatchScalingConfig,
        per_epoch: int,
        step_limit: int | None,
    ) -> None:
        self.model = model
        self.val_data = val_data
        self.config = config
        self.per_epoch = per_epoch
        self.step_limit = step_limit
        self.stall_factor = (1 + config.eval_growth) ** config.patience  # growth since best
        self.next_eval = 1
        self.evaluations = self.since_best = self.best_step = 0
        self.best = 0.0
        self.steps_to_target: int | None = None

    def after_step(self, state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        step, config = state.step, self.config
        if not math.isfinite(outcome.loss) or outcome.loss > _DIVERGED_LOSS:
            state.stop("diverged")
            return
        if step >= self.next_eval or state.finished:
            accuracy = evaluate(self.model, self.val_data).accuracy
            self.evaluations += 1
            self.since_best = 0 if accuracy > self.best else self.since_best + 1
            self.best_step = step if accuracy > self.best else self.best_step
            self.best = max(self.best, accuracy)
            if accuracy >= config.target_accuracy:
                self.steps_to_target = step
                state.stop("target")
                return
            self.next_eval = max(step + 1, math.ceil(step * (1 + config.eval_growth)))
        if state.finished:
            state.stop("budget")
        if (
            self.since_best >= config.patience
            and step >= self.per_epoch
            and step >= self.stall_factor * self.best_step
        ):
            state.stop("stalled")
        if self.step_limit is not None and step >= self.step_limit:
            state.stop("pruned")


def run_trial(
    model_factory: Callable[[], nn.Module],
    train_data: ArrayDataset,
    val_data: ArrayDataset,
    batch_size: int,
    lr: float,
    config: BatchScalingConfig,
    *,
    step_limit: int | None = None,
) -> Trial:
    """Train a fresh model with (batch_size, lr) on the one training loop until the target
    accuracy; stop early past ``step_limit`` (another LR already did better)."""
    start = time.perf_counter()
    model = model_factory()
    optimizer = make_optimizer(
        model.parameters(),
        OptimizerConfig(name=config.optimizer, lr=lr, momentum=config.momentum),
    )
    per_epoch = num_batches(len(train_data), batch_size)
    budget = max(1, math.ceil(config.max_epochs * per_epoch))
    stop = _TrialStop(model, val_data, config, per_epoch, step_limit)
    state = train_loop(
        GradientStep(model, optimizer, make_criterion(), train_data.inputs, train_data.targets),
        batch_stream(len(train_data), batch_size, seed=config.seed, total_steps=budget),
        optimizer=optimizer,
        state=LoopState(total_steps=budget),
        hooks=[stop],
    )
    return Trial(batch_size, lr, stop.steps_to_target, state.step, stop.best, stop.evaluations,
                 state.stopped or "budget", time.perf_counter() - start)  # fmt: skip


def locate_regimes(points: Sequence[ScalingPoint]) -> list[dict[str, Any]]:
    """Contiguous batch-size ranges of one regime, from the local log-log slopes."""
    reached = [point for point in points if point.steps is not None]
    spans: list[dict[str, Any]] = []
    for left, right in zip(reached, reached[1:], strict=False):
        assert left.steps is not None and right.steps is not None
        slope = math.log(right.steps / left.steps) / math.log(right.batch_size / left.batch_size)
        if slope <= REGIME_THRESHOLDS[0]:
            regime = "perfect scaling"
        elif slope >= REGIME_THRESHOLDS[1]:
            regime = "maximal data parallelism"
        else:
            regime = "diminishing returns"
        if spans and spans[-1]["regime"] == regime:
            spans[-1]["to_batch"] = right.batch_size
            spans[-1]["slopes"].append(round(slope, 3))
        else:
            spans.append({"regime": regime, "from_batch": left.batch_size,
                          "to_batch": right.batch_size, "slopes": [round(slope, 3)]})  # fmt: skip
    missed = [point.batch_size for point in points if point.steps is None]
    if missed:
        spans.append({"regime": "target not reached within the budget",
                      "from_batch": missed[0], "to_batch": missed[-1], "slopes": []})  # fmt: skip
    return spans


@dataclass(slots=True)
class BatchScalingResult:
    config: BatchScalingConfig
    trials: list[Trial] = field(default_factory=list)
    points: list[ScalingPoint] = field(default_factory=list)

    @property
    def regimes(self) -> list[dict[str, Any]]:
        return locate_regimes(self.points)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.config.to_dict(),
            "points": [asdict(point) for point in self.points],
            "regimes": self.regimes,
            "trials": [asdict(trial) for trial in self.trials],
        }


KIND = "batch-scaling"


class _TrialStore:
    """The study's store (``study.json`` + ``cells.jsonl``: one cell per trial, keyed by
    batch size and LR) in the output directory: resume, refuse other settings."""

    def __init__(self, directory: Path | None, settings: dict[str, Any]) -> None:
        self.store = StudyStore(directory) if directory is not None else None
        self.done: dict[tuple[int, float], Trial] = {}
        if self.store is None:
            return
        self.store.open(KIND, settings)
        for trial in trials_of(self.store.records()):
            self.done[(trial.batch_size, trial.lr)] = trial

    def add(self, trial: Trial) -> None:
        self.done[(trial.batch_size, trial.lr)] = trial
        if self.store is not None:
            self.store.add(Cell({"batch_size": trial.batch_size, "lr": trial.lr}), asdict(trial))


def trials_of(records: Sequence[Mapping[str, Any]]) -> list[Trial]:
    """The trials of a batch-scaling study's records, in the order they ran."""
    names = [item.name for item in fields(Trial)]
    return [Trial(**{name: record[name] for name in names}) for record in records]


def best_points(
    config: BatchScalingConfig, trials: Sequence[Trial], train_samples: int
) -> list[ScalingPoint]:
    """Per batch size, the trial with the fewest steps to the target (the first of equals,
    in the order they ran, as the hill climb picks it)."""
    points = []
    for batch_size in config.batch_sizes:
        mine = [trial for trial in trials if trial.batch_size == batch_size]
        winner: Trial | None = None
        for trial in mine:
            if trial.reached and (winner is None or _score(trial) < _score(winner)):
                winner = trial
        steps = winner.steps_to_target if winner is not None else None
        points.append(
            ScalingPoint(
                batch_size=batch_size,
                best_lr=winner.lr if winner is not None else None,
                steps=steps,
                epochs=round(steps * batch_size / train_samples, 3) if steps is not None else None,
                samples=steps * batch_size if steps is not None else None,
                trials=len(mine),
            )
        )
    return points


def run_batch_scaling(
    model_factory: Callable[[], nn.Module],
    train_data: ArrayDataset,
    val_data: ArrayDataset,
    config: BatchScalingConfig,
    *,
    out_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> BatchScalingResult:
    """Sweep the batch sizes; for each, hill-climb the LR grid from the previous best LR
    (the smallest batch starts from the smallest LR: the best LR grows with the batch)."""
    store = _TrialStore(out_dir, {**config.to_dict(), **(settings or {})})
    result = BatchScalingResult(config)
    grid = config.learning_rates
    start_index = 0
    for batch_size in config.batch_sizes:
        tried: dict[int, Trial] = {}

        def attempt(
            index: int, batch_size: int = batch_size, tried: dict[int, Trial] = tried
        ) -> Trial:
            if index not in tried:
                trial = store.done.get((batch_size, grid[index]))
                if trial is None:
                    best_steps = [
                        t.steps_to_target for t in tried.values() if t.steps_to_target is not None
                    ]
                    limit = min(best_steps) if best_steps else None
                    trial = run_trial(model_factory, train_data, val_data, batch_size,
                                      grid[index], config, step_limit=limit)  # fmt: skip
                    store.add(trial)
                tried[index] = trial
                result.trials.append(trial)
                if on_trial is not None:
                    on_trial(trial)
            return tried[index]

        best = hill_climb(attempt, start_index, len(grid))
        start_index = best if best is not None else start_index
        winner = tried.get(best) if best is not None else None
        steps = winner.steps_to_target if winner is not None else None
        per_epoch = len(train_data)
        result.points.append(
            ScalingPoint(
                batch_size=batch_size,
                best_lr=grid[best] if best is not None else None,
                steps=steps,
                epochs=round(steps * batch_size / per_epoch, 3) if steps is not None else None,
                samples=steps * batch_size if steps is not None else None,
                trials=len(tried),
            )
        )
    return result


def _score(trial: Trial) -> float:
    return float(trial.steps_to_target) if trial.steps_to_target is not None else math.inf


def hill_climb(attempt: Callable[[int], Trial], start: int, size: int) -> int | None:
    """Index of the LR with the fewest steps to target, searched from ``start`` upwards
    while it improves, then downwards; None when no LR reached the target."""
    best = start
    best_score = _score(attempt(start))
    for direction in (1, -1):
        index = start + direction
        while 0 <= index < size:
            score = _score(attempt(index))
            if score < best_score:
                best, best_score = index, score
                index += direction
            else:
                break
        if direction == 1 and best != start:
            break  # climbing up helped: the optimum is not below the start
    return best if math.isfinite(best_score) else None
