"""Hand-made profiles for the partition tests: costs chosen so that the right partition is
known in advance (imported by the tests as ``partition_profiles``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from parnn.partition.comm import CommModel
from parnn.partition.profile import ModelProfile, UnitProfile

MakeProfile = Callable[..., ModelProfile]


def make_profile(
    forward_s: Sequence[float],
    backward_s: Sequence[float] | None = None,
    *,
    activation_bytes: Sequence[int] | None = None,
    saved_bytes: Sequence[int] | None = None,
    num_parameters: Sequence[int] | None = None,
    comm: CommModel | None = None,
    batch_size: int = 8,
    model: str = "handmade",
) -> ModelProfile:
    """A profile of ``len(forward_s)`` units named u0, u1, ... (float32 parameters)."""
    n = len(forward_s)
    backward = backward_s if backward_s is not None else [2 * f for f in forward_s]
    activations = activation_bytes if activation_bytes is not None else [1000] * n
    saved = saved_bytes if saved_bytes is not None else [0] * n
    params = num_parameters if num_parameters is not None else [0] * n
    units = tuple(
        UnitProfile(
            name=f"u{i}",
            forward_s=float(forward_s[i]),
            backward_s=float(backward[i]),
            activation_bytes=int(activations[i]),
            saved_bytes=int(saved[i]),
            num_parameters=int(params[i]),
            parameter_bytes=4 * int(params[i]),
        )
        for i in range(n)
    )
    return ModelProfile(
        model=model, input_shape=(1, 8, 8), batch_size=batch_size, units=units, comm=comm
    )
