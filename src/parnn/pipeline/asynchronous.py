"""PipeDream's asynchronous pipeline on ``torch.distributed.pipelining``'s ``PipelineStage``:
1F1B without flushes, weight stashing and PipeDream-2BW.

Each rank holds one stage and walks its actions from
:func:`~parnn.partition.async_schedule.async_actions` (``F``, ``B`` and ``U`` over a stream
of micro-batches): after ``k - s - 1`` warm-up forwards it alternates one forward and one
backward of different micro-batches and applies its optimizer after each mini-batch's last
backward, without waiting for the other stages. Activations and gradients travel with the
stage's own p2p ops (``get_fwd_send_ops`` ... over the process group it was given); the
stage's ``fwd_cache`` and receive buffers are a ring of ``k + 1`` slots, more than the
``k - s`` micro-batches a stage ever holds.

Weight stashing: the stage module runs through :func:`torch.func.functional_call` on the
weight version the schedule names (made when the version is made, dropped after the last
backward that uses it), so a micro-batch's backward runs against the weights its forward
used even though the live weights (the optimizer's) have moved on. A version is a copy only
when it outlives the next update (:class:`~parnn.pipeline.async_stage.WeightStash`); copies
reuse the buffers of dropped ones. Every backward accumulates into the live weights'
gradient, and the update after ``m`` micro-batches applies the sum.

The pipeline drains at every epoch's end (the stream ends with the cool-down backwards and
the last update), so that the evaluation, and a checkpoint, see one consistent model; the
next epoch's stream starts from the newest weights. :func:`~parnn.pipeline.emulate.
emulate_async_pipeline` computes the same thing in one process.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from parnn.partition import Partition
from parnn.pipeline.async_stage import StageStream, VersionedModule, WeightStash, init_stage_infra
from parnn.pipeline.config import PipelineConfig
from parnn.pipeline.emulate import minibatch_mean_loss
from parnn.pipeline.rank import RankReport, start_rank
from parnn.pipeline.stage import StageMeter, TimedPipelineStage, stage_module
from parnn.pipeline.stage_checkpoint import load_stage_checkpoint, save_stage_checkpoint
from parnn.progress import progress_bar
from parnn.train import batch_indices, evaluate, make_optimizer, make_scheduler
from parnn.transport import new_transport_group, transport_geometry

__all__ = ["StashStats", "async_pipeline_worker"]


@dataclass(slots=True)
class StashStats:
    """Weight versions and activations one stage held at its peak."""

    stage: int
    parameter_bytes: int  # one copy of the stage's parameters
    peak_versions: int  # weight versions in use at once
    peak_copies: int  # of those, copies (the others alias the live weights)
    stash_bytes: int  # peak_copies x parameter_bytes
    peak_in_flight: int  # micro-batches forwarded and not yet backwarded, at the peak
    activation_bytes: int  # saved for backward by one micro-batch (measured)
    peak_activation_bytes: int  # peak_in_flight x activation_bytes

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def async_pipeline_worker(
    rank: int,
    world_size: int,
    config: PipelineConfig,
    partition: Partition,
    shapes: list[tuple[int, ...]],
    quiet: bool,
) -> dict[str, Any] | None:
    """Run one rank (= one stage) of the asynchronous pipeline; rank 0 returns the gathered
    measurements in the shape :func:`~parnn.pipeline.worker.pipeline_worker` returns them."""
    num_stages, m = world_size, config.microbatches
    last_rank = num_stages - 1
    start = start_rank(rank, config)
    setup, model = start.setup, start.model
    input_shape, num_classes, num_train = start.input_shape, start.num_classes, start.num_train
    steps_per_epoch, total_steps = start.steps_per_epoch, start.total_steps

    # The stage's sends and receives (and the targets) go through the transport's group
    # (shared memory between local ranks, gloo otherwise); set-up, gathers, evaluation and
    # checkpoints through the default gloo group.
    group = new_transport_group(config.transport, **transport_geometry(shapes[1:-1]))
    meter = StageMeter()
    module = stage_module(model, partition, rank)
    module.train()
    ring = num_stages + 1
    loss_fn = minibatch_mean_loss(config.train.batch_size)
    versioned = VersionedModule(module)
    stage = TimedPipelineStage(
        versioned,
        rank,
        num_stages,
        torch.device("cpu"),
        input_args=torch.empty(shapes[rank], device="meta", requires_grad=rank > 0),
        output_args=torch.empty(shapes[rank + 1], device="meta", requires_grad=True),
        group=group,
        meter=meter,
    )
    init_stage_infra(stage, ring, loss_fn)
    optimizer = make_optimizer(module.parameters(), config.train.optimizer)
    scheduler = make_scheduler(
        optimizer,
        config.train.lr_schedule,
        total_steps=total_steps,
        warmup_steps=config.train.warmup_steps,
    )
    stash = WeightStash(module)
    run = StageStream(
        rank=rank,
        num_stages=num_stages,
        num_microbatches=m,
        microbatch_size=config.microbatch_size,
        stage=stage,
        versioned=versioned,
        stash=stash,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        meter=meter,
        group=group,
        vertical_sync=config.vertical_sync,
    )
    history: list[dict[str, Any]] = []
    inputs = targets = None
    if rank == 0:
        inputs, targets = setup.train_data.inputs, setup.train_data.targets
    step = epoch = 0
    settings = _checkpoint_settings(config, partition, total_steps)
    if config.checkpoint_dir is not None and config.resume:
        saved = load_stage_checkpoint(config.checkpoint_dir, rank, settings=settings)
        if saved is not None:
            module.load_state_dict(saved["module"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            step, epoch, history = saved["step"], saved["epoch"], saved["history"]
    resumed_at = step  # the timings below count the steps this process runs, from 0
    with progress_bar(total_steps, config.schedule, quiet=quiet or rank != 0) as bar:
        bar.advance(step)
        while step < total_steps:
            order = batch_indices(
                num_train,
                config.train.batch_size,
                seed=config.train.seed,
                epoch=epoch,
                drop_last=True,
            )[: total_steps - step]
            x = y = None
            if rank == 0:
                assert inputs is not None and targets is not None
                index = torch.cat(order)
                x, y = inputs[index], targets[index]  # the stream's samples, in order
            run.stream(
                len(order),
                first_step=step,
                resumed_at=resumed_at,
                inputs=x,
                targets=y,
                fail_at_step=config.fail_at_step if config.fail_rank == rank else None,
                on_update=bar.advance,
            )
            step += len(order)
            epoch += 1
            if config.evaluate:
                record = _evaluate_gathered(rank, model, module, setup if rank == 0 else None)
                if record is not None:
                    history.append(
                        {"epoch": epoch, "step": step, "train_s": sum(run.step_times), **record}
                    )
            if config.checkpoint_dir is not None:  # drained: nothing in flight, no stash
                state = {
                    "module": module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "settings": settings,
                }
                save_stage_checkpoint(config.checkpoint_dir, rank, step, state)

    peak_versions = stash.peak
    parameter_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    stats = StashStats(
        stage=rank,
        parameter_bytes=parameter_bytes,
        peak_versions=peak_versions,
        peak_copies=stash.peak_copies,
        stash_bytes=stash.peak_copies * parameter_bytes,
        peak_in_flight=run.peak_in_flight,
        activation_bytes=run.activation_bytes,
        peak_activation_bytes=run.peak_in_flight * run.activation_bytes,
    )
    report = RankReport(
        rank=rank,
        stages=[rank],
        chunks=meter.records,
        waits=run.waits,
        step_times=run.step_times,
        step_starts=run.step_starts,
        optimizer_times=run.optimizer_times,
        losses=run.losses,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        state={name: t.detach().clone() for name, t in module.state_dict().items()},
        transport={
            peer: "gloo" if group is None else group.transport_of(peer)
            for peer in range(world_size)
            if peer != rank
        },
    )
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object((report, stats), gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    return {
        "reports": [r for r, _ in gathered],
        "weight_stash": [s.to_dict() for _, s in gathered],
        "history": history,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "train_samples": num_train,
        "val_samples": len(setup.val_data),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps - resumed_at,  # run here (all, unless resumed)
        "resumed_at_step": resumed_at,
        "last_rank": last_rank,
    }


def _checkpoint_settings(
    config: PipelineConfig, partition: Partition, total_steps: int
) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed."""
    return {
        "model": config.model,
        "data": config.data,
        "num_samples": config.num_samples,
        "schedule": config.schedule,
        "vertical_sync": config.vertical_sync,
        "partition": list(partition.boundaries),
        "batch_size": config.train.batch_size,
        "num_microbatches": config.num_microbatches,
        "seed": config.train.seed,
        "optimizer": [
            config.train.optimizer.name,
            config.train.optimizer.lr,
            config.train.optimizer.momentum,
        ],
        "lr_schedule": config.train.lr_schedule,
        "total_steps": total_steps,
    }


def _evaluate_gathered(
    rank: int,
    model: nn.Sequential,
    module: nn.Module,
    setup: Any,
) -> dict[str, Any] | None:
    """Gather every stage's parameters on rank 0 and evaluate the whole model there."""
    state = dict(module.state_dict())
    gathered: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(state, gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    full: dict[str, torch.Tensor] = {}
    for part in gathered:
        full.update(part)
    model.load_state_dict(full)
    result = evaluate(model, setup.val_data)
    return {
        "val_loss": result.loss,
        "val_accuracy": result.accuracy,
        "per_class_accuracy": result.per_class_accuracy,
    }
