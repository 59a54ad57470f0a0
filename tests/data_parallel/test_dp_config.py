"""Data-parallel settings, data sharding and log merging: pure code, no process started."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from parnn.bench.studies.compare import comparison_configs, parse_compare_list
from parnn.cli import cli
from parnn.data_parallel import mpi as mpi_module
from parnn.data_parallel.config import DataParallelConfig, FailurePlan
from parnn.data_parallel.loop import StepLog
from parnn.data_parallel.result import merge_logs
from parnn.data_parallel.shards import check_num_samples, rank_shards, total_steps
from parnn.errors import ConfigError
from parnn.train import OptimizerConfig, TrainConfig, batch_indices


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"engine": "nope"}, "unknown engine 'nope'"),
        ({"num_ranks": 4, "batch_size": 2}, "more ranks (4) than samples per batch (2)"),
        ({"num_ranks": 3, "batch_size": 64}, "global batch 64 is not divisible by 3"),
        ({"num_ranks": 0}, "num ranks 0 must be >= 1"),
        ({"engine": "serial", "num_ranks": 2}, "engine serial runs one process"),
        ({"batch_size": 8, "accumulate_steps": 5}, "5 accumulation steps exceed the 4 samples"),
        ({"engine": "local-sgd", "average_every": 0}, "average-every 0 must be >= 1"),
        ({"lr_schedule": "linear"}, "unknown LR schedule 'linear'"),
        ({"fail_at": FailurePlan(rank=2)}, "failure plan rank 2 is out of range"),
    ],
)
def test_bad_settings_are_one_line_errors(settings: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DataParallelConfig.of(**settings)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_per_process_batch_lifts_divisibility() -> None:
    config = DataParallelConfig.of(num_ranks=3, batch_size=10, per_process_batch=True)
    assert (config.rank_batch_size, config.round_size) == (10, 30)
    hogwild = DataParallelConfig.of(engine="hogwild", num_ranks=3, batch_size=10)
    assert (hogwild.rank_batch_size, hogwild.round_size) == (10, 30)


def test_average_every_is_ignored_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="average_every is ignored by engine .ddp."):
        DataParallelConfig.of(engine="ddp", average_every=4)


def test_more_processes_than_samples() -> None:
    with pytest.raises(ConfigError, match="3 training samples cannot feed 4 processes"):
        check_num_samples(3, DataParallelConfig.of(num_ranks=4, batch_size=4))


@pytest.mark.parametrize(("num_samples", "num_processes"), [(199, 2), (193, 2), (100, 3)])
def test_shards_partition_the_reference_batches(num_samples: int, num_processes: int) -> None:
    batch = 30 if num_processes == 3 else 32
    config = DataParallelConfig.of(num_ranks=num_processes, batch_size=batch, epochs=2)
    per_rank = [list(rank_shards(num_samples, config, rank)) for rank in range(num_processes)]
    assert all(len(shards) == total_steps(num_samples, config) for shards in per_rank)
    reference = [
        batch_indices(num_samples, batch, seed=0, epoch=epoch) for epoch in range(2)
    ]  # what the reference trainer takes
    flat_reference = [indices for epoch in reference for indices in epoch]
    for step, expected in enumerate(flat_reference):
        parts = [per_rank[rank][step].indices for rank in range(num_processes)]
        torch.testing.assert_close(torch.cat(parts), expected)
        sizes = [int(part.numel()) for part in parts]
        assert max(sizes) - min(sizes) <= 1


def test_merge_synchronous_and_asynchronous_logs() -> None:
    rank0 = StepLog(rank=0, start_s=10.0, end_s=12.0)
    rank1 = StepLog(rank=1, start_s=10.5, end_s=12.5)
    rank0.record(11.0, loss_sum=4.0, samples=2)
    rank1.record(11.2, loss_sum=2.0, samples=2)
    rank0.record(12.0, loss_sum=2.0, samples=2)
    rank1.record(12.5, loss_sum=0.0, samples=1)
    curve, start, end = merge_logs([rank0, rank1], synchronous=True)
    assert (start, end) == (10.0, 12.5)
    assert curve.samples == [4, 7]
    assert curve.loss == pytest.approx([1.5, 2.0 / 3.0])
    assert curve.time_s == pytest.approx([1.2, 2.5])
    curve, _, _ = merge_logs([rank0, rank1], synchronous=False)
    assert curve.samples == [2, 4, 6, 7]
    assert curve.loss == pytest.approx([2.0, 1.0, 1.0, 0.0])


def test_shared_settings_nest_in_one_train_config() -> None:
    config = DataParallelConfig.of(engine="hogwild", num_ranks=2, batch_size=16, steps=5)
    assert (config.train.batch_size, config.train.steps, config.threads) == (16, 5, 1)
    assert config.train.lr_schedule == "cosine"  # the data-parallel default
    assert config.train.optimizer == OptimizerConfig(name="sgd", lr=0.05, momentum=0.7)
    # a copy for another engine takes that engine's default optimizer ...
    assert config.replace(engine="ddp").train.optimizer.momentum == 0.9
    # ... but a given optimizer, or the reference trainer's own TrainConfig, is kept
    adam = OptimizerConfig(name="adam", lr=0.003)
    assert (
        DataParallelConfig.of(engine="hogwild", optimizer=adam)
        .replace(engine="ddp")
        .train.optimizer
        == adam
    )
    reference = TrainConfig(steps=3, batch_size=8, optimizer=adam, threads=1)
    shared = DataParallelConfig(engine="ddp", train=reference)
    assert shared.train is reference
    payload = shared.to_dict()
    assert payload["train"] == reference.to_dict() and "batch_size" not in payload
    assert payload["global_batch_size"] == 8
    with pytest.raises(ConfigError, match="batch size 0 must be > 0"):
        DataParallelConfig.of(batch_size=0)


def test_compare_list() -> None:
    assert parse_compare_list("ddp,hogwild") == ["serial", "serial-threads", "ddp", "hogwild"]
    with pytest.raises(ConfigError, match="unknown turbo"):
        parse_compare_list("ddp,turbo")
    base = DataParallelConfig.of(num_ranks=2, batch_size=32)
    configs = comparison_configs(
        base, ["serial", "serial-threads", "local-sgd"], average_every=3, all_cores=2
    )
    assert [(c.engine, c.num_ranks, c.threads) for c in configs] == [
        ("serial", 1, 1),
        ("serial", 1, 2),
        ("local-sgd", 2, 1),
    ]
    assert configs[2].averaging_period == 3


def test_mpi_environment_detection() -> None:
    env = mpi_module.mpi_env({"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1"})
    assert env is not None and (env.rank, env.size, env.local_rank, env.local_size) == (1, 4, 1, 4)
    openmpi = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}
    assert mpi_module.mpi_env(openmpi) is not None
    assert mpi_module.mpi_env({}) is None


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


def test_cli_unknown_engine_is_one_line() -> None:
    code, _, stderr = _invoke(["dp", "--engine", "turbo", "--quiet"])
    assert code == 2
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "unknown engine 'turbo'" in stderr and "ddp" in stderr


def test_cli_indivisible_global_batch() -> None:
    code, _, stderr = _invoke(["dp", "--ranks", "3", "--batch-size", "32", "--quiet"])
    assert code == 2
    assert "global batch 32 is not divisible by 3 ranks" in stderr
    assert "--batch-size 30 or 33" in stderr


def test_cli_more_processes_than_batch() -> None:
    code, _, stderr = _invoke(["dp", "--ranks", "4", "--batch-size", "2", "--quiet"])
    assert code == 2 and "more ranks (4) than samples per batch (2)" in stderr


def test_cli_mpi_without_mpi4py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mpi_module, "mpi_available", lambda: False)
    code, _, stderr = _invoke(["dp", "--engine", "mpi", "--num-samples", "100", "--quiet"])
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "needs mpi4py" in stderr and "pip install 'parnn[mpi]'" in stderr


def test_cli_engine_and_compare_conflict() -> None:
    code, _, stderr = _invoke(["dp", "--engine", "ddp", "--compare", "ddp", "--json"])
    assert code == 2 and "either --engine" in stderr
