"""Measure a model's profile: time every cuttable unit the way a pipeline runs it (see
:mod:`parnn.partition.profile` for what is measured; the values live there)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from parnn.errors import ConfigError, ModelError, ParnnError
from parnn.partition.profile import UnitProfile

__all__ = ["MAX_PASSES", "PROFILE_MIN_SECONDS", "make_batch", "measure_units"]

PROFILE_MIN_SECONDS = 0.2
"""The timed passes of a profile last at least this long together (see :func:`measure_units`)."""
MAX_PASSES = 200
"""The most timed passes a profile takes to reach its time floor."""


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _saved_bytes(unit: nn.Module, inputs: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the unit's backward, parameters excluded,
    each storage counted once."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in unit.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = unit(inputs)
    del output
    return sum(storages.values())


def measure_units(
    model: nn.Sequential,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    warmup: int = 2,
    repeats: int = 7,
    min_seconds: float = 0.0,
    on_pass: Callable[[], None] | None = None,
) -> tuple[UnitProfile, ...]:
    """Time every unit of ``model`` on ``inputs`` (B, ...) with loss on ``targets`` (B,).

    Runs ``warmup`` passes, then timed passes (forward through all units, then backward in
    reverse, then the updates) until there are ``repeats`` of them and they took
    ``min_seconds`` together (at most :data:`MAX_PASSES`); keeps each unit's median. Timed
    passes of a small model last milliseconds, so that a few of them fit inside one slow
    moment of the machine and the median would carry it; a time floor spreads them out.
    ``on_pass`` is called after each pass (a progress bar). The model is left in training
    mode with its gradients cleared.
    """
    if warmup < 0 or repeats < 1 or not min_seconds >= 0:
        raise ConfigError(
            f"need warmup >= 0, repeats >= 1 and min_seconds >= 0, got {warmup}, {repeats} "
            f"and {min_seconds}"
        )
    units: list[tuple[str, nn.Module]] = list(model.named_children())
    if not units:
        raise ModelError("the model has no units (children) to profile")
    try:
        return _measure(model, units, inputs, targets, warmup, repeats, min_seconds, on_pass)
    except ParnnError:
        raise
    except (RuntimeError, ValueError) as error:
        raise ModelError(
            f"the model cannot train on a batch of {inputs.shape[0]} at input shape "
            f"{tuple(inputs.shape[1:])}: {' '.join(str(error).split())}; use a larger "
            "(micro-)batch or another input shape"
        ) from error


def _measure(
    model: nn.Sequential,
    units: list[tuple[str, nn.Module]],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    warmup: int,
    repeats: int,
    min_seconds: float,
    on_pass: Callable[[], None] | None,
) -> tuple[UnitProfile, ...]:
    criterion = nn.CrossEntropyLoss()
    model.train()
    num_units = len(units)
    forward_times: list[list[float]] = [[] for _ in units]
    backward_times: list[list[float]] = [[] for _ in units]
    update_times: list[list[float]] = [[] for _ in units]
    # lr 0: the update does all its work but leaves the weights (and the timings) alone.
    optimizers = [
        torch.optim.SGD(params, lr=0.0, momentum=0.9) if params else None
        for params in ([p for p in unit.parameters() if p.requires_grad] for _, unit in units)
    ]
    model.zero_grad(set_to_none=True)
    activation_bytes = [0] * num_units
    output_shapes: list[tuple[int, ...]] = [()] * num_units
    saved = [0] * num_units
    timed_s = 0.0
    pass_index = -1
    while True:
        pass_index += 1
        timed_passes = pass_index - warmup
        if timed_passes >= repeats and (timed_passes >= MAX_PASSES or timed_s >= min_seconds):
            break
        pass_started = time.perf_counter()
        stage_inputs: list[torch.Tensor] = []
        stage_outputs: list[torch.Tensor] = []
        hidden = inputs
        timed = pass_index >= warmup
        for index, (_, unit) in enumerate(units):
            # Every unit starts a stage: a detached input, with a gradient after unit 0.
            unit_input = hidden.detach().requires_grad_(index > 0)
            if pass_index == 0:
                saved[index] = _saved_bytes(unit, unit_input)
            start = time.perf_counter()
            output = unit(unit_input)
            if index == num_units - 1:
                logits = output
                output = criterion(logits, targets)
            elapsed = time.perf_counter() - start
            if timed:
                forward_times[index].append(elapsed)
            if index == num_units - 1:
                activation_bytes[index] = _nbytes(logits)
                output_shapes[index] = tuple(logits.shape)
                hidden = logits
            else:
                activation_bytes[index] = _nbytes(output)
                output_shapes[index] = tuple(output.shape)
                hidden = output
            stage_inputs.append(unit_input)
            stage_outputs.append(output)
        gradient: torch.Tensor | None = None
        for index in reversed(range(num_units)):
            output = stage_outputs[index]
            start = time.perf_counter()
            if output.requires_grad:  # a parameter-free first unit has nothing to do
                output.backward(gradient)
            elapsed = time.perf_counter() - start
            if timed:
                backward_times[index].append(elapsed)
            gradient = stage_inputs[index].grad
        del stage_inputs, stage_outputs, hidden
        for index, optimizer in enumerate(optimizers):
            start = time.perf_counter()
            if optimizer is not None:
                optimizer.step()
            if timed:
                update_times[index].append(time.perf_counter() - start)
        if timed:
            timed_s += time.perf_counter() - pass_started
        if on_pass is not None:
            on_pass()
    model.zero_grad(set_to_none=True)
    profiles = []
    for index, (name, unit) in enumerate(units):
        parameters = [p for p in unit.parameters() if p.requires_grad]
        profiles.append(
            UnitProfile(
                name=name,
                forward_s=statistics.median(forward_times[index]),
                backward_s=statistics.median(backward_times[index]),
                activation_bytes=activation_bytes[index],
                saved_bytes=saved[index],
                num_parameters=sum(p.numel() for p in parameters),
                parameter_bytes=sum(_nbytes(p) for p in parameters),
                output_shape=output_shapes[index],
                update_s=statistics.median(update_times[index]),
            )
        )
    return tuple(profiles)


def make_batch(
    input_shape: Sequence[int], batch_size: int, num_classes: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic random batch: inputs (B, *input_shape) float32, targets (B,) int64."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch_size, *input_shape), generator=generator)  # (B, C, H, W)
    targets = torch.randint(0, max(num_classes, 1), (batch_size,), generator=generator)
    return inputs, targets
