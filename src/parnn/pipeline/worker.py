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

Hybrid (``replicas`` d > 1): the d x p ranks form a 2-D ``DeviceMesh`` ("dp", "pp"), rank
``r p + i`` holding pipeline rank i of replica r. The stages' sends and receives run along
"pp" (the shm transport's sub-group, or gloo), and after each schedule step every rank
all-reduces its stages' gradients along "dp" (summed, divided by d). Rank 0 cuts the global
mini-batch into d contiguous shards (as ddp does) and sends replica r's inputs to its first
stage and its targets to its last; each replica's loss is the mean over its shard, so the
averaged gradients are the mean over the global batch: the reference trainer's again.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import schedules as torch_schedules

from parnn.partition import Partition
from parnn.partition.schedules import get_schedule, rank_of_stage, stage_indices
from parnn.pipeline.config import PipelineConfig
from parnn.pipeline.rank import RankReport, RankStart, start_rank
from parnn.pipeline.stage import StageMeter, TimedPipelineStage, stage_module
from parnn.progress import progress_bar
from parnn.train import batch_indices, evaluate, make_optimizer, make_scheduler
from parnn.transport import new_transport_group, transport_backend, transport_geometry

__all__ = [
    "MeshPlace",
    "RankPipeline",
    "StepRecords",
    "build_stages",
    "gather_reports",
    "pipeline_worker",
    "run_steps",
]

_TARGET_TAG = 7  # p2p tag of the targets rank 0 sends to the last stage's rank
_INPUT_TAG = 8  # p2p tag of the inputs rank 0 sends to another replica's first stage


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


@dataclass(frozen=True, slots=True)
class MeshPlace:
    """Where a rank sits on the (replicas x pipeline ranks) mesh: global rank
    ``replica x ranks + pp_rank``."""

    replica: int
    pp_rank: int
    replicas: int
    ranks: int  # pipeline ranks per replica

    @classmethod
    def of(cls, rank: int, config: PipelineConfig) -> MeshPlace:
        return cls(
            rank // config.num_ranks, rank % config.num_ranks, config.replicas, config.num_ranks
        )

    def global_rank(self, replica: int, pp_rank: int) -> int:
        return replica * self.ranks + pp_rank


@dataclass(slots=True)
class RankPipeline:
    """One rank, built and ready to step: what :func:`build_stages` hands :func:`run_steps`."""

    rank: int
    world_size: int
    start: RankStart
    group: Any  # the stages' p2p group: shm, the mesh's "pp" sub-group, or None (default gloo)
    stage_ids: list[int]  # the pipeline stages this rank holds
    stages: list[TimedPipelineStage]
    schedule: Any  # torch's schedule over ``stages``
    optimizer: torch.optim.Optimizer
    scheduler: Any
    meter: StageMeter
    place: MeshPlace
    last_pp_rank: int  # the pipeline rank holding the last stage (it receives the targets)
    dp_group: Any = None  # hybrid: this rank's "dp" sub-group (its stages in every replica)

    @property
    def last_rank(self) -> int:
        """Global rank holding this replica's last stage."""
        return self.place.global_rank(self.place.replica, self.last_pp_rank)

    @property
    def holds_first(self) -> bool:
        return 0 in self.stage_ids

    @property
    def holds_last(self) -> bool:
        return self.stages[0].num_stages - 1 in self.stage_ids


@dataclass(slots=True)
class StepRecords:
    """What :func:`run_steps` measured on one rank."""

    waits: list[tuple[int, float, float]] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    step_starts: list[float] = field(default_factory=list)
    optimizer_times: list[float] = field(default_factory=list)
    allreduces: list[tuple[int, float, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # rank 0's evaluations


def pipeline_worker(
    rank: int,
    world_size: int,
    config: PipelineConfig,
    partition: Partition,
    shapes: list[tuple[int, ...]],
    quiet: bool,
) -> dict[str, Any] | None:
    """Run one rank of the pipeline; rank 0 returns the gathered measurements."""
    spec = get_schedule(config.schedule, runnable=True)
    if spec.asynchronous:  # PipeDream: its own engine (parnn.pipeline.asynchronous)
        from parnn.pipeline.asynchronous import async_pipeline_worker

        return async_pipeline_worker(rank, world_size, config, partition, shapes, quiet)
    pipe = build_stages(rank, world_size, config, partition, shapes)
    records = run_steps(pipe, config, quiet=quiet)
    return gather_reports(pipe, records)


def build_stages(
    rank: int,
    world_size: int,
    config: PipelineConfig,
    partition: Partition,
    shapes: list[tuple[int, ...]],
) -> RankPipeline:
    """Data (rank 0) and model (every rank, same seed), the p2p group (and, for a hybrid,
    the mesh's "dp" group), this rank's stages, torch's schedule over them, the optimizer
    and the LR schedule."""
    spec = get_schedule(config.schedule, runnable=True)
    total_stages = config.num_stages
    place = MeshPlace.of(rank, config)
    start = start_rank(rank, config)
    # The stages' sends and receives (and replica 0's targets) go through ``group``;
    # everything else (set-up, other replicas' data, gathers, evaluation) through the
    # default gloo group.
    geometry = transport_geometry(shapes[1:-1])
    dp_group = None
    if config.replicas == 1:
        group = new_transport_group(config.transport, **geometry)
    else:
        group, dp_group = _mesh_groups(config, geometry)
    meter = StageMeter()
    stage_ids = stage_indices(
        spec, rank=place.pp_rank, num_ranks=place.ranks, stages_per_rank=config.stages_per_rank
    )
    stages = []
    for index in stage_ids:
        module = stage_module(start.model, partition, index)
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
        loss_fn=MiniBatchMeanLoss(config.replica_batch_size),
        scale_grads=False,
    )
    parameters = [p for stage in stages for p in stage.submod.parameters()]
    optimizer = make_optimizer(parameters, config.train.optimizer)
    scheduler = make_scheduler(
        optimizer,
        config.train.lr_schedule,
        total_steps=start.total_steps,
        warmup_steps=config.train.warmup_steps,
    )
    for stage in stages:
        stage.submod.train()
    return RankPipeline(
        rank=rank,
        world_size=world_size,
        start=start,
        group=group,
        stage_ids=stage_ids,
        stages=stages,
        schedule=schedule,
        optimizer=optimizer,
        scheduler=scheduler,
        meter=meter,
        place=place,
        last_pp_rank=rank_of_stage(spec, total_stages - 1, place.ranks),
        dp_group=dp_group,
    )


def _mesh_groups(config: PipelineConfig, geometry: dict[str, int]) -> tuple[Any, Any]:
    """The (replicas, ranks) ``DeviceMesh``: its "pp" sub-group on the transport's backend
    (shared memory where the ranks share a host), its "dp" sub-group on gloo."""
    from torch.distributed.device_mesh import init_device_mesh

    backend = transport_backend(config.transport, **geometry)
    mesh = init_device_mesh(
        "cpu",
        (config.replicas, config.num_ranks),
        mesh_dim_names=("dp", "pp"),
        backend_override=None if backend is None else {"pp": backend},
    )
    return mesh.get_group("pp"), mesh.get_group("dp")


def run_steps(pipe: RankPipeline, config: PipelineConfig, *, quiet: bool) -> StepRecords:
    """Every optimizer step of the run, in the reference trainer's data order, with an
    evaluation at each epoch's end; returns what this rank measured."""
    rank, start = pipe.rank, pipe.start
    records = StepRecords()
    waits = _WaitTimer()
    waits.install()
    try:
        with progress_bar(start.total_steps, "pipeline", quiet=quiet or rank != 0) as bar:
            step = 0
            epoch = 0
            while step < start.total_steps:
                order = batch_indices(
                    start.num_train,
                    config.train.batch_size,
                    seed=config.train.seed,
                    epoch=epoch,
                    drop_last=True,
                )
                for batch in order:
                    if step >= start.total_steps:
                        break
                    if config.fail_rank == rank and config.fail_at_step == step:
                        raise RuntimeError(f"injected failure at step {step} (test hook)")
                    pipe.meter.step = waits.step = step
                    started = time.perf_counter()
                    _one_step(pipe, config, batch, records)
                    now = time.perf_counter()
                    records.step_times.append(now - started)
                    records.step_starts.append(started)
                    step += 1
                    bar.advance()
                    bar.set_postfix(f"step {1000 * (now - started):.0f} ms")
                epoch += 1
                # Evaluate after every whole epoch, and once more after a partial last one.
                epoch_done = step % start.steps_per_epoch == 0 or step >= start.total_steps
                if config.evaluate and epoch_done and step > 0:
                    record = _evaluate_gathered(
                        rank,
                        start.model,
                        pipe.stages if pipe.place.replica == 0 else [],
                        start.setup,
                    )
                    if record is not None:
                        # train_s: rank 0's training time so far (evaluations excluded)
                        records.history.append(
                            {
                                "epoch": epoch,
                                "step": step,
                                "train_s": sum(records.step_times),
                                **record,
                            }
                        )
    finally:
        waits.remove()
    records.waits = waits.records
    return records


def _one_step(
    pipe: RankPipeline, config: PipelineConfig, batch: torch.Tensor, records: StepRecords
) -> None:
    """One mini-batch: rank 0 feeds every replica its shard (inputs to the first stage,
    targets to the last), torch's schedule runs forwards and backwards, a hybrid averages
    its stages' gradients across the replicas, every rank steps its optimizer."""
    x, y = _feed(pipe, config, batch)
    step_losses: list[torch.Tensor] = []
    args = (x,) if pipe.holds_first else ()
    if pipe.holds_last:
        pipe.schedule.step(*args, target=y, losses=step_losses, return_outputs=False)
        records.losses.append(float(torch.stack(step_losses).detach().sum()))
    else:
        pipe.schedule.step(*args, return_outputs=False)
    if pipe.dp_group is not None:
        started = time.perf_counter()
        _average_gradients(pipe, pipe.dp_group)
        records.allreduces.append((pipe.meter.step, started, time.perf_counter() - started))
    optimizer_start = time.perf_counter()
    pipe.optimizer.step()
    pipe.optimizer.zero_grad(set_to_none=True)
    pipe.scheduler.step()
    records.optimizer_times.append(time.perf_counter() - optimizer_start)


def _feed(
    pipe: RankPipeline, config: PipelineConfig, batch: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """This rank's inputs (first stage) and targets (last stage) of the step: rank 0 cuts
    the mini-batch into one contiguous shard per replica; replica 0's targets travel on
    the pipeline's group, the other replicas' data on the default group."""
    place = pipe.place
    x = y = None
    if pipe.rank == 0:
        setup = pipe.start.setup
        inputs, targets = setup.train_data.inputs[batch], setup.train_data.targets[batch]
        x_shards, y_shards = inputs.chunk(place.replicas), targets.chunk(place.replicas)
        x, y = x_shards[0], y_shards[0]
        if pipe.last_rank != 0:
            dist.send(y, dst=pipe.last_rank, tag=_TARGET_TAG, group=pipe.group)
        sends = []
        for replica in range(1, place.replicas):
            first = place.global_rank(replica, 0)
            last = place.global_rank(replica, pipe.last_pp_rank)
            sends.append(dist.isend(x_shards[replica].contiguous(), dst=first, tag=_INPUT_TAG))
            sends.append(dist.isend(y_shards[replica].contiguous(), dst=last, tag=_TARGET_TAG))
        for work in sends:
            assert work is not None
            work.wait()
        return x, y
    if place.replica > 0 and pipe.holds_first:
        x = torch.empty((config.replica_batch_size, *pipe.start.input_shape))
        dist.recv(x, src=0, tag=_INPUT_TAG)
    if pipe.holds_last:
        y = torch.empty(config.replica_batch_size, dtype=torch.int64)
        if place.replica == 0:
            dist.recv(y, src=0, tag=_TARGET_TAG, group=pipe.group)
        else:
            dist.recv(y, src=0, tag=_TARGET_TAG)
    return x, y


def _average_gradients(pipe: RankPipeline, group: Any) -> None:
    """Average this rank's stages' gradients over the replicas: one flat all-reduce (sum)
    along "dp", divided by the number of replicas."""
    parameters = [p for stage in pipe.stages for p in stage.submod.parameters()]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat.div_(pipe.place.replicas)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        size = grad.numel()
        parameter.grad = flat[offset : offset + size].view_as(parameter)
        offset += size


def gather_reports(pipe: RankPipeline, records: StepRecords) -> dict[str, Any] | None:
    """Every rank's :class:`RankReport` to rank 0, which returns them with the run's facts
    (the others return None)."""
    rank, world_size, start = pipe.rank, pipe.world_size, pipe.start
    state = {
        f"{name}": tensor.detach().clone()
        for stage in pipe.stages
        for name, tensor in _unit_state(stage.submod).items()
    }
    report = RankReport(
        rank=rank,
        stages=pipe.stage_ids,
        chunks=pipe.meter.records,
        waits=records.waits,
        step_times=records.step_times,
        step_starts=records.step_starts,
        optimizer_times=records.optimizer_times,
        losses=records.losses,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        state=state,
        transport=_transport_paths(pipe),
        replica=pipe.place.replica,
        allreduces=records.allreduces,
    )
    gathered: list[RankReport | None] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(report, gathered, dst=0)
    if rank != 0:
        return None
    assert gathered is not None
    return {
        "reports": gathered,
        "history": records.history,
        "input_shape": list(start.input_shape),
        "num_classes": start.num_classes,
        "train_samples": start.num_train,
        "val_samples": len(start.setup.val_data),
        "steps_per_epoch": start.steps_per_epoch,
        "total_steps": start.total_steps,
        "last_rank": pipe.last_rank,
        "last_ranks": [
            pipe.place.global_rank(replica, pipe.last_pp_rank)
            for replica in range(pipe.place.replicas)
        ],
    }


def _transport_paths(pipe: RankPipeline) -> dict[int, str]:
    """The path ("shm" or "gloo") of the stages' messages to every other rank of this
    rank's pipeline, keyed by global rank."""
    place, group = pipe.place, pipe.group
    paths = {}
    for pp_rank in range(place.ranks):
        peer = place.global_rank(place.replica, pp_rank)
        if peer != pipe.rank:
            paths[peer] = group.transport_of(pp_rank) if hasattr(group, "transport_of") else "gloo"
    return paths


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
