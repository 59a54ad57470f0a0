"""AsyncKFold on real worker processes: parallel and serial give identical numbers per job,
jobs start longest first, failed jobs are recorded while the others finish."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from parnn.bench.kfold_plots import save_kfold_plots
from parnn.data import ArrayDataset, load_dataset
from parnn.errors import ConfigError, ModelError
from parnn.jobs import AsyncKFold
from parnn.launch import leftover_processes

MODELS_FILE = Path(__file__).with_name("kfold_test_models.py")


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    return load_dataset("digits", input_shape=(1, 16, 16), num_samples=400)


@pytest.mark.timeout(240)
def test_parallel_equals_serial_per_job_and_longest_jobs_start_first(
    data: ArrayDataset, tmp_path: Path
) -> None:
    kfold = AsyncKFold(
        2,
        data,
        tmp_path,
        None,
        32,
        compare_serial=True,
        quiet=True,
        workers=2,
        cost_method="params",
    )
    params = {"steps": 12, "save_checkpoint_frequency": 5, "print_frequency": 4}
    results = kfold(["lenet5", "mlp"], ["cosine", "warm"], None, params)

    parallel = {job.job_id: job for job in results.jobs_of("parallel")}
    serial = {job.job_id: job for job in results.jobs_of("serial")}
    assert len(parallel) == len(serial) == 8
    for job_id, job in parallel.items():
        twin = serial[job_id]
        assert job.ok and twin.ok, (job.error, twin.error)
        assert job.accuracy == twin.accuracy, job_id
        assert job.loss == twin.loss, job_id
        assert job.loss_history == twin.loss_history, job_id
        assert job.steps == 12 and job.resumed_from_step == 0
    assert all(row["identical"] for row in results.summary())
    assert {job.worker for job in parallel.values()} == {0, 1}

    # The serial run is one worker taking the jobs in order: costs never increase.
    by_start = sorted(serial.values(), key=lambda job: job.start_s)
    costs = [job.cost_s for job in by_start]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]

    timing = results.timing()
    assert timing["speedup"] is not None
    assert timing["parallel"]["workers"] == 2 and timing["serial"]["workers"] == 1
    save_kfold_plots(results)  # the plots are drawn above the engine, from its results
    for kind in ("results_json", "results_csv", "cpu_plot", "timeline_plot"):
        assert Path(results.files[kind]).stat().st_size > 0
    with open(results.files["results_csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and {row["status"] for row in rows} == {"ok"}
    assert not list((tmp_path / "checkpoints").rglob("*.pt"))  # finished jobs leave none
    assert "| lenet5 | cosine |" in results.table()
    assert leftover_processes() == []


@pytest.mark.timeout(180)
def test_failed_jobs_are_recorded_and_the_others_finish(data: ArrayDataset, tmp_path: Path) -> None:
    broken = f"{MODELS_FILE}:build_broken"
    killer = f"{MODELS_FILE}:build_killer"
    kfold = AsyncKFold(2, data, tmp_path, None, 32, quiet=True, workers=2, cost_method="params")
    results = kfold(["mlp", broken, killer], ["constant"], None, {"steps": 4})

    by_model: dict[str, list] = {}
    for job in results.jobs:
        by_model.setdefault(job.model, []).append(job)
    assert [job.ok for job in by_model["mlp"]] == [True, True]
    assert {job.error for job in by_model[broken]} == {"RuntimeError: broken on purpose"}
    assert all("WorkerDied" in (job.error or "") for job in by_model[killer])
    assert all("SIGKILL" in (job.error or "") for job in by_model[killer])
    assert len(results.failed) == 4
    summary = {row["model"]: row["parallel"] for row in results.summary()}
    assert summary["mlp"]["folds_ok"] == 2
    assert summary[broken]["folds_failed"] == 2 and summary[broken]["mean_accuracy"] is None
    assert leftover_processes() == []


def test_bad_arguments_are_one_line_errors(data: ArrayDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="k >= 2"):
        AsyncKFold(1, data, tmp_path, None, 32)
    with pytest.raises(ConfigError, match=r"k <= the number of samples \(400\)"):
        AsyncKFold(401, data, tmp_path, None, 32)
    kfold = AsyncKFold(2, data, tmp_path / "run", None, 32, quiet=True)
    with pytest.raises(ConfigError, match="unknown LR schedule 'sometimes'"):
        kfold(["mlp"], ["cosine", "sometimes"])
    with pytest.raises(ModelError, match="unknown model 'resnet7'"):
        kfold(["resnet7"], ["cosine"])
    with pytest.raises(ConfigError, match="unknown trainer_params epoch"):
        kfold(["mlp"], ["cosine"], None, {"epoch": 1})
    with pytest.raises(ConfigError, match="cannot be sent to the worker processes"):
        kfold(["mlp"], ["cosine"], lambda model: None)
    with pytest.raises(ConfigError, match="unknown AsyncKFold option"):
        AsyncKFold(2, data, tmp_path, None, 32, wokers=2)
    assert not (tmp_path / "run").exists()  # nothing was written


def test_kfold_config_nests_the_shared_settings() -> None:
    from parnn.jobs.config import KFoldConfig
    from parnn.train import OptimizerConfig, TrainConfig

    config = KFoldConfig.of(folds=3, batch_size=16, steps=4, threads=2, seed=5)
    assert (config.folds, config.threads) == (3, 2)
    assert (config.train.batch_size, config.train.steps, config.train.seed) == (16, 4, 5)
    assert config.train.optimizer == OptimizerConfig(name="adam", lr=0.003)  # jobs' default
    # AsyncKFold's trainer_params change a copy, shared and own settings alike
    changed = config.replace(epochs=1, steps=None, print_frequency=5)
    assert (changed.train.epochs, changed.train.steps, changed.print_frequency) == (1, None, 5)
    assert config.train.steps == 4
    shared = KFoldConfig(folds=2, train=TrainConfig(batch_size=8, threads=None))
    assert shared.threads == 1
    with pytest.raises(ConfigError, match="batch size 0 must be > 0"):
        KFoldConfig.of(batch_size=0)
