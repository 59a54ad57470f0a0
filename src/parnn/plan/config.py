"""The settings of one plan: the model, the batch, the cores (and machines) to spend, and
how many of the best candidates to run for real."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.errors import ConfigError

__all__ = ["PlanConfig"]


@dataclass(kw_only=True, slots=True)
class PlanConfig:
    """What to plan for, and how much to measure."""

    model: str = "lenet5"
    """Zoo name or user model spec ('file.py:build', 'pkg.module:build')."""
    input_shape: tuple[int, ...] | None = None
    """Sample shape (C, H, W); default: the model's own (a user model needs one)."""
    batch_size: int = 64
    """Samples of one optimizer step (the global batch every candidate trains with)."""
    cores: int | None = None
    """Cores per node; None: the cores this process may use."""
    nodes: int = 1
    """Machines; more than one is predicted only (on paper)."""
    link_bandwidth_gbps: float = 10.0
    """Network between nodes, gigabits per second (only with nodes > 1)."""
    link_latency_us: float = 50.0
    """Network latency between nodes, microseconds (only with nodes > 1)."""
    verify: int = 0
    """Run the best this many candidates (and the two single-process baselines) for real."""
    data: str = "synthetic"
    """Dataset the verification runs train on (synthetic, digits, mnist, cifar10)."""
    data_dir: Path | None = None
    """Directory of the dataset files (mnist, cifar10)."""
    steps: int = 6
    """Optimizer steps of each verification run."""
    warmup_steps: int = 2
    """Steps of each verification run left out of its measured throughput."""
    verify_seconds: float = 1.0
    """Each verification run measures at least about this long: steps are added to
    ``steps`` as the candidate's predicted step time says (a few steps of a small model
    last milliseconds and measure its warm-up, not its pace). 0: exactly ``steps``."""
    verify_repeats: int = 1
    """Runs of each verified candidate, in rotating rounds; its measurement is their median
    (candidates within a few percent of each other need several to be told apart)."""
    profile_warmup: int = 1
    """Untimed passes before a unit profile's timed ones."""
    profile_repeats: int = 5
    """Timed passes of a unit profile (medians)."""
    cache_dir: Path | None = None
    """Where profiles and machine measurements are cached; None: measure, store nothing."""
    seed: int = 0
    """Seeds the weights and the data of the verification runs."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size} must be >= 1, e.g. --batch-size 64")
        if self.cores is not None and self.cores < 1:
            raise ConfigError(f"--cores {self.cores} must be >= 1 (cores per node)")
        if self.nodes < 1:
            raise ConfigError(f"--nodes {self.nodes} must be >= 1")
        if not self.link_bandwidth_gbps > 0:
            raise ConfigError(
                f"--link-bandwidth {self.link_bandwidth_gbps} must be > 0 Gbit/s, e.g. 10"
            )
        if not self.link_latency_us >= 0:
            raise ConfigError(f"--link-latency {self.link_latency_us} must be >= 0 us, e.g. 50")
        if self.verify < 0:
            raise ConfigError(f"--verify {self.verify} must be >= 0 (candidates to run)")
        if self.steps < 1 or self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ConfigError(
                f"verification needs steps > warmup steps >= 0, got steps {self.steps} and "
                f"warmup {self.warmup_steps}; e.g. --steps 6"
            )
        if not self.verify_seconds >= 0:
            raise ConfigError(f"--verify-seconds {self.verify_seconds} must be >= 0, e.g. 1")
        if self.verify_repeats < 1:
            raise ConfigError(f"--verify-repeats {self.verify_repeats} must be >= 1, e.g. 3")
        if self.profile_repeats < 1 or self.profile_warmup < 0:
            raise ConfigError("profile repeats must be >= 1 and warm-up passes >= 0")
        if self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)

    @property
    def link_bandwidth_bytes_per_s(self) -> float:
        return self.link_bandwidth_gbps * 1e9 / 8

    @property
    def link_latency_s(self) -> float:
        return self.link_latency_us * 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "batch_size": self.batch_size,
            "cores": self.cores,
            "nodes": self.nodes,
            "link_bandwidth_gbps": self.link_bandwidth_gbps,
            "link_latency_us": self.link_latency_us,
            "verify": self.verify,
            "data": self.data,
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "verify_seconds": self.verify_seconds,
            "verify_repeats": self.verify_repeats,
        }
