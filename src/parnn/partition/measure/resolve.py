"""From a model and a ``--partition`` / ``--microbatches`` value to a partition and a plan.

This is the seam the command lines call:

* :func:`resolve_partition` turns any partition spec into a :class:`Partition` for a model,
  profiling it (cached) only when the method needs costs;
* :func:`resolve_plan` also picks the number of micro-batches (``"auto"``) and predicts the
  step with the simulator.

Profiles come from a :class:`ProfileSource`: the cache in ``cache_dir`` or a measurement,
one per micro-batch size, with the machine's communication model measured once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from parnn.errors import ConfigError
from parnn.partition.comm import CommModel
from parnn.partition.cost import in_flight_microbatches, stashed_weight_versions
from parnn.partition.measure.cache import load_or_measure_comm, load_or_profile
from parnn.partition.methods import needs_profile, partition_for
from parnn.partition.partition import Partition
from parnn.partition.plan import PipelinePlan, plan_pipeline
from parnn.partition.profile import ModelProfile
from parnn.partition.schedules import canonical_schedule

__all__ = [
    "COMM_MODES",
    "ProfileConfig",
    "ProfileSource",
    "count_units",
    "parse_microbatches",
    "resolve_partition",
    "resolve_plan",
]

COMM_MODES = ("measure", "none")


@dataclass(kw_only=True, slots=True)
class ProfileConfig:
    """How to obtain the profiles of one model."""

    model: str | nn.Sequential
    """A zoo name / user spec (built with ``seed``), or a built nn.Sequential of units."""
    input_shape: tuple[int, ...] | None = None
    """Input (C, H, W); default: the zoo model's own (required for a built module)."""
    num_classes: int | None = None
    """Classes of a zoo model's head; default: the model's reference head."""
    threads: int = 1
    """Intra-op threads while timing (the pipeline runs one per stage)."""
    cache_dir: Path | None = None
    """Where profiles and the comm model are cached; None: measure every time."""
    refresh: bool = False
    """Measure again even when cached (once per micro-batch size per source)."""
    comm: str = "measure"
    """'measure': price transfers with the machine's measured comm model; 'none': free."""
    backend: str = "gloo"
    """Backend whose transfers are measured."""
    transport: str = "auto"
    """Path of the pipeline's messages whose transfers are measured: 'gloo', 'shm', or
    'auto' (shm between ranks of this host, as the pipeline's own default)."""
    warmup: int = 2
    """Untimed passes per profile."""
    repeats: int = 7
    """Timed passes per profile (medians)."""
    seed: int = 0
    """Seed for the model's weights and the random batch."""
    quiet: bool = True
    """No progress bars."""

    def __post_init__(self) -> None:
        if self.comm not in COMM_MODES:
            raise ConfigError(f"comm={self.comm!r}: choose one of {', '.join(COMM_MODES)}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(
                f"need warmup >= 0 and repeats >= 1, got {self.warmup}, {self.repeats}"
            )
        if self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)


class ProfileSource:
    """``source(microbatch_size) -> ModelProfile``: cached on disk and in memory."""

    def __init__(self, config: ProfileConfig) -> None:
        self.config = config
        self._profiles: dict[int, ModelProfile] = {}
        self._comm: CommModel | None = None
        self._comm_ready = False

    def comm_model(self) -> CommModel | None:
        if not self._comm_ready:
            config = self.config
            if config.comm == "measure":
                self._comm = load_or_measure_comm(
                    config.cache_dir,
                    backend=config.backend,
                    transport=config.transport,
                    threads=config.threads,
                    refresh=config.refresh,
                )
            self._comm_ready = True
        return self._comm

    def __call__(self, batch_size: int) -> ModelProfile:
        if batch_size not in self._profiles:
            config = self.config
            comm = self.comm_model()
            profile = load_or_profile(
                config.model,
                input_shape=config.input_shape,
                batch_size=batch_size,
                num_classes=config.num_classes,
                threads=config.threads,
                cache_dir=config.cache_dir,
                refresh=config.refresh,
                comm=comm,
                warmup=config.warmup,
                repeats=config.repeats,
                seed=config.seed,
                quiet=config.quiet,
            )
            self._profiles[batch_size] = profile.with_comm(comm)
        return self._profiles[batch_size]


def _meta_model(model: str, input_shape: Sequence[int] | None, seed: int) -> nn.Sequential:
    from parnn.models import build_model

    shape = None if input_shape is None else tuple(input_shape)
    try:
        with torch.device("meta"):
            return build_model(model, input_shape=shape)
    except (RuntimeError, NotImplementedError):  # a builder that needs real tensors
        torch.manual_seed(seed)
        return build_model(model, input_shape=shape)


def count_units(model: str | nn.Sequential, *, input_shape: Sequence[int] | None = None) -> int:
    """The number of cuttable units of a model, without allocating its weights."""
    module = model if isinstance(model, nn.Module) else _meta_model(model, input_shape, 0)
    return len(list(module.children()))


def _in_flight(
    schedule: str, num_stages: int, num_microbatches: int, num_ranks: int | None
) -> tuple[int, ...]:
    canonical_schedule(schedule)  # every schedule the runtime runs is known
    return in_flight_microbatches(schedule, num_stages, num_microbatches, num_ranks=num_ranks)


def parse_microbatches(text: str | int | None) -> int | None:
    """'auto' -> None (choose); '8' -> 8."""
    if text is None:
        return 1
    if isinstance(text, int):
        value = text
    elif text.strip().lower() == "auto":
        return None
    else:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"--microbatches {text!r}: give a positive integer or 'auto'"
            ) from None
    if value < 1:
        raise ConfigError(f"--microbatches {value}: must be >= 1, or 'auto'")
    return value


def resolve_partition(
    spec: str | Partition,
    *,
    model: str | nn.Sequential,
    num_stages: int,
    profile: ModelProfile | None = None,
    source: ProfileSource | None = None,
    batch_size: int | None = None,
    num_microbatches: int = 1,
    schedule: str = "gpipe",
    num_ranks: int | None = None,
    max_stage_memory: float | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    cache_dir: str | Path | None = None,
    threads: int = 1,
    transport: str = "auto",
) -> Partition:
    """The partition ``spec`` names for ``model`` split into ``num_stages`` stages.

    Explicit partitions, schemes and ``uniform`` need no profile. A cost-aware method uses
    ``profile`` when given, else ``source`` (or a default :class:`ProfileSource` with
    ``cache_dir``) at the micro-batch size ``ceil(batch_size / num_microbatches)``.
    ``schedule`` and ``num_ranks`` only matter under ``max_stage_memory`` (activations in
    flight, read off the schedule's actions).
    """
    if not needs_profile(spec):
        num_units = (
            profile.num_units
            if profile is not None
            else count_units(model, input_shape=input_shape)
        )
        return partition_for(spec, num_stages=num_stages, num_units=num_units, profile=profile)
    if profile is None:
        if batch_size is None:
            raise ConfigError(f"partition method {spec!r} profiles the model: give a batch size")
        if source is None:
            source = ProfileSource(
                ProfileConfig(
                    model=model,
                    input_shape=None if input_shape is None else tuple(input_shape),
                    num_classes=num_classes,
                    cache_dir=None if cache_dir is None else Path(cache_dir),
                    threads=threads,
                    transport=transport,
                )
            )
        profile = source(math.ceil(batch_size / num_microbatches))
    in_flight = stashed = None
    if max_stage_memory is not None:
        in_flight = _in_flight(schedule, num_stages, num_microbatches, num_ranks)
        stashed = stashed_weight_versions(schedule, num_stages, num_microbatches)
    return partition_for(
        spec,
        num_stages=num_stages,
        num_units=profile.num_units,
        profile=profile,
        in_flight=in_flight,
        max_stage_memory=max_stage_memory,
        stashed_versions=stashed,
    )


def resolve_plan(
    spec: str | Partition,
    *,
    source: ProfileSource,
    num_stages: int,
    batch_size: int,
    num_microbatches: int | str | None = "auto",
    schedule: str = "gpipe",
    num_ranks: int | None = None,
    max_stage_memory: float | None = None,
    candidates: Sequence[int] | None = None,
) -> PipelinePlan:
    """Partition, number of micro-batches (``"auto"`` / None: the fastest predicted) and the
    simulated step, all priced with profiles from ``source``."""
    chosen = (
        None
        if num_microbatches is None
        else parse_microbatches(
            num_microbatches if isinstance(num_microbatches, str) else int(num_microbatches)
        )
    )
    return plan_pipeline(
        spec,
        profile_for=source,
        batch_size=batch_size,
        num_stages=num_stages,
        schedule=schedule,
        num_microbatches=chosen,
        num_ranks=num_ranks,
        max_stage_memory=max_stage_memory,
        candidates=candidates,
    )
