"""User models for the k-fold tests ('path/kfold_test_models.py:build_...'): one that
fails in training, one whose worker dies, one slow enough to be interrupted mid-run, and
a toy job function for the pool tests."""

from __future__ import annotations

import math
import os
import signal
import time
from collections import OrderedDict
from typing import Any

import torch
from torch import nn


class _Fail(nn.Module):
    """Raises on the training forward pass (evaluation and profiling by params work)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            raise RuntimeError("broken on purpose")
        return x


class _Die(nn.Module):
    """Kills its own process on the training forward pass, as the OOM killer would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            os.kill(os.getpid(), signal.SIGKILL)
        return x


class _Sleep(nn.Module):
    """Waits ``seconds`` per forward pass: a job long enough to be interrupted."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


def _head(input_shape: tuple[int, ...], num_classes: int) -> list[tuple[str, nn.Module]]:
    return [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(math.prod(input_shape), 32)),
        ("relu", nn.ReLU()),
        ("drop", nn.Dropout(0.2)),  # uses the RNG: a resume must restore its state
        ("fc2", nn.Linear(32, num_classes)),
    ]


def build_broken(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("fail", _Fail()), *_head(input_shape, num_classes)]))


def build_killer(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("die", _Die()), *_head(input_shape, num_classes)]))


def build_slow(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("sleep", _Sleep(0.02)), *_head(input_shape, num_classes)]))


def toy_job(context: dict[str, Any], payload: str, reporter: Any) -> dict[str, Any]:
    """A pool job: 'boom' raises, 'die' kills its worker, anything else reports 2 steps."""
    if payload == "boom":
        raise ValueError("boom happened")
    if payload == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    for step in (1, 2):
        time.sleep(context.get("sleep_s", 0.0))
        reporter.progress(step, 2, 0.5)
    return {
        "payload": payload,
        "pid": os.getpid(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "threads": torch.get_num_threads(),
    }


def build_dropout(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(_head(input_shape, num_classes)))


class TinyNet(nn.Sequential):
    """A model class called with no arguments, as the seed project passes its models."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(256, 10))
