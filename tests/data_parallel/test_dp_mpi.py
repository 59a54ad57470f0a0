"""The mpi engine (mpi4py + an MPI runtime, the optional extra): weight averaging over MPI
gives the same parameters as over torch.distributed, a failed rank is named, and ranks
started ahead of their job (``parnn dp``) are stopped when the command fails first."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import torch

from parnn.data import load_dataset
from parnn.data_parallel import DataParallelConfig, FailurePlan, run_data_parallel
from parnn.data_parallel.mpi import MpiRanks, mpi_available
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


# ``parnn dp`` over MPI starts mpiexec before it imports torch and loads the data; the ranks
# import torch and the engine meanwhile and wait for their job.
_EARLY_START = """
import json, sys
from parnn.data_parallel import mpi

started = []
original = mpi.MpiRanks.start.__func__

def start(cls, config):
    started.append("torch" in sys.modules)
    return original(cls, config)

mpi.MpiRanks.start = classmethod(start)
from parnn.cli import main

try:
    main(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
sys.stderr.write(json.dumps({"torch_before_start": started}))
"""


@pytest.mark.timeout(120)
def test_dp_starts_its_mpi_ranks_before_importing_torch() -> None:
    command = [
        sys.executable, "-c", _EARLY_START, "dp", "--engine", "ddp", "--transport", "mpi",
        "--ranks", "2", "--steps", "3", "--num-samples", "200", "--batch-size", "32",
        "--json", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["transport"] == "mpi" and run["steps"] == 3
    assert run["startup_s"] > 0
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"torch_before_start": [False]}


@pytest.mark.timeout(60)
def test_mpi_ranks_that_never_get_a_job_are_stopped() -> None:
    """A command that fails after starting its ranks (bad data, say) stops them and
    removes the job's directory."""
    with pytest.raises(ConfigError, match="no data"), MpiRanks(2, preload=["json"]) as ranks:
        directory = ranks.directory
        deadline = time.monotonic() + 30
        while len(_ranks_of(directory)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_ranks_of(directory)) >= 2  # up (with their supervisors), no job yet
        raise ConfigError("no data")
    assert not directory.exists()
    assert leftover_processes() == []


def _ranks_of(directory: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.Process().children(recursive=True)
        if str(directory) in " ".join(process.cmdline())
        and "parnn.data_parallel.mpi_rank" in process.cmdline()
    ]


@pytest.mark.timeout(120)
def test_cli_error_after_the_ranks_started_leaves_nothing(tmp_path: Path) -> None:
    """The batch size is checked against the data, which loads after mpiexec started."""
    command = [
        sys.executable, "-m", "parnn.cli", "dp", "--transport", "mpi", "--ranks", "2",
        "--num-samples", "100", "--batch-size", "5000", "--steps", "2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=110)
    assert process.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("parnn: error: --batch-size 5000")
    job_directory = f"{tempfile.gettempdir()}/parnn-mpi-{process.pid}-"
    assert not list(Path(tempfile.gettempdir()).glob(f"parnn-mpi-{process.pid}-*"))
    left = []
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if job_directory in " ".join(other.cmdline()):
                left.append(other)
    assert left == []  # the ranks' command lines name the job's directory
