"""The settings of one pipeline-parallel run, validated before any process starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from parnn.errors import ConfigError
from parnn.partition import Partition
from parnn.train import OptimizerConfig
from parnn.transport import TRANSPORTS

__all__ = ["PipelineConfig"]


@dataclass(kw_only=True, slots=True)
class PipelineConfig:
    """One pipeline-parallel training run: ``num_stages`` pinned processes (ranks), each
    holding ``stages_per_rank`` consecutive-or-looped stages of the model; with
    ``replicas`` d > 1, d copies of that pipeline (d x num_stages ranks on a 2-D mesh),
    each training on its shard of the global batch, their stages' gradients averaged."""

    model: str = "lenet5"
    """Zoo name or user model spec ('file.py:build', 'pkg.module:build')."""
    data: str = "digits"
    """Dataset name (digits, mnist, cifar10, synthetic)."""
    data_dir: Path | None = None
    """Directory of the dataset files (mnist, cifar10)."""
    input_shape: tuple[int, ...] | None = None
    """Sample shape (C, H, W); default: the dataset's own (digits: 1x28x28)."""
    num_samples: int | None = None
    """Keep only the first N samples of the dataset (synthetic: how many to draw)."""
    num_stages: int = 2
    """Processes of one pipeline (one replica), one pinned core each; rank 0 is the master."""
    replicas: int = 1
    """Copies of the pipeline (hybrid parallelism): ``replicas x num_stages`` ranks, rank
    ``r x num_stages + i`` holding replica r's stage(s) of pipeline rank i."""
    stages_per_rank: int = 1
    """Pipeline stages per process (interleaved, looped and V schedules)."""
    partition: str | Partition = "equal-load"
    """Boundaries '0,3,5', unit counts '3,2', a named scheme, or a cost-aware method."""
    schedule: str = "gpipe"
    """A schedule from `parnn schedules`."""
    vertical_sync: bool = False
    """Asynchronous schedules (pipedream, pipedream-2bw): every stage runs a micro-batch on
    the weight version the first stage used for it."""
    num_microbatches: int = 4
    """Micro-batches per mini-batch; the batch size must be a multiple of it."""
    batch_size: int = 32
    """Mini-batch size: one optimizer step per mini-batch."""
    epochs: int = 1
    """Passes over the training data (ignored when ``steps`` is given)."""
    steps: int | None = None
    """Optimizer steps to run; overrides ``epochs``."""
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=0.003)
    )
    """Optimizer of every stage's parameters (the reference trainer's)."""
    lr_schedule: str = "constant"
    """LR schedule (constant, step, cosine, warm), stepped once per optimizer step."""
    warmup_steps: int | None = None
    """Warm-up of the ``warm`` schedule."""
    seed: int = 0
    """Seeds the weights, the split and the data order (the reference trainer's rules)."""
    val_fraction: float = 0.2
    """Held-out share of the data, evaluated at the end of every epoch."""
    evaluate: bool = True
    """Evaluate on the held-out data at each epoch's end (rank 0, on the gathered model)."""
    threads_per_stage: int = 1
    """Intra-op threads per process (and cores it is pinned to)."""
    pin: bool = True
    """Pin each process to its own core(s)."""
    backend: str = "gloo"
    """torch.distributed backend (gloo on CPU, nccl on GPUs)."""
    transport: str = "auto"
    """Path of the stages' sends and receives: 'shm' (shared memory; every rank on one
    host), 'gloo' (the backend's own), 'auto' (shm between ranks of one host, gloo
    across hosts). Set-up, metadata and collectives always go through ``backend``."""
    measure_warmup_steps: int = 2
    """Steps left out of the medians of step time and throughput."""
    trace_steps: int = 20
    """Steps drawn in the Chrome trace (the first ones after warm-up)."""
    out_dir: Path | None = None
    """Where result.json and trace.json are written; None: nowhere."""
    return_parameters: bool = False
    """Hand the trained parameters back in the result (tests, comparisons)."""
    checkpoint_dir: Path | None = None
    """Asynchronous schedules: every rank writes its stage (weights, optimizer, LR schedule,
    position) here at each epoch's end, where the pipeline is drained."""
    resume: bool = False
    """Continue from the newest checkpoint in ``checkpoint_dir`` every rank has saved."""
    fail_rank: int | None = None
    """TEST HOOK: the rank that raises at ``fail_at_step`` (failure-handling tests only)."""
    fail_at_step: int | None = None
    """TEST HOOK: the step at which ``fail_rank`` raises."""

    def __post_init__(self) -> None:
        for name in (
            "num_stages",
            "replicas",
            "stages_per_rank",
            "num_microbatches",
            "threads_per_stage",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch size must be > 0, got {self.batch_size}")
        asynchronous = self.schedule.strip().lower() in ("pipedream", "pipedream-2bw")
        if self.replicas > 1 and asynchronous:
            raise ConfigError(
                f"--replicas {self.replicas} with {self.schedule!r}: the asynchronous schedules "
                "have no flush at which replicas could average their gradients; use a "
                "synchronous schedule (gpipe, 1f1b, ...) or --replicas 1"
            )
        if self.replicas > 1 and self.batch_size % (self.replicas * self.num_microbatches):
            split = self.replicas * self.num_microbatches
            raise ConfigError(
                f"batch size {self.batch_size} is not divisible by {self.replicas} replicas x "
                f"{self.num_microbatches} micro-batches = {split}: every replica takes an equal "
                f"shard, cut into equal micro-batches; try --batch-size "
                f"{split * max(1, self.batch_size // split)}"
            )
        if self.batch_size % self.num_microbatches:
            raise ConfigError(
                f"batch size {self.batch_size} is not divisible by {self.num_microbatches} "
                f"micro-batches: every micro-batch must have the same size; try "
                f"--microbatches {_divisor_near(self.batch_size, self.num_microbatches)} or "
                f"--batch-size {self.num_microbatches * max(1, self.batch_size // self.num_microbatches)}"
            )
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.steps is None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"transport {self.transport!r} is unknown: choose one of {', '.join(TRANSPORTS)}"
                " ('auto': shared memory within a host, gloo across hosts)"
            )
        if self.transport != "gloo" and self.backend != "gloo":
            raise ConfigError(
                f"transport {self.transport!r} rides on the gloo backend, got backend "
                f"{self.backend!r}; use transport 'gloo' (the backend's own sends) with it"
            )
        if self.measure_warmup_steps < 0:
            raise ConfigError(f"measure_warmup_steps must be >= 0, got {self.measure_warmup_steps}")
        if (self.fail_rank is None) != (self.fail_at_step is None):
            raise ConfigError("fail_rank and fail_at_step (a test hook) go together")
        if self.fail_rank is not None and not 0 <= self.fail_rank < self.world_size:
            raise ConfigError(f"fail_rank {self.fail_rank} is not a rank of {self.world_size}")
        if self.vertical_sync and self.schedule.strip().lower() not in (
            "pipedream",
            "pipedream-2bw",
        ):
            raise ConfigError(
                f"vertical sync applies to the asynchronous schedules only, not "
                f"{self.schedule!r}: use --schedule pipedream or pipedream-2bw, or drop "
                "--vertical-sync"
            )
        if self.checkpoint_dir is not None and self.schedule.strip().lower() not in (
            "pipedream",
            "pipedream-2bw",
        ):
            raise ConfigError(
                f"checkpoints are written by the asynchronous schedules (at their epoch-end "
                f"drain), not by {self.schedule!r}: use --schedule pipedream, or drop "
                "--checkpoint-dir"
            )
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError("resume needs checkpoint_dir: the directory to resume from")
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.out_dir is not None:
            self.out_dir = Path(self.out_dir)

    @property
    def total_stages(self) -> int:
        """Pipeline stages in all: processes x stages per process."""
        return self.num_stages * self.stages_per_rank

    @property
    def world_size(self) -> int:
        """Processes in all: replicas x pipeline ranks."""
        return self.replicas * self.num_stages

    @property
    def replica_batch_size(self) -> int:
        """Samples one replica trains on per step (its shard of the global batch)."""
        return self.batch_size // self.replicas

    @property
    def microbatch_size(self) -> int:
        return self.replica_batch_size // self.num_microbatches

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["partition"] = (
            list(self.partition.boundaries)
            if isinstance(self.partition, Partition)
            else self.partition
        )
        for key in ("data_dir", "out_dir", "checkpoint_dir"):
            values[key] = None if values[key] is None else str(values[key])
        return values


def _divisor_near(batch_size: int, wanted: int) -> int:
    divisors = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
    return min(divisors, key=lambda d: (abs(d - wanted), d))
