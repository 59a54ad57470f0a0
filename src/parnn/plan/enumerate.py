"""Every way to spend the cores: the candidates a plan predicts.

On every node, ``threads x processes <= cores``, where a candidate's processes are its
replicas on that node times its pipeline ranks::

    axis       processes                           what runs in parallel
    threads    1 (t intra-op threads)               the operators of one process
    data       d replicas (ddp, hogwild, local-sgd) shards of the batch
    pipeline   p ranks (gpipe, 1f1b, interleaved,   consecutive groups of layers
               pipedream, pipedream-2bw)
    hybrid     d replicas of a p-rank pipeline      both (parnn pipeline --replicas d)

Thread counts, replica counts and pipeline ranks are powers of two up to the limit, and the
limit itself. A single process, a pipeline and a hogwild group live on one node; the
synchronous data-parallel engines and the hybrid put the same number of replicas on every
node. A pipeline needs at least one unit per stage (two chunks per rank for interleaved
1F1B) and a batch the schedule can cut into micro-batches. The asynchronous schedules
(PipeDream, PipeDream-2BW: no flush, weight stashing) are pipeline candidates only: they
have no flush at which a hybrid's replicas could average their gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parnn.errors import ConfigError
from parnn.partition.plan import microbatch_candidates
from parnn.partition.schedules import get_schedule

__all__ = [
    "AXES",
    "ASYNC_SCHEDULES",
    "DATA_ENGINES",
    "PIPELINE_SCHEDULES",
    "Candidate",
    "enumerate_candidates",
    "thread_counts",
]

AXES = ("threads", "data", "pipeline", "hybrid")
DATA_ENGINES = ("ddp", "hogwild", "local-sgd")
"""Data-parallel engines planned (mpi is local-sgd over MPI: the same arithmetic)."""
SYNC_SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b")
"""The synchronous schedules the planner tries (a flush after every step)."""
ASYNC_SCHEDULES = ("pipedream", "pipedream-2bw")
"""The asynchronous schedules: the simulator predicts their steady state
(:mod:`parnn.partition.simulate_async`); pipeline candidates only, never a hybrid's."""
PIPELINE_SCHEDULES = SYNC_SCHEDULES + ASYNC_SCHEDULES
"""The schedules the planner tries (the simulator replays every schedule of the registry,
parnn.partition.schedules; the planner keeps to these five)."""
SYNC_ENGINES = ("ddp", "local-sgd")
"""Engines that span nodes (hogwild shares memory, so it stays on one)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One layout of the cores: an axis and its numbers."""

    axis: str
    """threads, data, pipeline or hybrid."""
    threads: int
    """Intra-op threads of every process."""
    replicas: int = 1
    """Model replicas in all (over every node)."""
    stages: int = 1
    """Pipeline ranks (processes) per replica."""
    engine: str | None = None
    """Data-parallel engine (data: ddp/hogwild/local-sgd; hybrid: ddp)."""
    schedule: str | None = None
    """Pipeline schedule (pipeline, hybrid)."""
    nodes: int = 1
    """Nodes the candidate spans."""

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ConfigError(f"unknown axis {self.axis!r}: choose one of {', '.join(AXES)}")
        if min(self.threads, self.replicas, self.stages, self.nodes) < 1:
            raise ConfigError(f"candidate {self}: every count must be >= 1")
        if self.replicas % self.nodes:
            raise ConfigError(
                f"{self.replicas} replicas do not spread evenly on {self.nodes} nodes"
            )

    @property
    def replicas_per_node(self) -> int:
        return self.replicas // self.nodes

    @property
    def processes_per_node(self) -> int:
        return self.replicas_per_node * self.stages

    @property
    def cores_per_node(self) -> int:
        """Cores busy on each node: processes x threads."""
        return self.processes_per_node * self.threads

    @property
    def chunks(self) -> int:
        """Pipeline stages per rank: the schedule's default (2 for interleaved 1F1B), 1
        without a schedule."""
        return _stages_per_rank(self.schedule)

    @property
    def runnable(self) -> bool:
        """Whether an engine can run it here: every axis on one node (several nodes are
        predicted only; the hybrid engine runs them under torchrun, not from the planner)."""
        return self.nodes == 1

    @property
    def label(self) -> str:
        """'1 process x 2t', 'ddp x2 (1t)', '1f1b 2 ranks (1t)', 'ddp x2 of gpipe 2 ranks'."""
        if self.axis == "threads":
            return f"1 process x {self.threads}t"
        if self.axis == "data":
            return f"{self.engine} x{self.replicas} ({self.threads}t)"
        pipe = f"{self.schedule} {self.stages} ranks ({self.threads}t)"
        if self.axis == "pipeline":
            return pipe
        return f"{self.engine} x{self.replicas} of {pipe}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "replicas": self.replicas,
            "stages": self.stages,
            "engine": self.engine,
            "schedule": self.schedule,
            "nodes": self.nodes,
            "processes_per_node": self.processes_per_node,
            "cores_per_node": self.cores_per_node,
            "label": self.label,
        }


def thread_counts(limit: int) -> tuple[int, ...]:
    """Powers of two up to ``limit``, and ``limit``: 1, 2, 4, ..., limit."""
    values = {limit}
    value = 1
    while value <= limit:
        values.add(value)
        value *= 2
    return tuple(sorted(values))


def _stages_per_rank(schedule: str | None) -> int:
    return 1 if schedule is None else get_schedule(schedule).default_stages_per_rank


def _splits_into_microbatches(batch_size: int, ranks: int, schedule: str) -> bool:
    try:
        microbatch_candidates(batch_size, num_ranks=ranks, schedule=schedule)
    except ConfigError:
        return False
    return True


def enumerate_candidates(
    *,
    cores: int,
    num_units: int,
    batch_size: int,
    nodes: int = 1,
    engines: tuple[str, ...] = DATA_ENGINES,
    schedules: tuple[str, ...] = PIPELINE_SCHEDULES,
) -> tuple[Candidate, ...]:
    """Every candidate for ``nodes`` nodes of ``cores`` cores, a model of ``num_units``
    cuttable units and a global batch of ``batch_size``, in axis order."""
    if min(cores, num_units, batch_size, nodes) < 1:
        raise ConfigError(
            f"cores {cores}, units {num_units}, batch {batch_size} and nodes {nodes} must be >= 1"
        )
    found: list[Candidate] = [Candidate(axis="threads", threads=t) for t in thread_counts(cores)]
    for t in thread_counts(cores):
        for per_node in thread_counts(cores // t):
            for engine in engines:
                spread = nodes if engine in SYNC_ENGINES else 1
                replicas = per_node * spread
                if replicas < 2:
                    continue
                if engine in SYNC_ENGINES and batch_size % replicas:
                    continue  # the global batch is split evenly over the replicas
                found.append(
                    Candidate(
                        axis="data", threads=t, replicas=replicas, engine=engine, nodes=spread
                    )
                )
    for t in thread_counts(cores):
        for ranks in thread_counts(cores // t):
            if ranks < 2:
                continue
            for schedule in schedules:
                stages = ranks * _stages_per_rank(schedule)
                if stages > num_units or not _splits_into_microbatches(batch_size, ranks, schedule):
                    continue
                found.append(Candidate(axis="pipeline", threads=t, stages=ranks, schedule=schedule))
                if schedule in ASYNC_SCHEDULES:
                    continue  # no flush: no point at which replicas average
                for per_node in thread_counts(cores // (t * ranks)):
                    replicas = per_node * nodes
                    if replicas < 2 or batch_size % replicas:
                        continue
                    if not _splits_into_microbatches(batch_size // replicas, ranks, schedule):
                        continue
                    found.append(
                        Candidate(
                            axis="hybrid",
                            threads=t,
                            replicas=replicas,
                            stages=ranks,
                            engine="ddp",
                            schedule=schedule,
                            nodes=nodes,
                        )
                    )
    found.sort(key=lambda c: AXES.index(c.axis))
    return tuple(found)
