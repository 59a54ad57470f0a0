"""Hogwild on real MNIST (8,000 train / 2,000 validation) reaches the reference trainer's
validation accuracy, within one point, in the same number of epochs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from parnn.data_parallel import DataParallelConfig, run_data_parallel
from parnn.train import OptimizerConfig, TrainConfig, train
from parnn.train.setup import setup_training

# Momentum 0.5, not 0.9: asynchrony itself acts as momentum (about 1 - 1/N for N workers),
# and 0.9 on top makes Hogwild oscillate at this learning rate (see docs/data-parallel.md).
OPTIMIZER = OptimizerConfig(name="sgd", lr=0.02, momentum=0.5)
EPOCHS = 2
BATCH = 32
TOLERANCE = 0.01  # one accuracy point


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_hogwild_reaches_reference_accuracy(mnist_dir: Path) -> None:
    setup = setup_training("lenet5", "mnist", data_dir=mnist_dir, seed=0)
    assert (len(setup.train_data), len(setup.val_data)) == (8000, 2000)
    reference = copy.deepcopy(setup.model)
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, optimizer=OPTIMIZER, threads=1)
    expected = train(reference, setup.train_data, setup.val_data, config, quiet=True).final
    assert expected is not None

    hogwild = copy.deepcopy(setup.model)
    result = run_data_parallel(
        hogwild,
        setup.train_data,
        setup.val_data,
        DataParallelConfig.of(
            engine="hogwild",
            num_ranks=2,
            batch_size=BATCH,
            epochs=EPOCHS,
            optimizer=OPTIMIZER,
            lr_schedule=config.lr_schedule,  # the reference's LR schedule (dp's default differs)
        ),
        quiet=True,
    )
    assert result is not None and result.val is not None
    # both workers updated the one shared model: as many updates as the reference's steps
    assert [rank["steps"] for rank in result.ranks] == [250, 250]
    assert result.updates == EPOCHS * 250 and result.samples == EPOCHS * 8000
    assert result.val.accuracy >= expected.accuracy - TOLERANCE, (
        f"hogwild {result.val.accuracy:.4f} vs reference {expected.accuracy:.4f}"
    )
    assert result.val.accuracy > 0.9
