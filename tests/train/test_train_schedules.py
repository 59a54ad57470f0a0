"""LR schedules: the curves, per optimizer step."""

from __future__ import annotations

import math

import pytest
import torch

from parnn.errors import ConfigError
from parnn.train import SCHEDULES, OptimizerConfig, make_optimizer, make_scheduler


def lr_curve(name: str, total_steps: int, warmup_steps: int | None = None) -> list[float]:
    """The LR each of ``total_steps`` optimizer steps uses."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer([param], OptimizerConfig(lr=0.1))
    scheduler = make_scheduler(optimizer, name, total_steps=total_steps, warmup_steps=warmup_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_constant() -> None:
    assert lr_curve("constant", 20) == [0.1] * 20


def test_step_decays_tenfold_at_half_and_three_quarters() -> None:
    lrs = lr_curve("step", 40)
    assert lrs[:20] == pytest.approx([0.1] * 20)
    assert lrs[20:30] == pytest.approx([0.01] * 10)
    assert lrs[30:] == pytest.approx([0.001] * 10)


def test_cosine_falls_from_the_peak_towards_zero() -> None:
    lrs = lr_curve("cosine", 50)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[25] == pytest.approx(0.05)
    assert lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 49 / 50)))


def test_warm_rises_linearly_then_falls_as_a_cosine() -> None:
    lrs = lr_curve("warm", 100, warmup_steps=10)
    rise, fall = lrs[:10], lrs[10:]
    assert rise == pytest.approx([0.1 * (t + 1) / 10 for t in range(10)])
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) in (9, 10)
    assert all(a > b for a, b in zip(fall, fall[1:], strict=False))
    assert fall[45] == pytest.approx(0.05)


def test_warm_defaults_to_ten_percent_warm_up() -> None:
    lrs = lr_curve("warm", 50)
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5] == pytest.approx(0.1) and lrs[6] < 0.1


def test_unknown_schedule_lists_the_valid_ones() -> None:
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimizerConfig())
    with pytest.raises(ConfigError, match=", ".join(SCHEDULES)):
        make_scheduler(optimizer, "exponential", total_steps=10)


def test_bad_warm_up_is_an_error_and_an_ignored_one_warns() -> None:
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimizerConfig())
    with pytest.raises(ConfigError, match="warm-up"):
        make_scheduler(optimizer, "warm", total_steps=10, warmup_steps=11)
    with pytest.warns(UserWarning, match="ignored"):
        make_scheduler(optimizer, "cosine", total_steps=10, warmup_steps=3)


def test_scheduler_state_round_trips() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer([param], OptimizerConfig(lr=0.1))
    scheduler = make_scheduler(optimizer, "warm", total_steps=30)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    assert state["lr_lambdas"][0] == {"name": "warm", "total_steps": 30, "warmup_steps": 3}
    optimizer2 = make_optimizer([param], OptimizerConfig(lr=0.1))
    scheduler2 = make_scheduler(optimizer2, "warm", total_steps=30)
    optimizer2.load_state_dict(optimizer.state_dict())
    scheduler2.load_state_dict(state)
    optimizer.step()
    scheduler.step()
    optimizer2.step()
    scheduler2.step()
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
