"""One k-fold job, as a worker runs it: the reference trainer's pieces on one fold.

    build (seeded) -> for each step: batch_indices order, train_step, schedule.step()
                   -> checkpoint every N steps and/or every T seconds (atomic)
                   -> evaluate on the held-out fold

The loop is the reference trainer's (:func:`parnn.train.train`): the same data order
(:func:`~parnn.train.batch_indices` by seed and epoch), the same step
(:func:`~parnn.train.train_step`), the schedule stepped once per optimizer step, the same
checkpoint contents (model, optimizer, schedule, position, RNG). It is its own loop only
because a job takes the user's optimizer factory and criterion (the AsyncKFold API) and
reports its progress to the pool; with the default factory and criterion a job ends with
the parameters :func:`parnn.train.train` gives, bit for bit (tested).

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
    OptimizerConfig,
    batch_indices,
    evaluate,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    num_batches,
    save_checkpoint,
    train_step,
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


@dataclass(slots=True)
class _Position:
    step: int = 0
    samples: int = 0
    time_s: float = 0.0  # seconds of work before this session
    resumed_from: int = 0
    last_loss: float | None = None


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
    steps_per_epoch = num_batches(num_train, context.batch_size, drop_last=context.drop_last)

    torch.manual_seed(job.seed)
    source = context.models[job.model]
    model = build_job_model(source, tuple(context.inputs.shape[1:]), context.num_classes)
    optimizer = context.get_optimizer(model)
    scheduler = make_scheduler(
        optimizer, job.lr_schedule, total_steps=job.total_steps, warmup_steps=context.warmup_steps
    )
    criterion = context.criterion
    fingerprint = _fingerprint(job, num_train, context.batch_size)
    path = Path(context.checkpoint_dir) / f"{job.file_stem}.pt"
    position = _Position()
    history: list[list[float]] = []
    warnings: list[str] = []
    if path.exists():
        try:
            state = load_checkpoint(path)
            if state.get("fingerprint") != fingerprint:
                raise CheckpointError(f"checkpoint {path} is from another job or settings")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng_state"])
            position = _Position(
                step=int(state["step"]),
                samples=int(state["samples"]),
                time_s=float(state["time_s"]),
                resumed_from=int(state["step"]),
                last_loss=state.get("last_loss"),
            )
            history = [list(point) for point in state["loss_history"]]
        except (CheckpointError, KeyError, RuntimeError, ValueError, TypeError) as error:
            torch.manual_seed(job.seed)  # start again from scratch, exactly as a fresh job
            model = build_job_model(source, tuple(context.inputs.shape[1:]), context.num_classes)
            optimizer = context.get_optimizer(model)
            scheduler = make_scheduler(
                optimizer,
                job.lr_schedule,
                total_steps=job.total_steps,
                warmup_steps=context.warmup_steps,
            )
            warnings.append(
                f"ignored unusable checkpoint ({' '.join(str(error).split())}); it ran from step 0"
            )

    def save() -> None:
        state = {
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": position.step,
            "samples": position.samples,
            "time_s": position.time_s + (time.perf_counter() - started),
            "torch_rng_state": torch.get_rng_state(),
            "loss_history": history,
            "last_loss": position.last_loss,
        }
        save_checkpoint(path, state)

    frequency = context.save_checkpoint_frequency
    interval_s = context.checkpoint_interval_s
    last_saved = started
    model.train()
    while position.step < job.total_steps:
        epoch, first_batch = divmod(position.step, steps_per_epoch)
        batches = batch_indices(
            num_train, context.batch_size, seed=job.seed, epoch=epoch, drop_last=context.drop_last
        )
        for index in batches[first_batch:]:
            loss = train_step(model, train_x[index], train_y[index], optimizer, criterion)
            scheduler.step()
            position.step += 1
            position.samples += int(index.numel())
            position.last_loss = loss
            if position.step % context.print_frequency == 0 or position.step == job.total_steps:
                history.append([position.step, loss])
                if on_progress is not None:
                    on_progress(position.step, job.total_steps, loss)
            if position.step < job.total_steps and (
                (frequency and position.step % frequency == 0)
                or (interval_s and time.perf_counter() - last_saved >= interval_s)
            ):
                save()
                last_saved = time.perf_counter()
            if position.step == job.total_steps:
                break

    scores = evaluate(model, val_data, batch_size=context.eval_batch_size)
    return model, {
        "accuracy": scores.accuracy,
        "loss": scores.loss,
        "train_loss": position.last_loss,
        "per_class_accuracy": list(scores.per_class_accuracy),
        "steps": position.step,
        "samples": position.samples,
        "num_train": num_train,
        "num_val": int(len(val_index)),
        "time_s": position.time_s + (time.perf_counter() - started),
        "resumed_from_step": position.resumed_from,
        "loss_history": history,
        "threads": torch.get_num_threads(),
        "warnings": warnings,
    }


def run_fold_job(context: FoldContext, job: JobSpec, reporter: JobReporter) -> dict[str, Any]:
    """The pool's job function: train the job and return its numbers."""
    _, numbers = train_fold(context, job, reporter.progress)
    return numbers
