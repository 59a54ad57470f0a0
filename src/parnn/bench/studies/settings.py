"""What every pipeline study shares: how each of its cells is run and measured.

The defaults are sized so that each study finishes in minutes on a 2-core machine: a
32x32 input instead of ImageNet's 224x224, a few timed steps per repeat. Every report
states them; ``input_shape=(3, 224, 224)``, more ``steps`` and ``repeats`` restore the
papers' sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from parnn.errors import ConfigError, ParnnError, PartitionError
from parnn.partition.balancers import BALANCERS
from parnn.partition.partition import parse_partition_spec
from parnn.partition.schemes import SCHEMES

__all__ = [
    "PARTITION_NAMES",
    "STUDY_INPUT_SHAPE",
    "SYNTHETIC_CLASSES",
    "PAPER_INPUT_SHAPE",
    "RunSettings",
    "check_model_name",
    "check_partition",
    "check_pipeline_shape",
    "check_positive_list",
    "check_schedule",
    "check_stages_fit",
    "known_schedules",
    "model_units",
]

STUDY_INPUT_SHAPE: tuple[int, ...] = (3, 32, 32)  # the default: minutes, not hours
PAPER_INPUT_SHAPE: tuple[int, ...] = (3, 224, 224)  # ImageNet, as both papers
SYNTHETIC_CLASSES = 10  # the classes of parnn's synthetic data, which every study trains on
# Anything the pipeline can partition by name: the study's schemes and the balancers.
PARTITION_NAMES: tuple[str, ...] = (*SCHEMES, *(b for b in BALANCERS if b not in SCHEMES))


def check_positive_list(name: str, values: Sequence[int], flag: str) -> tuple[int, ...]:
    """A non-empty tuple of distinct positive integers, in the order given."""
    items = tuple(int(v) for v in values)
    if not items:
        raise ConfigError(f"{name} is empty: give at least one value, e.g. {flag} 1,2,4")
    bad = [v for v in items if v < 1]
    if bad:
        raise ConfigError(f"{name} must all be >= 1, got {bad[0]}: e.g. {flag} 1,2,4")
    if len(set(items)) != len(items):
        raise ConfigError(f"{name} repeat a value ({list(items)}): give each value once")
    return items


def check_model_name(name: str) -> None:
    """A zoo name or a user model spec; ModelError listing the zoo otherwise."""
    from parnn.models import get_model_spec
    from parnn.models.user import is_user_spec

    if not is_user_spec(name):
        get_model_spec(name)


def model_units(model: str, input_shape: Sequence[int], num_classes: int) -> int:
    """How many cuttable units ``model`` has at ``input_shape`` (builds it once: a bad
    input shape fails here, before any cell runs)."""
    import torch

    from parnn.models import build_model

    shape = tuple(input_shape)
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            built = build_model(model, input_shape=shape, num_classes=num_classes)
    except ParnnError:
        raise
    except Exception:  # a user model that cannot be built on the meta device
        built = build_model(model, input_shape=shape, num_classes=num_classes)
    return len(list(built.children()))


def check_partition(partition: str, stages: Sequence[int], num_units: int | None = None) -> None:
    """``partition`` is a name or explicit boundaries/counts that give every swept number of
    stages (checked against the model's units when ``num_units`` is known)."""
    if partition in PARTITION_NAMES:
        return
    parts = [p for p in partition.replace(" ", "").split(",") if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(
            f"unknown partition {partition!r}: give a name ({', '.join(PARTITION_NAMES)}) or "
            "explicit boundaries such as 0,5,9,16"
        )
    values = [int(p) for p in parts]
    count = len(values) - 1 if values[0] == 0 else len(values)
    if tuple(stages) != (count,):
        raise ConfigError(
            f"--partition {partition} has {count} stages but --stages is "
            f"{','.join(str(s) for s in stages)}: give --stages {count} or a partition name"
        )
    if num_units is not None:
        parse_partition_spec(partition, num_units)


def check_stages_fit(model: str, stages: Sequence[int], num_units: int) -> None:
    """Every stage needs at least one unit."""
    too_many = [k for k in stages if k > num_units]
    if too_many:
        raise PartitionError(
            f"{model} has {num_units} units, too few for {too_many[0]} stages: every stage "
            f"needs at least one unit; use --stages up to {num_units}"
        )


def known_schedules() -> tuple[str, ...]:
    """The schedules a study can run: the pipeline engine's one-stage-per-process ones."""
    from parnn.partition.schedules import SCHEDULES

    return tuple(
        name for name, spec in SCHEDULES.items() if spec.available and not spec.multi_stage
    )


def check_schedule(schedule: str) -> None:
    valid = known_schedules()
    if schedule not in valid:
        raise ConfigError(
            f"unknown schedule {schedule!r}: a study runs one stage per process, with "
            f"{' or '.join(valid)} (--schedule)"
        )


def check_pipeline_shape(schedule: str, stages: Sequence[int], microbatches: Sequence[int]) -> None:
    """Every (stages, micro-batches) pair the schedule must run is one it can run (1F1B, for
    one, needs at least as many micro-batches as stages)."""
    from parnn.partition.schedules import check_schedule as check_engine_schedule
    from parnn.partition.schedules import get_schedule

    spec = get_schedule(schedule, runnable=True)
    for k in stages:
        for m in microbatches:
            check_engine_schedule(spec, num_ranks=k, stages_per_rank=1, num_microbatches=m)


@dataclass(kw_only=True, slots=True)
class RunSettings:
    """How every cell of a pipeline study is run and measured."""

    schedule: str = "1f1b"
    """Pipeline schedule of every run."""
    input_shape: tuple[int, ...] = STUDY_INPUT_SHAPE
    """(C, H, W) of the synthetic samples; (3, 224, 224) is the papers' size."""
    steps: int = 2
    """Timed training steps per repeat."""
    warmup_steps: int = 1
    """Untimed steps before the timed ones (per launch)."""
    repeats: int = 3
    """Repeats per cell, summarised with the ±1.5σ outlier rule."""
    threads: int = 1
    """Intra-op threads per stage process."""
    seed: int = 0
    """Seed of weights and synthetic data."""
    predict: bool = True
    """Profile the model and put the simulator's prediction beside every measurement."""
    isolate_repeats: bool = False
    """Launch the pipeline afresh for every repeat (the nn_pipeline study's method; costs
    a process start per repeat) instead of timing consecutive blocks of one launch."""

    def __post_init__(self) -> None:
        self.check_run_settings()

    def check_run_settings(self) -> None:
        """Validate the shared fields (subclasses call it from their ``__post_init__``)."""
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if not self.input_shape or any(s < 1 for s in self.input_shape):
            raise ConfigError(
                f"input shape {self.input_shape} must be positive sizes, e.g. --input 3x32x32"
            )
        for name, flag in (
            ("steps", "--steps"),
            ("repeats", "--repeats"),
            ("threads", "--threads"),
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        check_schedule(self.schedule)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready settings (what ``study.json`` records)."""
        payload: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            payload[field.name] = list(value) if isinstance(value, tuple) else value
        return payload
