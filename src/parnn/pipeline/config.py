"""The settings of one pipeline-parallel run, validated before any process starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from parnn.errors import ConfigError
from parnn.partition import Partition
from parnn.train.config import TrainConfig, split_train_settings
from parnn.train.optim import OptimizerConfig
from parnn.transport import TRANSPORTS

__all__ = ["PIPELINE_TRAIN", "PipelineConfig"]

PIPELINE_TRAIN: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 32,
    "optimizer": OptimizerConfig(name="adam", lr=0.003),
    "threads": 1,
    "drop_last": True,
}
"""The pipeline's defaults of the shared training settings (the rest: TrainConfig's)."""


@dataclass(kw_only=True, slots=True)
class PipelineConfig:
    """One pipeline-parallel training run: ``num_ranks`` pinned processes (the pipeline's
    depth), each holding ``stages_per_rank`` consecutive-or-looped stages of the model:
    ``num_stages = num_ranks x stages_per_rank`` model pieces in all. With ``replicas``
    d > 1, d copies of that pipeline (d x num_ranks ranks on a 2-D mesh), each training on
    its shard of the global batch, their stages' gradients averaged."""

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
    num_ranks: int = 2
    """Processes of one pipeline (one replica; the pipeline's depth, ``--stages``), one
    pinned core each; rank 0 is the master."""
    replicas: int = 1
    """Copies of the pipeline (hybrid parallelism): ``replicas x num_ranks`` ranks, rank
    ``r x num_ranks + i`` holding replica r's stage(s) of pipeline rank i."""
    stages_per_rank: int = 1
    """Pipeline stages per process (interleaved, looped and V schedules)."""
    partition: str | Partition = "equal-load"
    """Boundaries '0,3,5', unit counts '3,2', a named scheme, or a cost-aware method."""
    schedule: str = "gpipe"
    """A schedule from `parnn schedules`."""
    vertical_sync: bool = False
    """Asynchronous schedules (pipedream, pipedream-2bw): every stage runs a micro-batch on
    the weight version the first stage used for it."""
    num_microbatches: int | Literal["auto"] = 4
    """Micro-batches per mini-batch; the batch size must be a multiple of it. ``"auto"``:
    the simulator's fastest for this model, partition and schedule, chosen by
    :func:`resolve_microbatches` (``run_pipeline`` calls it) from a profile of the model."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**PIPELINE_TRAIN))
    """How to train (the settings every engine shares): batch size (one optimizer step per
    mini-batch), epochs or steps, the optimizer of every stage's parameters, the LR
    schedule (stepped once per optimizer step), the seed (of the weights, the split and the
    data order: the reference trainer's rules) and ``threads``, the intra-op threads per
    process (and cores it is pinned to; None: 1). Defaults: :data:`PIPELINE_TRAIN`."""
    val_fraction: float = 0.2
    """Held-out share of the data, evaluated at the end of every epoch."""
    evaluate: bool = True
    """Evaluate on the held-out data at each epoch's end (rank 0, on the gathered model)."""
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

    @classmethod
    def of(cls, *, train: TrainConfig | None = None, **settings: Any) -> PipelineConfig:
        """A config from flat keywords: the shared training settings (batch_size, epochs,
        steps, optimizer, lr_schedule, warmup_steps, seed, threads, ...) fill ``train``
        (over :data:`PIPELINE_TRAIN`, or over ``train`` when given), the rest are the
        pipeline's own: ``PipelineConfig.of(num_ranks=2, batch_size=32, steps=4)``."""
        shared, own = split_train_settings(settings)
        base = train if train is not None else TrainConfig(**PIPELINE_TRAIN)
        return cls(train=replace(base, **shared) if shared else base, **own)

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with ``changes``, flat keywords as :meth:`of` takes them."""
        shared, own = split_train_settings(changes)
        return replace(self, train=replace(self.train, **shared), **own)

    @property
    def threads(self) -> int:
        """Intra-op threads per process (``train.threads``; None: 1)."""
        return self.train.threads or 1

    def __post_init__(self) -> None:
        if self.train.threads is None:
            self.train = replace(self.train, threads=1)
        if isinstance(self.num_microbatches, str):
            if self.num_microbatches.strip().lower() != "auto":
                raise ConfigError(
                    f"num_microbatches {self.num_microbatches!r}: give an integer >= 1 or "
                    "'auto' (the simulator's fastest), e.g. --microbatches 4"
                )
            self.num_microbatches = "auto"
        for name in ("num_ranks", "replicas", "stages_per_rank", "num_microbatches"):
            value = getattr(self, name)
            if value == "auto" and name == "num_microbatches":
                continue
            if not isinstance(value, int) or value < 1:
                what = "num_ranks (the pipeline's depth, --stages)" if name == "num_ranks" else name
                raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
        asynchronous = self.schedule.strip().lower() in ("pipedream", "pipedream-2bw")
        if self.replicas > 1 and asynchronous:
            raise ConfigError(
                f"--replicas {self.replicas} with {self.schedule!r}: the asynchronous schedules "
                "have no flush at which replicas could average their gradients; use a "
                "synchronous schedule (gpipe, 1f1b, ...) or --replicas 1"
            )
        microbatches = self.num_microbatches
        if (
            microbatches != "auto"
            and self.replicas > 1
            and self.train.batch_size % (self.replicas * microbatches)
        ):
            split = self.replicas * microbatches
            raise ConfigError(
                f"batch size {self.train.batch_size} is not divisible by {self.replicas} replicas x "
                f"{microbatches} micro-batches = {split}: every replica takes an equal "
                f"shard, cut into equal micro-batches; try --batch-size "
                f"{split * max(1, self.train.batch_size // split)}"
            )
        if self.num_microbatches != "auto" and self.train.batch_size % self.num_microbatches:
            raise ConfigError(
                f"batch size {self.train.batch_size} is not divisible by {self.num_microbatches} "
                f"micro-batches: every micro-batch must have the same size; try "
                f"--microbatches {_divisor_near(self.train.batch_size, self.num_microbatches)} or "
                f"--batch-size {self.num_microbatches * max(1, self.train.batch_size // self.num_microbatches)}"
            )
        if not self.train.drop_last:
            raise ConfigError(
                "the pipeline drops each epoch's last, smaller mini-batch (its micro-batches "
                "must be equal): give the TrainConfig drop_last=True"
            )
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
    def num_stages(self) -> int:
        """Pipeline stages (model pieces) in all: ranks x stages per rank."""
        return self.num_ranks * self.stages_per_rank

    @property
    def microbatches(self) -> int:
        """``num_microbatches`` as a number (after :func:`resolve_microbatches` for "auto")."""
        if self.num_microbatches == "auto":
            raise ConfigError(
                "num_microbatches is 'auto': run_pipeline resolves it (resolve_microbatches)"
            )
        return self.num_microbatches

    @property
    def world_size(self) -> int:
        """Processes in all: replicas x pipeline ranks."""
        return self.replicas * self.num_ranks

    @property
    def replica_batch_size(self) -> int:
        """Samples one replica trains on per step (its shard of the global batch)."""
        return self.train.batch_size // self.replicas

    @property
    def microbatch_size(self) -> int:
        return self.replica_batch_size // self.microbatches

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["train"] = self.train.to_dict()
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
