"""LeNet-5 on the bundled digits reaches 95% validation accuracy within 5 epochs."""

from __future__ import annotations

import pytest

from parnn.cli.train import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_SCHEDULE,
)
from parnn.train import OptimizerConfig, TrainConfig, evaluate, train
from parnn.train.setup import setup_training


@pytest.mark.timeout(120)
def test_lenet5_on_digits_reaches_95_percent_within_5_epochs() -> None:
    setup = setup_training("lenet5", "digits", seed=0)
    assert setup.input_shape == (1, 28, 28)
    assert (len(setup.train_data), len(setup.val_data)) == (1438, 359)
    before = evaluate(setup.model, setup.val_data)
    config = TrainConfig(
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        optimizer=OptimizerConfig(name=DEFAULT_OPTIMIZER, lr=DEFAULT_LR[DEFAULT_OPTIMIZER]),
        lr_schedule=DEFAULT_SCHEDULE,
        seed=0,
        threads=1,
    )
    assert DEFAULT_EPOCHS <= 5
    result = train(setup.model, setup.train_data, setup.val_data, config, quiet=True)
    assert before.accuracy < 0.2  # an untrained net guesses
    assert result.final is not None
    assert result.final.accuracy >= 0.95, [r.val for r in result.history]
    assert len(result.history) == DEFAULT_EPOCHS
    assert all(a is not None and a > 0.8 for a in result.final.per_class_accuracy)
