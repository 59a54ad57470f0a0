"""The reference pieces: data order, optimizers, one step, evaluation, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from parnn.errors import ConfigError
from parnn.train import (
    OptimizerConfig,
    TrainConfig,
    batch_indices,
    epoch_order,
    evaluate,
    make_criterion,
    make_optimizer,
    train,
    train_step,
)


def tiny_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def tiny_data(num_samples: int = 200) -> TensorDataset:
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(num_samples, 1, 4, 4, generator=generator)
    targets = inputs.flatten(1)[:, :4].argmax(dim=1)  # a learnable rule
    return TensorDataset(inputs, targets)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch() -> None:
    order = epoch_order(100, seed=3, epoch=2)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.equal(order, epoch_order(100, seed=3, epoch=2))
    assert not torch.equal(order, epoch_order(100, seed=3, epoch=1))
    assert not torch.equal(order, epoch_order(100, seed=4, epoch=2))


def test_epoch_order_leaves_the_global_rng_alone() -> None:
    before = torch.get_rng_state()
    epoch_order(50, seed=0, epoch=0)
    assert torch.equal(before, torch.get_rng_state())


def test_batch_indices_cover_the_epoch_once() -> None:
    batches = batch_indices(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), epoch_order(10, seed=0, epoch=0))
    assert [len(b) for b in batch_indices(10, 4, seed=0, epoch=0, drop_last=True)] == [4, 4]
    assert all(b.dtype == torch.int64 for b in batches)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_batch_indices_reject_a_bad_batch_size(batch_size: int) -> None:
    with pytest.raises(ConfigError, match="batch size"):
        batch_indices(10, batch_size, seed=0, epoch=0)


def test_optimizer_config_validates() -> None:
    with pytest.raises(ConfigError, match="sgd, adam"):
        OptimizerConfig(name="rmsprop")
    with pytest.raises(ConfigError, match="learning rate"):
        OptimizerConfig(lr=0)
    assert isinstance(make_optimizer(tiny_model().parameters(), OptimizerConfig()), torch.optim.SGD)
    adam = make_optimizer(tiny_model().parameters(), OptimizerConfig(name="Adam", lr=1e-3))
    assert isinstance(adam, torch.optim.Adam)


def test_train_config_validates() -> None:
    with pytest.raises(ConfigError, match="batch size 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="constant, step, cosine, warm"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    assert TrainConfig(epochs=0, steps=5).total_steps(100) == 5
    assert TrainConfig(epochs=2, batch_size=30).total_steps(100) == 8


def test_train_step_matches_a_hand_written_step() -> None:
    data = tiny_data()
    inputs, targets = data.tensors[0][:16], data.tensors[1][:16]
    model, reference = tiny_model(), tiny_model()
    optimizer = make_optimizer(model.parameters(), OptimizerConfig(lr=0.1))
    loss = train_step(model, inputs, targets, optimizer, make_criterion())

    expected = nn.functional.cross_entropy(reference(inputs), targets)
    expected.backward()
    with torch.no_grad():
        for param in reference.parameters():
            assert param.grad is not None
            param -= 0.1 * param.grad  # first SGD step: the momentum buffer is the gradient
    assert loss == pytest.approx(float(expected.detach()))
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_evaluate_counts_per_class_and_restores_the_mode() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    targets = torch.tensor([0, 1, 0, 1])
    model.train()
    result = evaluate(model, TensorDataset(inputs, targets), batch_size=3)
    assert model.training
    assert result.num_samples == 4
    assert result.accuracy == 0.5
    assert result.per_class_accuracy == (0.5, 0.5, None)  # class 2 has no sample
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(inputs), targets)
    assert result.loss == pytest.approx(float(expected))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_twice_gives_bit_identical_parameters(optimizer: str) -> None:
    data = tiny_data()
    config = TrainConfig(
        epochs=2,
        batch_size=24,
        optimizer=OptimizerConfig(name=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3),
        lr_schedule="warm",
        threads=1,
        seed=5,
    )
    first, second = tiny_model(), tiny_model()
    result = train(first, data, data, config, quiet=True)
    train(second, data, data, config, quiet=True)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert result.steps == 2 * 9
    assert result.samples == 2 * 200
    assert [r.epoch for r in result.history] == [0, 1]
    assert result.final is not None and result.final == result.history[-1].val


def test_a_different_seed_gives_a_different_order_and_result() -> None:
    data = tiny_data()
    first, second = tiny_model(), tiny_model()
    train(first, data, None, TrainConfig(epochs=1, batch_size=32, seed=0), quiet=True)
    train(second, data, None, TrainConfig(epochs=1, batch_size=32, seed=1), quiet=True)
    assert not torch.equal(first[1].weight, second[1].weight)


def test_training_learns_and_steps_mode_may_stop_mid_epoch() -> None:
    data = tiny_data()
    model = tiny_model()
    before = evaluate(model, data)
    result = train(model, data, data, TrainConfig(steps=40, batch_size=32), quiet=True)
    assert result.steps == 40
    assert result.final is not None and result.final.loss < before.loss
    assert result.history[-1].complete is False and result.history[-1].step == 40
    assert [r.step for r in result.step_log] == list(range(1, 41))


def test_train_config_round_trips_and_reads_an_engines_flat_keys() -> None:
    from parnn.train import OptimizerConfig

    config = TrainConfig(steps=5, batch_size=16, optimizer=OptimizerConfig(name="adam", lr=0.01))
    assert TrainConfig.from_dict(config.to_dict()) == config
    # an engine config's JSON before the nesting: flat, with the engine's own keys beside
    flat = {"num_ranks": 2, "schedule": "gpipe", "batch_size": 16, "steps": 5, "seed": 3}
    assert TrainConfig.from_dict(flat) == TrainConfig(batch_size=16, steps=5, seed=3)
