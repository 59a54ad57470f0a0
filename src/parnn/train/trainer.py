"""The reference trainer: the one training loop (:func:`parnn.train.loop.train_loop`) over
the reference data order (:func:`batch_stream`) with the plain step, the LR schedule stepped
per step, and hooks for evaluation per epoch, metrics as JSON lines, a progress bar, atomic
checkpoints and an exact resume."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from parnn.errors import CheckpointError, ConfigError
from parnn.progress import progress_bar
from parnn.results import atomic_write_text, machine_facts, read_jsonl, to_json, write_json
from parnn.train.batches import Batch, batch_stream, dataset_tensors
from parnn.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from parnn.train.config import TrainConfig
from parnn.train.loop import (
    AfterStep,
    CheckpointEvery,
    EpochEnd,
    GradientStep,
    Hook,
    LoopState,
    StepOutcome,
    train_loop,
)
from parnn.train.optim import make_criterion, make_optimizer
from parnn.train.records import EpochRecord, StepRecord, TrainResult
from parnn.train.schedules import make_scheduler
from parnn.train.step import EvalResult, evaluate

__all__ = ["EpochRecord", "StepRecord", "TrainResult", "train"]

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"

# Settings that shape the trajectory: a checkpoint resumes only a run that agrees on them.
_TRAJECTORY_KEYS = ("batch_size", "optimizer", "schedule", "warmup_steps", "seed", "drop_last")

_Data = Dataset[tuple[torch.Tensor, torch.Tensor]]


@dataclass(slots=True)
class _Progress:
    """Where a run is: the loop's state, the wall time of earlier sessions and the records;
    with the model, optimizer and schedule, what a checkpoint holds."""

    loop: LoopState
    elapsed_s: float = 0.0
    step_log: list[StepRecord] = field(default_factory=list)
    history: list[EpochRecord] = field(default_factory=list)


class _MetricsLog:
    """``metrics.jsonl``: one JSON object a line, flushed per line, synced per epoch."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")  # closed in close()

    def write(self, kind: str, **record: Any) -> None:
        if self._handle is not None:
            self._handle.write(to_json({"kind": kind, **record}, indent=None) + "\n")
            self._handle.flush()

    def sync(self) -> None:
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None


def train(
    model: nn.Module,
    train_data: _Data,
    val_data: _Data | None,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``train_data``; evaluate on ``val_data`` after each epoch.

    The caller seeds and builds the model (``torch.manual_seed(seed)`` then ``build_model``).
    With ``out_dir``, writes ``metrics.jsonl``, ``result.json`` and (with
    ``config.checkpoint_every``) ``checkpoints/step-*.pt``. ``resume=True`` continues from
    the latest checkpoint in ``out_dir`` and ends with the parameters an uninterrupted run
    would have, bit for bit.
    """
    directory = Path(out_dir) if out_dir is not None else None
    if resume and directory is None:
        raise ConfigError("resume needs the run's output directory: pass --out DIR with --resume")
    inputs, targets = dataset_tensors(train_data)  # (N, ...), (N,)
    num_samples = int(targets.shape[0])
    if num_samples == 0:
        raise ConfigError("the training set is empty: nothing to train on")
    steps_per_epoch = config.steps_per_epoch(num_samples)
    total_steps = config.total_steps(num_samples)
    optimizer = make_optimizer(model.parameters(), config.optimizer)
    scheduler = make_scheduler(
        optimizer, config.schedule, total_steps=total_steps, warmup_steps=config.warmup_steps
    )
    criterion = make_criterion()
    fingerprint = _fingerprint(model, config, num_samples, total_steps)
    checkpoints = directory / CHECKPOINT_DIR if directory is not None else None

    progress = _Progress(LoopState(total_steps=total_steps))
    resumed_from: int | None = None
    if resume:
        assert checkpoints is not None
        progress = _restore(checkpoints, model, optimizer, scheduler, fingerprint, config)
        resumed_from = progress.loop.step
    elif checkpoints is not None and latest_checkpoint(checkpoints) is not None:
        warnings.warn(
            f"removing the checkpoints of an earlier run in {checkpoints} (not --resume)",
            stacklevel=2,
        )
        prune_checkpoints(checkpoints, keep=0)

    metrics_path = directory / METRICS_FILE if directory is not None else None
    if metrics_path is not None:
        _prepare_metrics(metrics_path, resumed_from)
    log = _MetricsLog(metrics_path)
    if resumed_from is None:
        log.write("start", config=config.to_dict(), total_steps=total_steps, samples=num_samples)
    else:
        log.write("resume", step=resumed_from)

    def wall_s() -> float:
        return progress.elapsed_s + (time.perf_counter() - session_start)

    def save(state: LoopState) -> None:
        assert checkpoints is not None
        checkpoint = {
            "fingerprint": fingerprint,
            **training_state(model, optimizer, scheduler),
            "step": state.step,
            "epoch": state.step // steps_per_epoch,
            "batch_index": state.step % steps_per_epoch,
            "samples": state.samples,
            "elapsed_s": wall_s(),
            "train_s": state.train_s,
            "step_log": [record.to_dict() for record in progress.step_log],
            "history": [record.to_dict() for record in progress.history],
        }
        save_checkpoint(checkpoint_path(checkpoints, state.step), checkpoint)
        prune_checkpoints(checkpoints, keep=config.keep_checkpoints)
        log.sync()

    def end_epoch(state: LoopState, epoch: int, complete: bool) -> None:
        val = (
            evaluate(model, val_data, batch_size=config.eval_batch_size)
            if val_data is not None
            else None
        )
        losses = [record.loss for record in progress.step_log if record.epoch == epoch]
        record = EpochRecord(
            epoch=epoch,
            step=state.step,
            train_loss=sum(losses) / len(losses) if losses else float("nan"),
            val=val,
            wall_s=wall_s(),
            complete=complete,
        )
        progress.history.append(record)
        log.write("epoch", **record.to_dict())
        log.sync()

    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    session_start = time.perf_counter()
    try:
        model.train()
        with progress_bar(total_steps, "train", quiet=quiet) as bar:
            bar.advance(progress.loop.step)

            def record_step(state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
                record = StepRecord(
                    step=state.step,
                    epoch=batch.epoch,
                    loss=outcome.loss,
                    lr=state.lr,
                    wall_s=wall_s(),
                    samples=state.samples,
                )
                progress.step_log.append(record)
                log.write("step", **record.to_dict())
                bar.advance()
                bar.set_postfix(
                    f"epoch {batch.epoch + 1} loss {outcome.loss:.4f} lr {state.lr:.3g}"
                )

            hooks: list[Hook] = [AfterStep(record_step), EpochEnd(end_epoch)]
            if config.checkpoint_every is not None:
                hooks.append(CheckpointEvery(save, steps=config.checkpoint_every, at_end=True))
            train_loop(
                GradientStep(model, optimizer, criterion, inputs, targets),
                batch_stream(
                    num_samples,
                    config.batch_size,
                    seed=config.seed,
                    total_steps=total_steps,
                    drop_last=config.drop_last,
                    start_step=progress.loop.step,
                ),
                optimizer=optimizer,
                scheduler=scheduler,
                state=progress.loop,
                hooks=hooks,
            )
    finally:
        torch.set_num_threads(previous_threads)
        log.close()

    progress.elapsed_s += time.perf_counter() - session_start
    final = _final_metrics(progress, model, val_data, config)
    loop = progress.loop
    result = TrainResult(
        config=config,
        history=tuple(progress.history),
        step_log=tuple(progress.step_log),
        final=final,
        steps=loop.step,
        samples=loop.samples,
        elapsed_s=progress.elapsed_s,
        train_s=loop.train_s,
        samples_per_s=loop.samples / loop.train_s if loop.train_s > 0 else 0.0,
        resumed_from=resumed_from,
        out_dir=directory,
    )
    if directory is not None:
        write_json(directory / RESULT_FILE, {**result.to_dict(), "machine": machine_facts()})
    return result


def _final_metrics(
    progress: _Progress, model: nn.Module, val_data: _Data | None, config: TrainConfig
) -> EvalResult | None:
    if val_data is None:
        return None
    if progress.history and progress.history[-1].step == progress.loop.step:
        return progress.history[-1].val
    return evaluate(model, val_data, batch_size=config.eval_batch_size)


def _fingerprint(
    model: nn.Module, config: TrainConfig, num_samples: int, total_steps: int
) -> dict[str, Any]:
    settings = config.to_dict()
    return {
        **{key: settings[key] for key in _TRAJECTORY_KEYS},
        "num_samples": num_samples,
        "total_steps": total_steps,
        "parameters": [[name, list(p.shape)] for name, p in model.named_parameters()],
        "threads": config.threads,
    }


def _restore(
    checkpoints: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: dict[str, Any],
    config: TrainConfig,
) -> _Progress:
    path = latest_checkpoint(checkpoints)
    if path is None:
        raise CheckpointError(
            f"no checkpoint to resume from in {checkpoints}: "
            "run without --resume (and with --checkpoint-every N) first"
        )
    state = load_checkpoint(path)
    saved = state.get("fingerprint", {})
    differ = [key for key in fingerprint if key != "threads" and saved.get(key) != fingerprint[key]]
    if differ:
        details = ", ".join(f"{key}: {saved.get(key)!r} -> {fingerprint[key]!r}" for key in differ)
        raise CheckpointError(
            f"checkpoint {path} is from another run ({details}); "
            "resume with the settings it was written with, or start again without --resume"
        )
    if saved.get("threads") != fingerprint["threads"]:
        warnings.warn(
            f"resuming with threads={config.threads} where the checkpoint used "
            f"{saved.get('threads')}: results are bit-identical only with the same threads",
            stacklevel=3,
        )
    try:
        restore_training_state(state, model, optimizer, scheduler)
        loop = LoopState(
            total_steps=fingerprint["total_steps"],
            step=int(state["step"]),
            samples=int(state["samples"]),
            train_s=float(state["train_s"]),
        )
        return _Progress(
            loop=loop,
            elapsed_s=float(state["elapsed_s"]),
            step_log=[StepRecord.from_dict(r) for r in state["step_log"]],
            history=[EpochRecord.from_dict(r) for r in state["history"]],
        )
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        detail = " ".join(str(error).split())[:160]
        raise CheckpointError(
            f"checkpoint {path} does not fit this run ({type(error).__name__}: {detail}); "
            "start again without --resume"
        ) from None


def _prepare_metrics(path: Path, resumed_from: int | None) -> None:
    """Start ``metrics.jsonl`` afresh, or on resume drop the records after the checkpoint
    (steps an interrupted session ran past its last checkpoint)."""
    if resumed_from is None:
        path.unlink(missing_ok=True)
        return
    kept = [
        record
        for record in read_jsonl(path)
        if record.get("kind") not in ("step", "epoch") or int(record["step"]) <= resumed_from
    ]
    atomic_write_text(path, "".join(to_json(record, indent=None) + "\n" for record in kept))
