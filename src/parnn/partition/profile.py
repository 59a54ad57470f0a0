"""The profile of a model: what each cuttable unit costs at one batch size.

Per unit: forward and backward time (medians of repeats after warm-up, seconds per call at
``batch_size``), the time of its optimizer update (SGD with momentum, once per step),
output activation bytes (what crosses a cut placed after the unit; the
gradient sent back is the same size), the bytes the unit keeps for its backward pass
(saved tensors, not parameters), parameter count and bytes. The profile is measured the
way a pipeline runs the units: a forward pass through all units, each unit fed a detached
copy of the previous output (a stage boundary anywhere), then the backward passes in
reverse, each fed the real gradient of its output and accumulating into the gradients
already there (as every micro-batch after a step's first does). The last unit includes the
loss (cross-entropy), as the last stage does.

A profile is plain data (JSON via :meth:`ModelProfile.to_dict`), measured by
:mod:`parnn.partition.measure.profiler`; :mod:`parnn.partition.measure.cache` stores it
keyed by model, input shape, batch size, threads and torch version.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from parnn.errors import ConfigError
from parnn.partition.comm import CommModel

__all__ = ["PROFILE_FORMAT", "ModelProfile", "UnitProfile"]

PROFILE_FORMAT = 2  # bump when the JSON layout changes; older cache files are re-measured


def _torch_version() -> str:
    import torch  # the running torch: a profile made here is of it

    return str(torch.__version__)


@dataclass(frozen=True, slots=True)
class UnitProfile:
    """The measured cost of one cuttable unit at the profile's batch size."""

    name: str
    """The unit's name in the model (its child name in the nn.Sequential)."""
    forward_s: float
    """Median forward time, seconds per call (the last unit includes the loss)."""
    backward_s: float
    """Median backward time, seconds per call."""
    activation_bytes: int
    """Bytes of the unit's output: sent forward (and its gradient back) at a cut after it."""
    saved_bytes: int
    """Bytes the unit keeps between its forward and its backward (saved tensors)."""
    num_parameters: int
    """Parameter elements."""
    parameter_bytes: int
    """Parameter bytes (weights only)."""
    output_shape: tuple[int, ...] = ()
    """Shape of the output, batch dimension first."""
    update_s: float = 0.0
    """Median optimizer update (SGD with momentum) of the unit's parameters, seconds per step."""

    def __post_init__(self) -> None:
        if self.forward_s < 0 or self.backward_s < 0 or self.update_s < 0:
            raise ConfigError(f"unit {self.name!r}: times must be >= 0 seconds")
        if min(self.activation_bytes, self.saved_bytes, self.parameter_bytes) < 0:
            raise ConfigError(f"unit {self.name!r}: byte counts must be >= 0")

    @property
    def compute_s(self) -> float:
        """Forward plus backward seconds per call."""
        return self.forward_s + self.backward_s

    @property
    def backward_weight_s(self) -> float:
        """The weight-gradient part (W) of the backward, for the schedules that split it
        (zero-bubble, zbv, dualpipev); the input-gradient part (I) is the rest. The
        backward is measured whole, so this is a stated rule, not a measurement: half the
        backward of a unit with parameters (the zero-bubble paper's equal-halves
        assumption), none for a unit without (ReLU, pooling: nothing but I)."""
        return self.backward_s / 2 if self.num_parameters > 0 else 0.0

    @property
    def peak_memory_bytes(self) -> int:
        """Memory the unit holds at its peak with one batch in flight: weights, gradients,
        saved activations and its output (accounted from sizes, not sampled)."""
        return 2 * self.parameter_bytes + self.saved_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "forward_s": self.forward_s,
            "backward_s": self.backward_s,
            "update_s": self.update_s,
            "activation_bytes": self.activation_bytes,
            "saved_bytes": self.saved_bytes,
            "num_parameters": self.num_parameters,
            "parameter_bytes": self.parameter_bytes,
            "peak_memory_bytes": self.peak_memory_bytes,
            "output_shape": list(self.output_shape),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> UnitProfile:
        return cls(
            name=str(payload["name"]),
            forward_s=float(payload["forward_s"]),
            backward_s=float(payload["backward_s"]),
            activation_bytes=int(payload["activation_bytes"]),
            saved_bytes=int(payload.get("saved_bytes", 0)),
            num_parameters=int(payload.get("num_parameters", 0)),
            parameter_bytes=int(payload.get("parameter_bytes", 0)),
            output_shape=tuple(int(s) for s in payload.get("output_shape", ())),
            update_s=float(payload.get("update_s", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Every unit of a model profiled at one batch size, plus the communication model."""

    model: str
    """The model's name (zoo name, user spec, or a fingerprint for an unnamed module)."""
    input_shape: tuple[int, ...]
    """Input (C, H, W) without the batch dimension."""
    batch_size: int
    """The batch size the units were timed at (a pipeline's micro-batch size)."""
    units: tuple[UnitProfile, ...]
    """One entry per cuttable unit, in model order."""
    threads: int = 1
    """Intra-op threads while measuring."""
    torch_version: str = field(default_factory=lambda: _torch_version())
    """The torch that measured it."""
    comm: CommModel | None = None
    """Transfer cost between two processes; None: communication counts as free."""
    input_bytes: int = 0
    """Bytes of one input batch (what the first stage loads)."""
    warmup: int = 0
    """Untimed passes before the timed ones."""
    repeats: int = 0
    """Timed passes; times are their medians."""
    machine: dict[str, Any] = field(default_factory=dict, compare=False)
    """Facts of the machine that measured it (parnn.results.machine_facts)."""

    def __post_init__(self) -> None:
        if not self.units:
            raise ConfigError(f"profile of {self.model!r} has no units")
        if self.batch_size < 1:
            raise ConfigError(f"profile batch_size must be >= 1, got {self.batch_size}")
        names = [unit.name for unit in self.units]
        if len(set(names)) != len(names):
            raise ConfigError(f"profile of {self.model!r} repeats a unit name: {names}")

    @property
    def num_units(self) -> int:
        return len(self.units)

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(unit.name for unit in self.units)

    def array(self, attribute: str) -> np.ndarray:
        """One float64 value per unit, e.g. ``profile.array('forward_s')``."""
        return np.array([float(getattr(unit, attribute)) for unit in self.units])

    @property
    def forward_s(self) -> np.ndarray:
        return self.array("forward_s")

    @property
    def backward_s(self) -> np.ndarray:
        return self.array("backward_s")

    def with_comm(self, comm: CommModel | None) -> ModelProfile:
        """The same profile with another communication model (None: free transfers)."""
        return replace(self, comm=comm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "threads": self.threads,
            "torch_version": self.torch_version,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "input_bytes": self.input_bytes,
            "units": [unit.to_dict() for unit in self.units],
            "comm": None if self.comm is None else self.comm.to_dict(),
            "machine": dict(self.machine),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ModelProfile:
        comm = payload.get("comm")
        return cls(
            model=str(payload["model"]),
            input_shape=tuple(int(s) for s in payload["input_shape"]),
            batch_size=int(payload["batch_size"]),
            units=tuple(UnitProfile.from_dict(u) for u in payload["units"]),
            threads=int(payload.get("threads", 1)),
            torch_version=str(payload.get("torch_version", "")),
            comm=None if comm is None else CommModel.from_dict(comm),
            input_bytes=int(payload.get("input_bytes", 0)),
            warmup=int(payload.get("warmup", 0)),
            repeats=int(payload.get("repeats", 0)),
            machine=dict(payload.get("machine", {})),
        )
