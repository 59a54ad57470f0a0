"""On real MNIST (8k/2k split of the 10k test set), a pipeline run reaches the reference
trainer's validation accuracy (1 epoch, tolerance 0.5 points: the two runs differ only by
float rounding in micro-batch sums)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parnn.pipeline import PipelineConfig, run_pipeline
from parnn.train import OptimizerConfig, TrainConfig
from parnn.train import train as reference_train
from parnn.train.setup import setup_training


@pytest.mark.timeout(300)
def test_pipeline_reaches_the_reference_accuracy_on_real_mnist(mnist_dir: Path) -> None:
    optimizer = OptimizerConfig(name="adam", lr=0.003)
    config = PipelineConfig.of(
        model="lenet5",
        data="mnist",
        data_dir=mnist_dir,
        num_ranks=2,
        schedule="1f1b",
        num_microbatches=4,
        batch_size=64,
        epochs=1,
        optimizer=optimizer,
        partition="2,3",
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.val_accuracy is not None
    setup = setup_training("lenet5", "mnist", data_dir=mnist_dir, seed=0)
    assert (len(setup.train_data), len(setup.val_data)) == (8000, 2000)
    reference = reference_train(
        setup.model,
        setup.train_data,
        setup.val_data,
        TrainConfig(
            batch_size=64,
            epochs=1,
            optimizer=optimizer,
            lr_schedule="constant",
            seed=0,
            drop_last=True,
        ),
        quiet=True,
    )
    assert reference.final.accuracy > 0.9  # the run learned something real
    assert result.val_accuracy == pytest.approx(reference.final.accuracy, abs=0.005)
