"""The synchronous engines reproduce the reference trainer: same seed, same data order, same
parameters after k steps (real gloo processes).

The functions the ranks run are top-level here: spawned processes import this module.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from parnn.data import ArrayDataset, load_dataset
from parnn.data_parallel import DataParallelConfig, run_data_parallel
from parnn.data_parallel.averaging import TorchTransport, train_replica
from parnn.data_parallel.job import OptimizerFactory, ScheduleFactory, TrainJob
from parnn.launch import LaunchConfig, launch
from parnn.models import build_model
from parnn.train import OptimizerConfig, TrainConfig, make_criterion, train

BATCH = 32
OPTIMIZER = OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4)


def _data(num_samples: int) -> ArrayDataset:
    return load_dataset("digits", input_shape=(1, 16, 16), num_samples=num_samples)


def _model(data: ArrayDataset) -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)


def _reference(model: nn.Module, data: ArrayDataset, steps: int, schedule: str) -> nn.Module:
    reference = copy.deepcopy(model)
    config = TrainConfig(
        steps=steps, batch_size=BATCH, optimizer=OPTIMIZER, lr_schedule=schedule, threads=1
    )
    train(reference, data, None, config, quiet=True)
    return reference


def _assert_same_parameters(actual: nn.Module, expected: nn.Module) -> None:
    for (name, value), reference in zip(
        actual.state_dict().items(), expected.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("engine", "num_samples", "accumulate"),
    [
        # 193 = 6 x 32 + 1: the last batch of each epoch has one sample, so rank 1's shard
        # is empty there (it still joins the all-reduce); cosine LR on top.
        ("ddp", 193, 1),
        # 199 = 6 x 32 + 7: an uneven last batch (4 + 3), and 2 micro-batches per rank.
        ("ddp", 199, 2),
        # local SGD averaging after every step = synchronous gradient averaging.
        ("local-sgd", 192, 1),
    ],
)
def test_engine_matches_reference(engine: str, num_samples: int, accumulate: int) -> None:
    data = _data(num_samples)
    model = _model(data)
    steps = 9  # crosses an epoch boundary
    schedule = "cosine" if num_samples == 193 else "constant"
    expected = _reference(model, data, steps, schedule)
    trained = copy.deepcopy(model)
    config = DataParallelConfig.of(
        engine=engine,
        num_ranks=2,
        batch_size=BATCH,
        steps=steps,
        accumulate_steps=accumulate,
        average_every=1 if engine == "local-sgd" else None,
        optimizer=OPTIMIZER,
        lr_schedule=schedule,
        monitor_interval_s=0,
    )
    result = run_data_parallel(trained, data, None, config, quiet=True)
    assert result is not None
    assert result.steps == steps and result.samples == expected_samples(num_samples, steps)
    _assert_same_parameters(trained, expected)
    # the run did train: the parameters moved away from the initial ones
    assert not torch.equal(trained.state_dict()["fc3.linear.weight"], model.fc3.linear.weight)


def expected_samples(num_samples: int, steps: int) -> int:
    per_epoch = -(-num_samples // BATCH)
    full_epochs, rest = divmod(steps, per_epoch)
    return full_epochs * num_samples + rest * BATCH


class _RecordingTransport(TorchTransport):
    """Keeps each replica's packed parameters as they were before the all-reduce."""

    def __init__(self) -> None:
        super().__init__()
        self.before: list[torch.Tensor] = []

    def allreduce_sum_(self, flat: torch.Tensor) -> None:
        self.before.append(flat.clone())
        super().allreduce_sum_(flat)


Snapshots = tuple[list[int], list[np.ndarray], list[np.ndarray]]


def _replica_worker(rank: int, world_size: int, job: TrainJob) -> Snapshots:
    """(steps of each averaging, parameters right after it, packed replica right before)."""
    steps: list[int] = []
    after: list[np.ndarray] = []

    def on_average(steps_done: int, model: nn.Module) -> None:
        steps.append(steps_done)
        after.append(nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy())

    transport = _RecordingTransport()
    train_replica(rank, job, transport, on_average=on_average)
    return steps, after, [vector.numpy().copy() for vector in transport.before]


@pytest.mark.timeout(120)
def test_replicas_identical_right_after_each_averaging() -> None:
    data = _data(192)
    model = _model(data)
    config = DataParallelConfig.of(
        engine="local-sgd",
        num_ranks=2,
        batch_size=BATCH,
        steps=7,
        average_every=3,
        optimizer=OPTIMIZER,
        monitor_interval_s=0,
    )
    job = TrainJob(
        config=config,
        model=model,
        inputs=data.inputs,
        targets=data.targets,
        criterion=make_criterion(),
        optimizer_factory=OptimizerFactory(OPTIMIZER),
        scheduler_factory=ScheduleFactory("constant", 7),
    )
    (steps0, after0, before0), (steps1, after1, before1) = launch(
        _replica_worker, LaunchConfig(num_processes=2), job
    )
    # averaged after steps 3 and 6, and once more at the end of the run (step 7)
    assert steps0 == steps1 == [3, 6, 7]
    for left, right in zip(after0, after1, strict=True):
        np.testing.assert_array_equal(left, right)
    # right before each averaging the replicas differ (they trained on different shards)
    assert len(before0) == len(before1) == 3
    for left, right in zip(before0, before1, strict=True):
        assert not np.array_equal(left, right)
