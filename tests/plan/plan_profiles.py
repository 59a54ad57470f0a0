"""Hand-made profiles and machine models for the planner tests, so that every prediction
is known in advance (imported by the tests as ``plan_profiles``)."""

from __future__ import annotations

from pathlib import Path

from parnn.partition.comm import CommModel
from parnn.partition.measure.cache import comm_file_name, profile_file_name
from parnn.partition.profile import ModelProfile, UnitProfile
from parnn.plan.machine import MachineModel, machine_file_name
from parnn.results import write_json

LENET5 = (1, 28, 28)
UNIT_WEIGHTS = (1.0, 1.0, 1.0, 3.0, 1.0)  # unit 3 is three times heavier
UNIT_PARAMETERS = (100, 200, 300, 400, 500)
COMM = CommModel(latency_s=1e-4, bandwidth_bytes_per_s=1e9)
ALLREDUCE = CommModel(latency_s=1e-3, bandwidth_bytes_per_s=1e8, backend="gloo all-reduce")


def unit_seconds(batch_size: int, threads: int) -> float:
    """Forward seconds of a weight-1 unit: 0.1 ms per call + 0.1 ms per sample; the per-sample
    part halves with two threads (and so on: perfectly parallel)."""
    return 1e-4 + 1e-4 * batch_size / threads


def handmade_profile(batch_size: int, threads: int, *, model: str = "lenet5") -> ModelProfile:
    """Five units; backward = 2 x forward; update 0.01 ms per unit; 1 KB per sample out."""
    base = unit_seconds(batch_size, threads)
    units = tuple(
        UnitProfile(
            name=f"u{i}",
            forward_s=w * base,
            backward_s=2 * w * base,
            update_s=1e-5,
            activation_bytes=1000 * batch_size,
            saved_bytes=100 * batch_size,
            num_parameters=UNIT_PARAMETERS[i],
            parameter_bytes=4 * UNIT_PARAMETERS[i],
        )
        for i, w in enumerate(UNIT_WEIGHTS)
    )
    return ModelProfile(
        model=model, input_shape=LENET5, batch_size=batch_size, units=units, threads=threads
    )


def handmade_machine(cores: int) -> MachineModel:
    return MachineModel(cores=cores, contention={2: 1.25}, allreduce=ALLREDUCE)


def write_cache(directory: Path, *, machine_cores: int, batch_size: int) -> Path:
    """A cache dir holding the hand-made lenet5 profiles (micro-batches 1..batch, threads 1,
    2, 4), the comm model and the machine model ``make_plan`` looks for."""
    directory.mkdir(parents=True, exist_ok=True)
    for size in range(1, batch_size + 1):
        for threads in (1, 2, 4):
            profile = handmade_profile(size, threads)
            name = profile_file_name("lenet5", LENET5, batch_size=size, threads=threads)
            write_json(directory / name, profile.to_dict())
    for transport in ("gloo", "shm"):  # the planner prices pipelines on the local transport
        name = comm_file_name(backend="gloo", threads=1, transport=transport)
        write_json(directory / name, COMM.to_dict())
    machine_batch = max(1, batch_size // machine_cores)
    write_json(
        directory / machine_file_name("lenet5", LENET5, machine_batch),
        handmade_machine(machine_cores).to_dict(),
    )
    return directory
