"""One k-fold job, as a worker runs it: the one training loop on one fold.

    build (seeded) -> train_loop: batch_stream order, GradientStep, schedule.step()
                      hooks: progress to the pool; checkpoint every N steps and/or
                             every T seconds (atomic)
                   -> evaluate on the held-out fold

The loop is the reference trainer's (:func:`parnn.train.train_loop`): the same data order
(:func:`~parnn.train.batch_stream` by seed), the same step, the schedule stepped once per
optimizer step, the same checkpoint contents (model, optimizer, schedule, position, RNG).
A job plugs in the user's optimizer factory and criterion (the AsyncKFold API) and its
own hooks; with the default factory and criterion a job ends with the parameters
:func:`parnn.train.train` gives, bit for bit (tested).

A job resumed from its checkpoint ends where an uninterrupted one does: the position
(step) fixes the epoch and batch, and the model, optimizer, schedule and global RNG
(dropout) states are restored.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from parnn.errors import CheckpointError, ConfigError
from parnn.jobs.spec import JobSpec
from parnn.jobs.worker import JobReporter
from parnn.models import build_model
from parnn.train import (
    AfterStep,
    Batch,
    CheckpointEvery,
    GradientStep,
    LoopState,
    OptimizerConfig,
    StepOutcome,
    batch_stream,
    evaluate,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    restore_training_state,
    save_checkpoint,
    train_loop,
    training_state,
)

__all__ = [
    "FoldContext",
    "ModelSource",
    "OptimizerFactory",
    "build_job_model",
    "run_fold_job",
    "train_fold",
]

ModelSource = str | Callable[..., nn.Module]
"""A zoo name / user spec ('file.py:build'), or a picklable callable returning a model."""


@dataclass(frozen=True, slots=True)
class OptimizerFactory:
    """``get_optimizer(model)`` built from an :class:`OptimizerConfig`; picklable."""

    config: OptimizerConfig

    def __call__(self, model: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(model.parameters(), self.config)

    def describe(self) -> dict[str, Any]:
        return self.config.to_dict()


@dataclass(slots=True)
class FoldContext:
    """What every job of a run shares; sent to each worker once, when it starts."""

    inputs: torch.Tensor  # (N, C, H, W) float32, the whole dataset
    targets: torch.Tensor  # (N,) int64
    num_classes: int
    splits: Sequence[tuple[np.ndarray, np.ndarray]]  # per fold: (train_idx, val_idx)
    models: dict[str, ModelSource]  # job.model -> how to build it
    get_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    criterion: nn.Module  # mean loss over a mini-batch
    batch_size: int
    warmup_steps: int | None  # of the 'warm' schedule; None: 10% of the job
    save_checkpoint_frequency: int | None  # steps between checkpoints; None: none
    print_frequency: int  # steps between progress reports (and loss-history points)
    checkpoint_dir: str  # one checkpoint file per job, overwritten atomically
    eval_batch_size: int = 256
    drop_last: bool = False
    checkpoint_interval_s: float | None = None  # seconds between checkpoints; None: by steps


def build_job_model(
    source: ModelSource, input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """A zoo/user name goes through :func:`parnn.models.build_model`; a callable gets
    ``input_shape``/``num_classes`` as keywords when its signature takes them."""
    if isinstance(source, str):
        return build_model(source, input_shape=input_shape, num_classes=num_classes)
    try:
        parameters = inspect.signature(source).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        parameters = {}  # type: ignore[assignment]
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs: dict[str, Any] = {}
    if takes_all or "input_shape" in parameters:
        kwargs["input_shape"] = input_shape
    if takes_all or "num_classes" in parameters:
        kwargs["num_classes"] = num_classes
    model = source(**kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {getattr(source, '__name__', source)!r} returned "
            f"{type(model).__name__}, not an nn.Module"
        )
    return model


def _fingerprint(job: JobSpec, num_train: int, batch_size: int) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "seed": job.seed,
        "total_steps": job.total_steps,
        "num_train": num_train,
        "batch_size": batch_size,
    }


def train_fold(
    context: FoldContext,
    job: JobSpec,
    on_progress: Callable[[int, int, float | None], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``job`` (resuming from its checkpoint when there is one); return the model and
    the job's numbers (the fields of :class:`~parnn.jobs.spec.JobResult` it knows)."""
    started = time.perf_counter()
    train_index, val_index = context.splits[job.fold]
    train_x = context.inputs[torch.as_tensor(train_index)]  # (N_train, C, H, W)
    train_y = context.targets[torch.as_tensor(train_index)]  # (N_train,)
    val_data = cast(
        Dataset[tuple[torch.Tensor, torch.Tensor]],
        TensorDataset(
            context.inputs[torch.as_tensor(val_index)], context.targets[torch.as_tensor(val_index)]
        ),
    )
    num_train = int(train_y.shape[0])

    torch.manual_seed(job.seed)
    source = context.models[job.model]
    model = build_job_model(source, tuple(context.inputs.shape[1:]), context.num_classes)
    optimizer = context.get_optimizer(model)
    scheduler = make_scheduler(
        optimizer, job.scheduler, total_steps=job.total_steps, warmup_steps=context.warmup_steps
    )
    fingerprint = _fingerprint(job, num_train, context.batch_size)
    path = Path(context.checkpoint_dir) / f"{job.file_stem}.pt"
    state = LoopState(total_steps=job.total_steps)
    time_s = 0.0  # seconds of work before this session
    history: list[list[float]] = []
    warnings: list[str] = []
    if path.exists():
        try:
            saved = load_checkpoint(path)
            if saved.get("fingerprint") != fingerprint:
                raise CheckpointError(f"checkpoint {path} is from another job or settings")
            restore_training_state(saved, model, optimizer, scheduler)
            state = LoopState(
                total_steps=job.total_steps,
                step=int(saved["step"]),
                samples=int(saved["samples"]),
                last_loss=saved.get("last_loss"),
            )
            time_s = float(saved["time_s"])
            history = [list(point) for point in saved["loss_history"]]
        except (CheckpointError, KeyError, RuntimeError, ValueError, TypeError) as error:
            torch.manual_seed(job.seed)  # start again from scratch, exactly as a fresh job
            model = build_job_model(source, tuple(context.inputs.shape[1:]), context.num_classes)
            optimizer = context.get_optimizer(model)
            scheduler = make_scheduler(
                optimizer,
                job.scheduler,
                total_steps=job.total_steps,
                warmup_steps=context.warmup_steps,
            )
            warnings.append(
                f"ignored unusable checkpoint ({' '.join(str(error).split())}); it ran from step 0"
            )
    resumed_from = state.step

    def save(state: LoopState) -> None:
        checkpoint = {
            "fingerprint": fingerprint,
            **training_state(model, optimizer, scheduler),
            "step": state.step,
            "samples": state.samples,
            "time_s": time_s + (time.perf_counter() - started),
            "loss_history": history,
            "last_loss": state.last_loss,
        }
        save_checkpoint(path, checkpoint)

    def report(state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        if state.step % context.print_frequency == 0 or state.finished:
            history.append([state.step, outcome.loss])
            if on_progress is not None:
                on_progress(state.step, job.total_steps, outcome.loss)

    model.train()
    train_loop(
        GradientStep(model, optimizer, context.criterion, train_x, train_y),
        batch_stream(
            num_train,
            context.batch_size,
            seed=job.seed,
            total_steps=job.total_steps,
            drop_last=context.drop_last,
            start_step=state.step,
        ),
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        hooks=[
            AfterStep(report),
            CheckpointEvery(
                save,
                steps=context.save_checkpoint_frequency,
                seconds=context.checkpoint_interval_s,
            ),
        ],
    )

    scores = evaluate(model, val_data, batch_size=context.eval_batch_size)
    return model, {
        "accuracy": scores.accuracy,
        "loss": scores.loss,
        "train_loss": state.last_loss,
        "per_class_accuracy": list(scores.per_class_accuracy),
        "steps": state.step,
        "samples": state.samples,
        "num_train": num_train,
        "num_val": int(len(val_index)),
        "time_s": time_s + (time.perf_counter() - started),
        "resumed_from_step": resumed_from,
        "loss_history": history,
        "threads": torch.get_num_threads(),
        "warnings": warnings,
    }


def run_fold_job(context: FoldContext, job: JobSpec, reporter: JobReporter) -> dict[str, Any]:
    """The pool's job function: train the job and return its numbers."""
    _, numbers = train_fold(context, job, reporter.progress)
    return numbers
