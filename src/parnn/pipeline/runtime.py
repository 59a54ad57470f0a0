"""Run a pipeline: plan and validate everything before a process starts, launch one pinned
process per rank (or join a torchrun job), and turn rank 0's gathered measurements into a
:class:`PipelineResult` with its JSON and Chrome trace. With ``replicas`` d > 1 the run is
hybrid: d copies of the pipeline, d x ranks processes (see :mod:`parnn.pipeline.worker`)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from parnn.clock import startup_s
from parnn.data.registry import dataset_length
from parnn.errors import ConfigError, PartitionError
from parnn.launch import LaunchConfig, run_distributed, torchrun_env
from parnn.launch.forkserver import start_forkserver
from parnn.models import build_model, count_parameters
from parnn.partition import Partition
from parnn.partition.measure.resolve import resolve_partition
from parnn.partition.methods import needs_profile
from parnn.partition.schedules import check_schedule, get_schedule
from parnn.pipeline.config import PipelineConfig
from parnn.pipeline.cuts import boundary_shapes
from parnn.pipeline.result import (
    BoundaryStats,
    PipelineResult,
    summarize_stages,
    summarize_transport,
)
from parnn.results import machine_facts, write_json
from parnn.trace import TraceRecorder, write_chrome_trace
from parnn.train.setup import check_batch_size

__all__ = [
    "PipelinePlan",
    "plan_pipeline_run",
    "resolve_microbatches",
    "run_pipeline",
    "sample_shape",
]

_WORKER_MODULE = "parnn.pipeline.worker"  # what a rank imports (torch.distributed.pipelining)
_DATA_SHAPES = {"digits": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    """What a run will do, known before any process starts."""

    partition: Partition
    shapes: list[tuple[int, ...]]  # tensor entering each stage, then the output
    unit_names: list[list[str]]  # per stage
    stage_parameters: list[int]
    input_shape: tuple[int, ...]


def sample_shape(config: PipelineConfig) -> tuple[int, ...]:
    """The shape of one sample, (C, H, W): the config's, else its dataset's own."""
    if config.input_shape is not None:
        return tuple(config.input_shape)
    return _DATA_SHAPES.get(config.data.strip().lower(), (3, 32, 32))


def plan_pipeline_run(
    config: PipelineConfig, *, profile_cache_dir: Path | None = None
) -> PipelinePlan:
    """Validate ``config`` and resolve its partition and boundary shapes, on the ``meta``
    device (no weights, no data): every bad setting fails here, in one line."""
    spec = get_schedule(config.schedule, runnable=True)
    check_schedule(
        spec,
        num_ranks=config.num_ranks,
        stages_per_rank=config.stages_per_rank,
        num_microbatches=config.microbatches,
    )
    config, _ = resolve_microbatches(config, profile_cache_dir=profile_cache_dir)
    shape = sample_shape(config)
    with torch.device("meta"):
        model = build_model(config.model, input_shape=shape, num_classes=10)
    num_units = len(model)
    total = config.num_stages
    if total > num_units:
        raise PartitionError(
            f"{total} stages but {config.model} has only {num_units} units: every stage needs "
            f"at least one unit; use at most {num_units} stages"
        )
    if isinstance(config.partition, Partition):
        partition = config.partition.check_units(num_units)
    else:
        partition = resolve_partition(
            config.partition,
            # Cost-aware methods profile the real model; the others only count its units.
            model=config.model if needs_profile(config.partition) else model,
            num_stages=total,
            batch_size=config.replica_batch_size,
            num_microbatches=config.microbatches,
            schedule=config.schedule,
            input_shape=shape,
            num_classes=10,
            threads=config.threads,
            cache_dir=profile_cache_dir,
            transport=config.transport,
        )
    if partition.num_stages != total:
        raise PartitionError(
            f"partition {partition} has {partition.num_stages} stages but the run has {total} "
            f"({config.num_ranks} ranks x {config.stages_per_rank} stages per rank): give "
            f"{total} stages or change --stages"
        )
    shapes = boundary_shapes(model, partition, shape, config.microbatch_size)
    units = list(model.named_children())
    names = [[units[i][0] for i in span] for span in partition.stage_ranges]
    parameters = [
        sum(count_parameters(units[i][1]) for i in span) for span in partition.stage_ranges
    ]
    return PipelinePlan(partition, shapes, names, parameters, shape)


def resolve_microbatches(
    config: PipelineConfig, *, profile_cache_dir: Path | None = None
) -> tuple[PipelineConfig, dict[str, Any] | None]:
    """``config`` with ``num_microbatches="auto"`` replaced by the simulator's fastest
    number (and the partition chosen with it), and that prediction (micro-batches, step
    time, samples/s, every candidate); a config with a number comes back as it is, with
    None. The model is profiled (cached in ``profile_cache_dir``) at the config's threads."""
    if config.num_microbatches != "auto":
        return config, None
    from parnn.partition.measure.resolve import ProfileConfig, ProfileSource, resolve_plan

    source = ProfileSource(
        ProfileConfig(
            model=config.model,
            input_shape=sample_shape(config),
            num_classes=10,
            cache_dir=profile_cache_dir,
            threads=config.threads,
            quiet=True,
        )
    )
    plan = resolve_plan(
        config.partition,
        source=source,
        num_stages=config.num_stages,
        batch_size=config.replica_batch_size,
        num_microbatches="auto",
        schedule=config.schedule,
        num_ranks=config.num_ranks,
    )
    prediction = {
        "num_microbatches": plan.num_microbatches,
        "step_time_s": plan.chosen.step_time_s,
        "samples_per_s": plan.samples_per_s,
        "candidates": [c.to_dict() for c in plan.candidates],
    }
    resolved = dataclasses.replace(
        config, num_microbatches=plan.num_microbatches, partition=plan.partition
    )
    return resolved, prediction


def check_batch_fits_data(config: PipelineConfig) -> None:
    """Refuse, before any rank starts, a batch larger than the training set (rank 0 loads
    the data; the size is read here from the dataset's header where that is cheap)."""
    total = dataset_length(config.data, data_dir=config.data_dir, num_samples=config.num_samples)
    if total is None or total < 2:
        return  # not known without loading it: rank 0 checks
    check_batch_size(config.train.batch_size, total - round(total * config.val_fraction))


def run_pipeline(
    config: PipelineConfig, *, quiet: bool = False, profile_cache_dir: Path | None = None
) -> PipelineResult | None:
    """Train with the pipeline; returns the result on the master (None on other torchrun
    ranks). Raises :class:`~parnn.errors.RankFailedError` when a rank fails."""
    started = time.perf_counter()
    check_batch_fits_data(config)
    # Ranks fork from a server that has imported the pipeline once (no-op when running).
    start_forkserver([_WORKER_MODULE], threads=config.threads)
    _check_world_size(config)
    config, prediction = resolve_microbatches(config, profile_cache_dir=profile_cache_dir)
    plan = plan_pipeline_run(config, profile_cache_dir=profile_cache_dir)
    launch_config = LaunchConfig(
        num_processes=config.world_size,
        backend=config.backend,
        threads_per_process=config.threads,
        pin=config.pin,
    )
    results = run_distributed(
        _pipeline_rank, launch_config, config, plan.partition, plan.shapes, quiet
    )
    gathered = results[0]
    if gathered is None:
        return None
    result = _assemble(config, plan, gathered, wall_s=time.perf_counter() - started)
    result.prediction = prediction
    if config.out_dir is not None:
        _write_files(config.out_dir, result, gathered, config)
    return result


def _check_world_size(config: PipelineConfig) -> None:
    """Under torchrun, a hybrid's replicas x ranks must be the ranks the launcher started
    (a plain pipeline's mismatch is the launcher's own one-line error)."""
    env = torchrun_env()
    if env is None or config.replicas == 1 or env.world_size == config.world_size:
        return
    raise ConfigError(
        f"--replicas {config.replicas} x --stages {config.num_ranks} = {config.world_size} "
        f"ranks, but the launcher started WORLD_SIZE={env.world_size}; make them equal "
        "(torchrun --nnodes N --nproc-per-node K starts N*K)"
    )


def _pipeline_rank(*args: Any) -> dict[str, Any] | None:
    """One rank: imports the worker (and torch.distributed.pipelining, seconds) in the rank
    or its fork server, never in the process that plans the run."""
    from parnn.pipeline.worker import pipeline_worker

    return pipeline_worker(*args)


def _assemble(
    config: PipelineConfig, plan: PipelinePlan, gathered: dict[str, Any], *, wall_s: float
) -> PipelineResult:
    reports = gathered["reports"]
    total_steps = gathered["total_steps"]
    warm = min(config.measure_warmup_steps, max(0, total_steps - 1))
    measured = set(range(warm, total_steps))
    master = reports[0]
    step_time_s = _median([master.step_times[s] for s in sorted(measured)])
    stages = summarize_stages(
        reports,
        measured_steps=measured,
        step_time_s=step_time_s,
        unit_names=plan.unit_names,
        stage_parameters=plan.stage_parameters,
    )
    busy = sum(s.compute_s for s in stages)
    bubble = max(0.0, 1.0 - busy / (config.world_size * step_time_s)) if step_time_s else 0.0
    boundaries = []
    for index, shape in enumerate(plan.shapes[1:-1]):
        activation = math.prod(shape) * 4  # float32
        boundaries.append(
            BoundaryStats(index, list(shape), activation, 2 * config.microbatches * activation)
        )
    history = gathered["history"]
    parameters = None
    if config.return_parameters:
        parameters = {}
        for report in reports:
            if report.replica == 0:  # every replica holds the same parameters
                parameters.update(report.state)
    return PipelineResult(
        config=config.to_dict(),
        partition=list(plan.partition.boundaries),
        world_size=config.world_size,
        replicas=config.replicas,
        steps=total_steps,
        samples=total_steps * config.train.batch_size,
        step_time_s=step_time_s,
        step_times_s=[master.step_times[s] for s in sorted(measured)],
        samples_per_s=config.train.batch_size / step_time_s if step_time_s else 0.0,
        bubble_fraction=bubble,
        wall_s=wall_s,
        train_s=sum(master.step_times),
        stages=stages,
        boundaries=boundaries,
        losses=_mean_losses(reports, gathered.get("last_ranks", [gathered["last_rank"]])),
        history=history,
        val_accuracy=history[-1]["val_accuracy"] if history else None,
        val_loss=history[-1]["val_loss"] if history else None,
        train_samples=gathered["train_samples"],
        val_samples=gathered["val_samples"],
        transport=summarize_transport(config.transport, reports),
        startup_s=startup_s(master.step_starts[0]) if master.step_starts else None,
        machine=machine_facts(),
        parameters=parameters,
        weight_stash=gathered.get("weight_stash"),
    )


def _mean_losses(reports: list[Any], last_ranks: list[int]) -> list[float]:
    """The loss of every step: each replica's last stage has its shard's mean loss, and the
    shards are equal, so the global batch's is their mean."""
    if len(last_ranks) == 1:
        return list(reports[last_ranks[0]].losses)
    per_replica = [reports[rank].losses for rank in last_ranks]
    return [sum(values) / len(values) for values in zip(*per_replica, strict=True)]


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _trace_recorders(config: PipelineConfig, gathered: dict[str, Any]) -> list[TraceRecorder]:
    total = gathered["total_steps"]
    first = min(config.measure_warmup_steps, max(0, total - 1))
    drawn = set(range(first, min(total, first + config.trace_steps)))
    recorders = []
    for report in gathered["reports"]:
        label = ", ".join(str(s) for s in report.stages)
        replica = f"replica {report.replica}, " if config.replicas > 1 else ""
        recorder = TraceRecorder(
            track=report.rank, track_name=f"rank {report.rank}: {replica}stage {label}"
        )
        kinds = {"F": "forward", "B": "backward", "W": "weight-grad"}
        for step, stage, microbatch, kind, start, duration in report.chunks:
            if step in drawn:
                recorder.add(
                    f"{kind}{microbatch}",
                    kinds[kind],
                    start,
                    duration,
                    step=step,
                    stage=stage,
                    microbatch=microbatch,
                )
        for step, start, duration in report.waits:
            if step in drawn:
                recorder.add("wait", "communication", start, duration, step=step)
        for step, start, duration in report.allreduces:
            if step in drawn:
                recorder.add("allreduce", "communication", start, duration, step=step)
        for step, (start, length, opt) in enumerate(
            zip(report.step_starts, report.step_times, report.optimizer_times, strict=True)
        ):
            if step in drawn:
                recorder.add("optimizer", "optimizer", start + length - opt, opt, step=step)
        recorders.append(recorder)
    return recorders


def _write_files(
    out_dir: Path, result: PipelineResult, gathered: dict[str, Any], config: PipelineConfig
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    trace_path = out_dir / "trace.json"
    write_chrome_trace(
        trace_path,
        _trace_recorders(config, gathered),
        metadata={
            "schedule": config.schedule,
            "replicas": config.replicas,
            "partition": result.partition,
            "transport": result.transport,
        },
    )
    result.files = {"result": str(out_dir / "result.json"), "trace": str(trace_path)}
    write_json(out_dir / "result.json", result.to_dict())
