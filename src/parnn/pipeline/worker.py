"""What each rank of a pipeline run does.

Rank 0 is the master: it loads and splits the data, feeds every mini-batch to the first
stage, sends the targets to the rank holding the last stage, evaluates the gathered model
at each epoch's end and assembles the result. Every rank builds the model from the same
seed (so its stages start with exactly the reference trainer's parameters), keeps only
its stages, and runs torch's schedule, timing each chunk's compute and each wait for a
neighbour.

Loss semantics: each micro-batch's loss is its summed cross-entropy divided by the
mini-batch size, and torch does not rescale gradients (``scale_grads=False``), so the
micro-batch losses add up to the mean loss over the mini-batch and the gradients are
exactly the reference trainer's.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import schedules as torch_schedules

from parnn.errors import ConfigError
from parnn.models import build_model
from parnn.partition import Partition
from parnn.pipeline.config import PipelineConfig
from parnn.pipeline.schedules import get_schedule, rank_of_stage, stage_indices
from parnn.pipeline.stage import StageMeter, TimedPipelineStage, stage_module
from parnn.progress import progress_bar
from parnn.train import batch_indices, evaluate, make_optimizer, make_scheduler
from parnn.train.setup import setup_training
from parnn.transport import new_transport_group, transport_geometry

__all__ = ["RankReport", "RankStart", "pipeline_worker", "start_rank"]

_TARGET_TAG = 7  # p2p tag of the targets rank 0 sends to the last stage's rank


@dataclass(slots=True)
class RankReport:
    """What one rank measured, gathered by rank 0 at the end."""

    rank: int
    stages: list[int]
    chunks: list[tuple[int, int, int, str, float, float]]  # StageMeter records
    waits: list[tuple[int, float, float]]  # (step, start_s, duration_s) blocked in p2p
    step_times: list[float]  # wall seconds per step on this rank
    step_starts: list[float]
    optimizer_times: list[float]
    losses: list[float]  # per step, on the rank holding the last stage
    peak_rss_bytes: int
    state: dict[str, torch.Tensor]  # this rank's trained parameters and buffers
    transport: dict[int, str]  # peer rank -> "shm" or "gloo": the path of their messages


class _WaitTimer:
    """Wraps torch's ``_wait_batch_p2p`` to time how long a rank blocks on its neighbours."""

    def __init__(self) -> None:
        self.step = 0
        self.records: list[tuple[int, float, float]] = []
        self._original: Callable[..., Any] = torch_schedules._wait_batch_p2p

    def __call__(self, work: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._original(work)
        finally:
            self.records.append((self.step, start, time.perf_counter() - start))

    def install(self) -> None:
        torch_schedules._wait_batch_p2p = self

    def remove(self) -> None:
        torch_schedules._wait_batch_p2p = self._original


class MiniBatchMeanLoss:
    """Cross-entropy summed over a micro-batch, divided by the mini-batch size: the
    micro-batches' losses add up to the mini-batch's mean loss."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._criterion = nn.CrossEntropyLoss(reduction="sum")

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._criterion(output, target) / self.batch_size


@dataclass(slots=True)
class RankStart:
    """What a rank knows before its first step (every schedule's worker starts here)."""

    setup: Any  # the TrainingSetup (data) on rank 0, None on the others
    model: nn.Sequential  # the whole model, built from the same seed on every rank
    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int
    steps_per_epoch: int
    total_steps: int


def start_rank(rank: int, config: PipelineConfig) -> RankStart:
    """Rank 0 loads the data and builds the model; it broadcasts the shapes, and every
    other rank builds the same model from the same seed."""
    setup = None
    if rank == 0:
        setup = setup_training(
            config.model,
            config.data,
            data_dir=config.data_dir,
            input_shape=config.input_shape,
            seed=config.seed,
            val_fraction=config.val_fraction,
            num_samples=config.num_samples,
        )
        model = setup.model
        header: list[Any] = [setup.input_shape, setup.num_classes, len(setup.train_data)]
    else:
        header = [None, None, None]
    dist.broadcast_object_list(header, src=0)
    input_shape, num_classes, num_train = header
    if rank != 0:
        torch.manual_seed(config.seed)
        model = build_model(config.model, input_shape=input_shape, num_classes=num_classes)

    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch size {config.batch_size} is larger than the {num_train} training samples: "
            f"use --batch-size {num_train} or less"
        )
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    return RankStart(
        setup=setup,
        model=model,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        num_train=num_train,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )


def pipeline_worker(
    rank: int,
    world_size: int,
    config: PipelineConfig,
    partition: Partition,
    shapes: list[tuple[int, ...]],
    quiet: bool,
) -> dict[str, Any] | None:
    """Run one rank of the pipeline; rank 0 returns the gathered measurements."""
    spec = get_schedule(config.schedule)
    if spec.asynchronous:  # PipeDream: its own engine (parnn.pipeline.asynchronous)
        from parnn.pipeline.asynchronous import async_pipeline_worker

        return async_pipeline_worker(rank, world_size, config, partition, shapes, quiet)
    total_stages = config.total_stages
    last_rank = rank_of_stage(spec, total_stages - 1, world_size)

    # --- data (rank 0) and model (everyone, same seed) ------------------------------------
    start = start_rank(rank, config)
    setup, model = start.setup, start.model
    input_shape, num_classes, num_train = start.input_shape, start.num_classes, start.num_train
    steps_per_epoch, total_steps = start.steps_per_epoch, start.total_steps

    # --- transport, stages, schedule, optimizer ----------------------------------------------
    # The stages' sends and receives (and the targets) go through ``group``; everything
    # else (set-up, gathers, evaluation) through the default gloo group.
    group = new_transport_group(config.transport, **transport_geometry(shapes[1:-1]))
    meter = StageMeter()
    my_stages = stage_indices(
        spec, rank=rank, num_ranks=world_size, stages_per_rank=config.stages_per_rank
    )
    stages = []
    for index in my_stages:
        module = stage_module(model, partition, index)
        stages.append(
            TimedPipelineStage(
                module,
                index,
                total_stages,
                torch.device("cpu"),
                # Static shapes (no run-time inference, which would run a forward on garbage
                # and corrupt batch-norm statistics); activations crossing a cut need grads.
                input_args=torch.empty(shapes[index], device="meta", requires_grad=index > 0),
                output_args=torch.empty(shapes[index + 1], device="meta", requires_grad=True),
                group=group,
                meter=meter,
            )
        )
    schedule_class = spec.torch_schedule()
    schedule = schedule_class(
        stages if spec.multi_stage else stages[0],
        n_microbatches=config.num_microbatches,
        loss_fn=MiniBatchMeanLoss(config.batch_size),
        scale_grads=False,
    )
    parameters = [p for stage in stages for p in stage.submod.parameters()]
    optimizer = make_optimizer(parameters, config.optimizer)
    scheduler = make_scheduler(
        optimizer, config.lr_schedule, total_steps=total_steps, warmup_steps=config.warmup_steps
    )
    for stage in stages:
        stage.submod.train()

    holds_first = 0 in my_stages
    holds_last = (total_stages - 1) in my_stages
    waits = _WaitTimer()
    waits.install()
    step_times: list[float] = []
    step_starts: list[float] = []
    optimizer_times: list[float] = []
    losses: list[float] = []
    history: list[dict[str, Any]] = []

    inputs = targets = None
    if rank == 0:
        inputs, targets = setup.train_data.inputs, setup.train_data.targets
    try:
        with progress_bar(total_steps, "pipeline", quiet=quiet or rank != 0) as bar:
            step = 0
            epoch = 0
            while step < total_steps:
                order = batch_indices(
                    num_train, config.batch_size, seed=config.seed, epoch=epoch, drop_last=True
                )
                for batch in order:
                    if step >= total_steps:
                        break
                    if config.fail_rank == rank and config.fail_at_step == step:
                        raise RuntimeError(f"injected failure at step {step} (test hook)")
                    meter.step = waits.step = step
                    started = time.perf_counter()
                    x = y = None
                    if rank == 0:
                        assert inputs is not None and targets is not None
                        x, y = inputs[batch], targets[batch]
                        if last_rank != 0:
                            dist.send(y, dst=last_rank, tag=_TARGET_TAG, group=group)
                    elif holds_last:
                        y = torch.empty(config.batch_size, dtype=torch.int64)
                        dist.recv(y, src=0, tag=_TARGET_TAG, group=group)
                    step_losses: list[torch.Tensor] = []
                    args = (x,) if holds_first else ()
                    if holds_last:
                        schedule.step(*args, target=y, losses=step_losses, return_outputs=False)
                        losses.append(float(torch.stack(step_losses).detach().sum()))
                    else:
                        schedule.step(*args, return_outputs=False)
                    optimizer_start = time.perf_counter()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    now = time.perf_counter()
                    optimizer_times.append(now - optimizer_start)
                    step_times.append(now - started)
                    step_starts.append(started)
                    step += 1
                    bar.advance()
                    bar.set_postfix(f"step {1000 * (now - started):.0f} ms")
                epoch += 1
                # Evaluate after every whole epoch, and once more after a partial last one.
                epoch_done = step % steps_per_epoch == 0 or step >= total_steps
                if config.evaluate and epoch_done and step > 0:
                    record = _evaluate_gathered(rank, model, stages, setup if rank == 0 else None)
                    if record is not None:
                        # train_s: rank 0's training time so far (evaluations excluded)
                        history.append(
                            {"epoch": epoch, "step": step, "train_s": sum(step_times), **record}
                        )
    finally:
        waits.remove()

    state = {
        f"{name}": tensor.detach().clone()
        for stage in stages
        for name, tensor in _unit_state(stage.submod).items()
    }
    report = RankReport(
        rank=rank,
        stages=my_stages,
        chunks=meter.records,
        waits=waits.records,
        step_times=step_times,
        step_starts=step_starts,
        optimizer_times=optimizer_times,
        losses=losses,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        state=state,
        transport={
            peer: "gloo" if group is None else group.transport_of(peer)
            for peer in range(world_size)
            if peer != rank
        },
    )
    gathered: list[RankReport | None] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(report, gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    return {
        "reports": gathered,
        "history": history,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "train_samples": num_train,
        "val_samples": len(setup.val_data),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "last_rank": last_rank,
    }


def _unit_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers keyed as in the full model ('conv1.0.weight')."""
    return dict(module.state_dict())


def _evaluate_gathered(
    rank: int, model: nn.Sequential, stages: list[TimedPipelineStage], setup: Any
) -> dict[str, Any] | None:
    """Gather every stage's parameters on rank 0 and evaluate the whole model there."""
    state: dict[str, torch.Tensor] = {}
    for stage in stages:
        state.update(_unit_state(stage.submod))
    gathered: list[dict[str, torch.Tensor] | None] | None = (
        [None] * dist.get_world_size() if rank == 0 else None
    )
    dist.gather_object(state, gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    full: dict[str, torch.Tensor] = {}
    for part in gathered:
        assert part is not None
        full.update(part)
    model.load_state_dict(full)
    result = evaluate(model, setup.val_data)
    return {
        "val_loss": result.loss,
        "val_accuracy": result.accuracy,
        "per_class_accuracy": result.per_class_accuracy,
    }
