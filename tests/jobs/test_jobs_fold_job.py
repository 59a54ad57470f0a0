"""One job is the reference trainer on one fold: the same parameters as parnn.train.train,
and a job resumed from its checkpoint ends exactly where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kfold_test_models import TinyNet, build_dropout

from parnn.data import ArrayDataset, kfold_splits, load_dataset
from parnn.jobs.fold_job import FoldContext, OptimizerFactory, build_job_model, train_fold
from parnn.jobs.spec import JobSpec, job_seed
from parnn.models import build_model
from parnn.train import OptimizerConfig, TrainConfig, make_criterion, train

SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    return load_dataset("digits", input_shape=SHAPE, num_samples=300)


def _context(data: ArrayDataset, directory: Path, models: dict, **changes: object) -> FoldContext:
    fields: dict = {
        "inputs": data.inputs,
        "targets": data.targets,
        "num_classes": data.num_classes,
        "splits": kfold_splits(len(data), 3, seed=0),
        "models": models,
        "get_optimizer": OptimizerFactory(OptimizerConfig(name="adam", lr=0.003)),
        "criterion": make_criterion(),
        "batch_size": 32,
        "warmup_steps": None,
        "save_checkpoint_frequency": None,
        "print_frequency": 5,
        "checkpoint_dir": str(directory),
    }
    fields.update(changes)
    return FoldContext(**fields)


def _job(model: str, scheduler: str, fold: int, steps: int) -> JobSpec:
    return JobSpec(
        model=model,
        lr_schedule=scheduler,
        fold=fold,
        seed=job_seed(0, model, fold),
        total_steps=steps,
        cost_s=0.0,
    )


def test_a_job_gives_the_reference_trainers_parameters(data: ArrayDataset, tmp_path: Path) -> None:
    context = _context(data, tmp_path, {"lenet5": "lenet5"})
    job = _job("lenet5", "warm", 1, 20)  # 200 train samples / 32: crosses two epochs
    model, numbers = train_fold(context, job)

    train_index, val_index = context.splits[1]
    torch.manual_seed(job.seed)
    reference = build_model("lenet5", input_shape=SHAPE, num_classes=10)
    config = TrainConfig(
        steps=20,
        batch_size=32,
        optimizer=OptimizerConfig(name="adam", lr=0.003),
        lr_schedule="warm",
        seed=job.seed,
    )
    result = train(reference, data.subset(train_index), data.subset(val_index), config, quiet=True)

    for (name, ours), theirs in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)
    assert result.final is not None
    assert numbers["accuracy"] == result.final.accuracy
    assert numbers["loss"] == result.final.loss
    assert numbers["steps"] == 20 and numbers["resumed_from_step"] == 0
    assert numbers["num_train"] + numbers["num_val"] == 300
    assert numbers["loss_history"][-1][0] == 20


class _Stop(Exception):
    pass


def _stop_at(step: int):  # noqa: ANN202 - a progress callback
    def on_progress(done: int, total: int, loss: float | None) -> None:
        if done >= step:
            raise _Stop

    return on_progress


def test_a_resumed_job_ends_where_an_uninterrupted_one_does(
    data: ArrayDataset, tmp_path: Path
) -> None:
    spec = str(Path(__file__).with_name("kfold_test_models.py")) + ":build_dropout"
    models = {"drop": spec}
    job = _job("drop", "cosine", 0, 23)
    straight, expected = train_fold(_context(data, tmp_path / "a", models), job)

    context = _context(data, tmp_path / "b", models, save_checkpoint_frequency=4)
    with pytest.raises(_Stop):
        train_fold(context, job, _stop_at(10))  # dies at step 10; last checkpoint: step 8
    assert (tmp_path / "b" / f"{job.file_stem}.pt").exists()
    resumed, numbers = train_fold(context, job)

    assert numbers["resumed_from_step"] == 8
    for ours, theirs in zip(
        resumed.state_dict().values(), straight.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for key in ("accuracy", "loss", "train_loss", "loss_history", "steps", "samples"):
        assert numbers[key] == expected[key], key


def test_checkpoints_by_time_resume_exactly_and_are_rate_limited(
    data: ArrayDataset, tmp_path: Path
) -> None:
    spec = str(Path(__file__).with_name("kfold_test_models.py")) + ":build_dropout"
    models = {"drop": spec}
    job = _job("drop", "cosine", 0, 23)
    straight, expected = train_fold(_context(data, tmp_path / "a", models), job)

    # An interval shorter than any step: a checkpoint after every step.
    context = _context(data, tmp_path / "b", models, checkpoint_interval_s=1e-9)
    with pytest.raises(_Stop):
        train_fold(context, job, _stop_at(10))  # dies at step 10, before its checkpoint
    resumed, numbers = train_fold(context, job)
    assert numbers["resumed_from_step"] == 9
    for ours, theirs in zip(
        resumed.state_dict().values(), straight.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for key in ("accuracy", "loss", "train_loss", "loss_history", "steps", "samples"):
        assert numbers[key] == expected[key], key

    # An interval longer than the job: none is written.
    context = _context(data, tmp_path / "c", models, checkpoint_interval_s=1e6)
    with pytest.raises(_Stop):
        train_fold(context, job, _stop_at(10))
    assert not (tmp_path / "c" / f"{job.file_stem}.pt").exists()


def test_an_unusable_checkpoint_restarts_the_job_from_scratch(
    data: ArrayDataset, tmp_path: Path
) -> None:
    context = _context(data, tmp_path, {"mlp": "mlp"}, save_checkpoint_frequency=3)
    job = _job("mlp", "constant", 2, 6)
    (tmp_path / f"{job.file_stem}.pt").write_bytes(b"not a checkpoint")
    _, numbers = train_fold(context, job)
    _, fresh = train_fold(_context(data, tmp_path / "fresh", {"mlp": "mlp"}), job)
    assert numbers["resumed_from_step"] == 0
    assert numbers["warnings"] and "unusable checkpoint" in numbers["warnings"][0]
    assert numbers["accuracy"] == fresh["accuracy"] and numbers["loss"] == fresh["loss"]


def test_model_factories_get_the_shape_when_they_take_it() -> None:
    model = build_job_model(build_dropout, SHAPE, 10)
    assert model(torch.zeros(2, *SHAPE)).shape == (2, 10)
    assert isinstance(build_job_model(TinyNet, SHAPE, 10), TinyNet)
