"""The one training loop: its batch source, its step and its hooks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from parnn.errors import ConfigError
from parnn.train import (
    AfterStep,
    Batch,
    CheckpointEvery,
    EpochEnd,
    GradientStep,
    LoopState,
    OptimizerConfig,
    StepOutcome,
    batch_indices,
    batch_stream,
    make_criterion,
    make_optimizer,
    train_loop,
    train_step,
)


def model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(50, 12, generator=generator)  # (N, 12)
    targets = torch.randint(0, 3, (50,), generator=generator)  # (N,)
    return model, inputs, targets


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return make_optimizer(model.parameters(), OptimizerConfig(name="sgd", lr=0.1, momentum=0.9))


def test_batch_stream_walks_the_reference_order_and_resumes_at_any_step() -> None:
    whole = list(batch_stream(50, 16, seed=3, total_steps=9))
    reference = [i for epoch in range(3) for i in batch_indices(50, 16, seed=3, epoch=epoch)]
    assert [b.step for b in whole] == list(range(9))
    assert [b.epoch for b in whole] == [0] * 4 + [1] * 4 + [2]
    assert [b.last_of_epoch for b in whole] == [False, False, False, True] * 2 + [False]
    for batch, expected in zip(whole, reference, strict=False):
        assert torch.equal(batch.indices, expected)
    resumed = list(batch_stream(50, 16, seed=3, total_steps=9, start_step=6))
    assert [b.step for b in resumed] == [6, 7, 8]
    for got, want in zip(resumed, whole[6:], strict=True):
        assert torch.equal(got.indices, want.indices)


def test_the_parts_of_a_batch_stream_cut_each_batch_evenly() -> None:
    parts = [
        list(batch_stream(50, 16, seed=0, total_steps=4, part=p, num_parts=3)) for p in range(3)
    ]
    for step in range(4):
        pieces = [parts[p][step].indices for p in range(3)]
        assert torch.equal(torch.cat(pieces), parts[0][step].round_indices)
        sizes = [int(piece.numel()) for piece in pieces]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ConfigError, match="part 3 of 3"):
        next(batch_stream(50, 16, seed=0, total_steps=4, part=3, num_parts=3))


def test_the_plain_step_is_train_step_bit_for_bit() -> None:
    model_a, inputs, targets = model_and_data()
    model_b, _, _ = model_and_data()
    opt_a, opt_b = sgd(model_a), sgd(model_b)
    step = GradientStep(model_b, opt_b, make_criterion(), inputs, targets)
    for batch in batch_stream(50, 16, seed=0, total_steps=6):
        want = train_step(
            model_a, inputs[batch.indices], targets[batch.indices], opt_a, make_criterion()
        )
        got = step(batch)
        assert got.loss == want
        assert got.samples == int(batch.indices.numel())
        assert got.loss_sum == pytest.approx(want * got.samples)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_gradient_accumulation_follows_the_whole_batch_gradient() -> None:
    model_a, inputs, targets = model_and_data()
    model_b, _, _ = model_and_data()
    whole = GradientStep(model_a, sgd(model_a), make_criterion(), inputs, targets)
    split = GradientStep(
        model_b, sgd(model_b), make_criterion(), inputs, targets, accumulate_steps=3
    )
    for batch in batch_stream(50, 16, seed=0, total_steps=4):  # the last batch has 2 samples
        a, b = whole(batch), split(batch)
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_an_empty_share_under_global_weighting_adds_a_zero_gradient() -> None:
    model, inputs, targets = model_and_data()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer(model.parameters(), OptimizerConfig(name="sgd", lr=0.1))
    step = GradientStep(model, optimizer, make_criterion(), inputs, targets, weighting="global",
                        world_size=4)  # fmt: skip
    batch = Batch(step=0, epoch=0, round_indices=torch.tensor([3, 7]),
                  indices=torch.tensor([], dtype=torch.int64), last_of_epoch=True)  # fmt: skip
    outcome = step(batch)
    assert outcome.samples == 0 and math.isnan(outcome.loss)
    assert all(p.grad is not None for p in model.parameters())  # it joined the backward
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="unknown loss weighting"):
        GradientStep(model, optimizer, make_criterion(), inputs, targets, weighting="sum")


def test_the_loop_counts_steps_and_a_hook_stops_it() -> None:
    model, inputs, targets = model_and_data()
    optimizer = sgd(model)
    seen: list[tuple[int, float]] = []

    def stop_at_5(state: LoopState, batch: Batch, outcome: StepOutcome) -> None:
        seen.append((state.step, state.lr))
        if state.step == 5:
            state.stop("enough")

    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    state = train_loop(
        GradientStep(model, optimizer, make_criterion(), inputs, targets),
        batch_stream(50, 16, seed=0, total_steps=12),
        optimizer=optimizer,
        scheduler=scheduler,
        state=LoopState(total_steps=12),
        hooks=[AfterStep(stop_at_5)],
    )
    assert state.step == 5 and state.stopped == "enough" and not state.finished
    assert state.samples == 16 * 3 + 2 + 16
    assert [lr for _, lr in seen] == [0.1 * 0.5**k for k in range(5)]  # read before each update


def test_epoch_end_and_checkpoint_hooks_fire_when_due() -> None:
    model, inputs, targets = model_and_data()
    optimizer = sgd(model)
    epochs: list[tuple[int, int, bool]] = []
    saved: list[int] = []
    state = train_loop(
        GradientStep(model, optimizer, make_criterion(), inputs, targets),
        batch_stream(50, 16, seed=0, total_steps=10),  # 4 batches an epoch
        optimizer=optimizer,
        state=LoopState(total_steps=10),
        hooks=[
            EpochEnd(lambda s, epoch, complete: epochs.append((s.step, epoch, complete))),
            CheckpointEvery(lambda s: saved.append(s.step), steps=3, at_end=True),
        ],
    )
    assert state.finished and state.stopped is None
    assert epochs == [(4, 0, True), (8, 1, True), (10, 2, False)]
    assert saved == [3, 6, 9, 10]

    timed: list[int] = []
    hook = CheckpointEvery(lambda s: timed.append(s.step), seconds=1e-9)  # due every step
    train_loop(
        GradientStep(model, optimizer, make_criterion(), inputs, targets),
        batch_stream(50, 16, seed=0, total_steps=3),
        optimizer=optimizer,
        state=LoopState(total_steps=3),
        hooks=[hook],
    )
    assert timed == [1, 2]  # never after the last step unless at_end
