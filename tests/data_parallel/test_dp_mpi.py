"""The mpi engine (mpi4py + an MPI runtime, the optional extra): weight averaging over MPI
gives the same parameters as over torch.distributed, and a failed rank is named."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from parnn.data import load_dataset
from parnn.data_parallel import DataParallelConfig, FailurePlan, run_data_parallel
from parnn.data_parallel.mpi import mpi_available
from parnn.errors import ConfigError, RankFailedError
from parnn.launch import leftover_processes
from parnn.models import build_model
from parnn.train import OptimizerConfig


def _mpi_ready() -> str | None:
    if not mpi_available():
        return "mpi4py is not installed (pip install 'parnn[mpi]' mpich)"
    from parnn.data_parallel.mpi import find_mpiexec

    try:
        find_mpiexec()
    except ConfigError:
        return "no mpiexec found (pip install mpich, or apt-get install openmpi-bin)"
    return None


pytestmark = pytest.mark.skipif(_mpi_ready() is not None, reason=str(_mpi_ready()))

OPTIMIZER = OptimizerConfig(name="sgd", lr=0.05, momentum=0.9)


def _setup() -> tuple[torch.nn.Module, object]:
    data = load_dataset("digits", input_shape=(1, 16, 16), num_samples=192)
    torch.manual_seed(0)
    model = build_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    return model, data


@pytest.mark.timeout(120)
def test_mpi_matches_local_sgd() -> None:
    model, data = _setup()
    results = {}
    for engine in ("local-sgd", "mpi"):
        trained = copy.deepcopy(model)
        config = DataParallelConfig.of(
            engine=engine, num_ranks=2, batch_size=32, steps=8, average_every=2,
            optimizer=OPTIMIZER, monitor_interval_s=0,
        )  # fmt: skip
        result = run_data_parallel(trained, data, None, config, quiet=True)  # type: ignore[arg-type]
        assert result is not None and result.steps == 8
        results[engine] = trained.state_dict()
    for name, value in results["mpi"].items():
        torch.testing.assert_close(value, results["local-sgd"][name], msg=name)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("rank", "kind", "expected"),
    [
        (1, "raise", "injected failure on rank 1 at step 2"),
        (1, "exit", "exited without raising (exit code 17"),
        (0, "exit", "exited without raising (exit code 17"),
    ],
)
def test_mpi_failed_rank_is_named(rank: int, kind: str, expected: str) -> None:
    """mpiexec kills the other ranks within a millisecond of a silent death; the rank
    named must still be the one that died first, whichever it is."""
    model, data = _setup()
    config = DataParallelConfig.of(
        engine="mpi", num_ranks=2, batch_size=32, epochs=200,
        fail_at=FailurePlan(rank=rank, step=2, kind=kind), failure_timeout_s=20,
    )  # fmt: skip
    start = time.monotonic()
    with pytest.raises(RankFailedError) as caught:
        run_data_parallel(model, data, None, config, quiet=True)  # type: ignore[arg-type]
    assert time.monotonic() - start < 30
    assert caught.value.rank == rank
    assert expected in str(caught.value)
    assert leftover_processes() == []
