"""The reference trainer's parameters after a few steps: what every pipeline test compares
its engine with (imported by the tests as ``pipeline_reference``)."""

from __future__ import annotations

import torch

from parnn.train import OptimizerConfig, TrainConfig
from parnn.train import train as reference_train
from parnn.train.setup import setup_training


def reference_state(
    model: str, input_shape: tuple[int, ...] | None, batch_size: int, steps: int
) -> dict[str, torch.Tensor]:
    """``model``'s parameters after ``steps`` steps of the reference trainer on the digits
    (seed 0, Adam lr 0.003, a constant LR, one thread, whole batches only)."""
    setup = setup_training(model, "digits", input_shape=input_shape, seed=0)
    config = TrainConfig(
        batch_size=batch_size,
        steps=steps,
        optimizer=OptimizerConfig(name="adam", lr=0.003),
        lr_schedule="constant",
        seed=0,
        threads=1,
        drop_last=True,
    )
    reference_train(setup.model, setup.train_data, setup.val_data, config, quiet=True)
    return {k: v.detach().clone() for k, v in setup.model.state_dict().items()}
