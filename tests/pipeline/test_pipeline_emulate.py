"""The one-process emulator of the asynchronous pipeline, checked against weight versions
derived by hand on a model small enough to follow on paper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parnn.partition import Partition
from parnn.pipeline.emulate import emulate_async_pipeline
from parnn.train import OptimizerConfig

LR = 0.1


def _scalar_model(w0: float, w1: float) -> nn.Sequential:
    """f(x) = w1 * (w0 * x): two stages of one weight each."""
    first, second = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        first.weight.fill_(w0)
        second.weight.fill_(w1)
    return nn.Sequential(first, second)


def _half_squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((output - target) ** 2).sum()


def _grads(w0: float, w1: float, x: float, y: float) -> tuple[float, float]:
    """d/dw0 and d/dw1 of 0.5 (w1 w0 x - y)^2."""
    r = w1 * w0 * x - y
    return r * w1 * x, r * w0 * x


def _value(layer: nn.Module) -> float:
    return float(layer.weight.detach())


def _approx(value: float) -> object:
    return pytest.approx(value, rel=1e-6, abs=1e-7)


def _emulate(xs: list[float], ys: list[float], *, vertical_sync: bool = False) -> nn.Sequential:
    model = _scalar_model(0.5, -1.0)
    emulate_async_pipeline(
        model,
        Partition((0, 1, 2)),
        [(torch.tensor([[x]]), torch.tensor([[y]])) for x, y in zip(xs, ys, strict=True)],
        num_microbatches=1,
        optimizer=OptimizerConfig(name="sgd", lr=LR, momentum=0.0),
        vertical_sync=vertical_sync,
        loss_fn=_half_squared_error,
    )
    return model


def test_two_stages_stage_zero_is_one_update_stale() -> None:
    xs, ys = [1.0, 2.0, -1.0, 0.5], [1.0, 0.0, 2.0, 1.0]
    # Versions by hand (2 stages, m = 1): stage 1 runs micro-batch j on w1[j] (fresh);
    # stage 0 runs micro-batches 0 and 1 on w0[0], then j on w0[j - 1].
    w0, w1 = [0.5], [-1.0]
    g0, g1 = _grads(w0[0], w1[0], xs[0], ys[0])  # j = 0: (w0[0], w1[0])
    w0.append(w0[0] - LR * g0)
    w1.append(w1[0] - LR * g1)
    g0, g1 = _grads(w0[0], w1[1], xs[1], ys[1])  # j = 1: (w0[0], w1[1])
    w0.append(w0[1] - LR * g0)
    w1.append(w1[1] - LR * g1)
    g0, g1 = _grads(w0[1], w1[2], xs[2], ys[2])  # j = 2: (w0[1], w1[2])
    w0.append(w0[2] - LR * g0)
    w1.append(w1[2] - LR * g1)
    g0, g1 = _grads(w0[2], w1[3], xs[3], ys[3])  # j = 3: (w0[2], w1[3])
    w0.append(w0[3] - LR * g0)
    w1.append(w1[3] - LR * g1)
    model = _emulate(xs, ys)
    assert _value(model[0]) == _approx(w0[4])
    assert _value(model[1]) == _approx(w1[4])


def test_vertical_sync_runs_both_stages_on_the_first_stages_version() -> None:
    xs, ys = [1.0, 2.0, -1.0], [1.0, 0.0, 2.0]
    w0, w1 = [0.5], [-1.0]
    for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
        version = max(0, j - 1)  # stage 0's version, used by stage 1 too
        g0, g1 = _grads(w0[version], w1[version], x, y)
        w0.append(w0[j] - LR * g0)
        w1.append(w1[j] - LR * g1)
    model = _emulate(xs, ys, vertical_sync=True)
    assert _value(model[0]) == _approx(w0[-1])
    assert _value(model[1]) == _approx(w1[-1])


def test_staleness_changes_the_result() -> None:
    """The emulated run is not plain SGD: without the stale version it would differ."""
    xs, ys = [1.0, 2.0, -1.0], [1.0, 0.0, 2.0]
    w0, w1 = 0.5, -1.0
    for x, y in zip(xs, ys, strict=True):
        g0, g1 = _grads(w0, w1, x, y)
        w0, w1 = w0 - LR * g0, w1 - LR * g1
    model = _emulate(xs, ys)
    assert abs(_value(model[0]) - w0) > 1e-3
