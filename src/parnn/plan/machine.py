"""What sharing the machine costs, measured once and cached beside the profiles.

Two measurements a per-unit profile (one process, alone) cannot see:

- **contention**: ``k`` processes computing at once on ``k`` cores each run slower than one
  alone (shared caches, memory bandwidth, the clock, and today other users). The same
  training step of the model is timed in one pinned process alone, then in ``k`` pinned
  copies at once; ``contention[k]`` is the ratio of their medians (>= 1 in principle,
  noise aside). For more busy cores than this machine has, the largest measured factor is
  held (an assumption, stated in the plan).
- **all-reduce**: the time of one ``all_reduce`` of ``n`` bytes between two processes over
  the transport (gloo), fitted as ``latency + n / bandwidth`` from a few sizes
  (:func:`parnn.partition.fit_comm_model`). A ring over ``d`` replicas is predicted from it
  by :func:`allreduce_s`.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parnn.errors import ConfigError
from parnn.partition.comm import CommModel, fit_comm_model

__all__ = [
    "ALLREDUCE_SIZES_BYTES",
    "MachineModel",
    "allreduce_s",
    "load_or_measure_machine",
    "measure_allreduce",
    "measure_contention",
]

ALLREDUCE_SIZES_BYTES: tuple[int, ...] = (4 << 10, 64 << 10, 1 << 20, 8 << 20, 32 << 20)
MACHINE_FORMAT = 3


@dataclass(frozen=True, slots=True)
class MachineModel:
    """The measured costs of sharing this machine: contention per busy cores, all-reduce."""

    cores: int
    """Cores of the machine that measured it (usable by this process)."""
    contention: dict[int, float] = field(default_factory=dict)
    """Busy cores -> slowdown of a process's compute (1.0 alone)."""
    allreduce: CommModel | None = None
    """One all-reduce between two processes on this machine: latency + bytes / bandwidth."""
    pipeline_action_s: float = 0.0
    """Seconds a pipeline rank spends per action (one micro-batch's forward or backward of
    one stage) beyond its compute and its transfers: the pipelining runtime's bookkeeping and
    the wake-up of each blocking receive, calibrated on a tiny pipeline."""

    def __post_init__(self) -> None:
        if any(factor <= 0 for factor in self.contention.values()):
            raise ConfigError(f"contention factors must be > 0, got {self.contention}")

    def contention_at(self, busy_cores: int) -> float:
        """Slowdown with ``busy_cores`` cores computing; held at the largest measured beyond
        it; 1.0 for one core or when nothing was measured."""
        if busy_cores <= 1 or not self.contention:
            return 1.0
        known = [k for k in self.contention if k <= busy_cores]
        return self.contention[max(known)] if known else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MACHINE_FORMAT,
            "cores": self.cores,
            "contention": {str(k): v for k, v in sorted(self.contention.items())},
            "allreduce": None if self.allreduce is None else self.allreduce.to_dict(),
            "pipeline_action_s": self.pipeline_action_s,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MachineModel:
        allreduce = payload.get("allreduce")
        return cls(
            cores=int(payload["cores"]),
            contention={int(k): float(v) for k, v in payload.get("contention", {}).items()},
            allreduce=None if allreduce is None else CommModel.from_dict(allreduce),
            pipeline_action_s=float(payload.get("pipeline_action_s", 0.0)),
        )


def allreduce_s(
    num_bytes: float,
    replicas: int,
    local: CommModel,
    *,
    link: CommModel | None = None,
) -> float:
    """Seconds of a ring all-reduce of ``num_bytes`` over ``replicas`` processes.

    A ring takes ``2 (d - 1)`` hops, each moving ``n / d`` bytes: ``2 (d - 1) (a + n / (d b))``
    with hop latency ``a`` and bandwidth ``b``. The two-process measurement ``L + n / B``
    is that ring at ``d = 2``, so ``a = L / 2`` and ``b = B``. With ``link`` (replicas on
    other nodes) every hop runs at the slower of the two (the ring crosses the network).
    """
    if replicas <= 1 or num_bytes <= 0:
        return 0.0
    hop_latency = local.latency_s / 2
    hop_bandwidth = local.bandwidth_bytes_per_s
    if link is not None:
        hop_latency = max(hop_latency, link.latency_s)
        hop_bandwidth = min(hop_bandwidth, link.bandwidth_bytes_per_s)
    hops = 2 * (replicas - 1)
    return hops * (hop_latency + num_bytes / (replicas * hop_bandwidth))


def _timed_steps(
    rank: int, world_size: int, pickled_model: bytes, input_shape: tuple[int, ...],
    batch_size: int, repeats: int,
) -> list[float]:  # fmt: skip
    """In each process: seconds of ``repeats`` training steps (forward, backward, SGD)."""
    import torch

    from parnn.partition.measure.profiler import make_batch

    model = pickle.loads(pickled_model)

    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    with torch.no_grad():
        num_classes = int(model.eval()(make_batch(input_shape, 2, 1)[0]).shape[-1])
    model.train()
    inputs, targets = make_batch(input_shape, batch_size, num_classes, seed=rank)
    times: list[float] = []
    for index in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(inputs), targets).backward()
        optimizer.step()
        if index:  # the first step warms up
            times.append(time.perf_counter() - start)
    return times


def measure_contention(
    model: Any,
    input_shape: Sequence[int],
    *,
    batch_size: int,
    max_processes: int,
    repeats: int = 5,
    rounds: int = 3,
) -> dict[int, float]:
    """``{k: slowdown}`` for ``k = 2..max_processes`` pinned one-thread copies of a training
    step of ``model`` at ``batch_size`` running at once, over the same step alone: the
    median over ``rounds`` alternations of the two."""
    from parnn.launch import LaunchConfig, launch

    shape = tuple(int(s) for s in input_shape)
    # Plain bytes: handed over as a module, every tensor would travel as a shared-memory
    # file descriptor, and the fork server refuses more than 256 (ResNet-50 has ~320).
    pickled = pickle.dumps(model)

    def run(k: int) -> float:
        config = LaunchConfig(num_processes=k, init_process_group=False)
        results = launch(_timed_steps, config, pickled, shape, batch_size, repeats)
        return statistics.median(t for times in results for t in times)

    # Alone and together alternate, so that a change in the machine's other load between
    # the two sides (a shared machine) weighs on both alike.
    ratios: dict[int, list[float]] = {k: [] for k in range(2, max_processes + 1)}
    for _ in range(rounds):
        for k in ratios:
            ratios[k].append(run(k) / run(1))
    # Sharing never speeds a process up: a ratio below 1 is the machine's noise.
    return {k: max(1.0, statistics.median(values)) for k, values in ratios.items()}


def _allreduce_times(
    rank: int, world_size: int, sizes_bytes: Sequence[int], repeats: int
) -> list[float]:
    import torch
    import torch.distributed as dist

    medians = []
    for size in sizes_bytes:
        buffer = torch.ones(max(size // 4, 1))  # (size / 4,) float32
        times = []
        for index in range(repeats + 2):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            if index >= 2:
                times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return medians


def measure_allreduce(
    *, sizes_bytes: Sequence[int] = ALLREDUCE_SIZES_BYTES, repeats: int = 7, backend: str = "gloo"
) -> CommModel:
    """Time ``all_reduce`` between two pinned processes at each size; fit the alpha-beta
    model (its ``backend`` reads e.g. 'gloo all-reduce')."""
    from parnn.launch import LaunchConfig, launch

    config = LaunchConfig(num_processes=2, backend=backend)
    times = launch(_allreduce_times, config, list(sizes_bytes), repeats)[0]
    sizes = [max(s // 4, 1) * 4 for s in sizes_bytes]
    return fit_comm_model(sizes, times, backend=f"{backend} all-reduce")


CALIBRATION_MODEL = "lenet5"
CALIBRATION_SHAPE = (1, 28, 28)


def measure_pipeline_action_s(
    *, contention: float, comm: CommModel | None, cache_dir: Path | None, steps: int = 8
) -> float:
    """Calibrate the pipeline runtime's cost per action: a 2-rank GPipe of LeNet-5 with 8
    micro-batches of one sample (almost no compute) runs ``steps`` steps; its median step
    over ``contention`` x the simulated step, spread over the ``2 (m + p - 1)`` actions of
    the critical path, is the overhead of one action (0 when the simulation is slower)."""
    from parnn.partition import Partition, StageTimes, simulate
    from parnn.partition.cost import partition_cost
    from parnn.partition.measure.cache import load_or_profile
    from parnn.pipeline import PipelineConfig, run_pipeline

    partition = Partition(boundaries=(0, 2, 5))
    m, batch = 8, 8
    config = PipelineConfig.of(
        model=CALIBRATION_MODEL,
        data="synthetic",
        input_shape=CALIBRATION_SHAPE,
        num_samples=4 * batch + 16,
        num_ranks=2,
        partition=partition,
        schedule="gpipe",
        num_microbatches=m,
        batch_size=batch,
        steps=steps,
        evaluate=False,
        measure_warmup_steps=2,
        trace_steps=0,
    )
    result = run_pipeline(config, quiet=True)
    if result is None:  # pragma: no cover - only under torchrun
        return 0.0
    profile = load_or_profile(
        CALIBRATION_MODEL,
        input_shape=CALIBRATION_SHAPE,
        batch_size=batch // m,
        threads=1,
        cache_dir=cache_dir,
        comm=comm,
    )
    times = StageTimes.from_cost(partition_cost(profile, partition))
    simulated = simulate(times, schedule="gpipe", num_microbatches=m).step_time_s
    return max(0.0, result.step_time_s / contention - simulated) / (2 * (m + 2 - 1))


def machine_file_name(model: str, input_shape: Sequence[int], batch_size: int) -> str:
    from parnn.partition.measure.cache import profile_file_name

    return profile_file_name(model, input_shape, batch_size=batch_size, threads=1).replace(
        "profile-", "machine-", 1
    )


def load_or_measure_machine(
    model: Any,
    *,
    name: str,
    input_shape: Sequence[int],
    batch_size: int,
    cores: int,
    cache_dir: Path | None,
    comm: CommModel | None = None,
) -> MachineModel:
    """The machine model for ``model`` (contention is measured on its own training step at
    ``batch_size``), from ``cache_dir`` when there, else measured (a few seconds) and stored."""
    from parnn.results import read_json, write_json

    path = (
        None
        if cache_dir is None
        else Path(cache_dir) / machine_file_name(name, input_shape, batch_size)
    )
    if path is not None and path.exists():
        try:
            payload = read_json(path)
            if payload.get("format") == MACHINE_FORMAT and int(payload["cores"]) == cores:
                return MachineModel.from_dict(payload)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measure again
    contention = (
        measure_contention(model, input_shape, batch_size=batch_size, max_processes=cores)
        if cores > 1
        else {}
    )
    allreduce = measure_allreduce() if cores > 1 else None
    action_s = (
        measure_pipeline_action_s(contention=contention.get(2, 1.0), comm=comm, cache_dir=cache_dir)
        if cores > 1
        else 0.0
    )
    machine = MachineModel(
        cores=cores, contention=contention, allreduce=allreduce, pipeline_action_s=action_s
    )
    if path is not None:
        write_json(path, machine.to_dict())
    return machine
