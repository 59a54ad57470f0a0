"""The test that proves the PipeDream engine: k asynchronous steps on 2 and 4 processes give
the parameters of the same run emulated in one process (each stage's gradient computed on
the stashed weight version the schedule gives it), for SGD and Adam, pipedream and
pipedream-2bw, with and without vertical sync, across an epoch's drain.

Tolerance: rtol 1e-4, atol 1e-5, as the synchronous engines' transparency test: the
stage-by-stage backward and the emulator's whole-model backward differ only in rounding.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from parnn.errors import ConfigError, RankFailedError, ScheduleError
from parnn.launch import leftover_processes
from parnn.pipeline import PipelineConfig, plan_pipeline_run, run_pipeline
from parnn.pipeline.emulate import emulate_async_pipeline
from parnn.train import OptimizerConfig, batch_indices
from parnn.train.setup import setup_training

BATCH = 32


def _emulated(config: PipelineConfig) -> dict[str, torch.Tensor]:
    setup = setup_training(
        config.model, config.data, seed=config.train.seed, num_samples=config.num_samples
    )
    inputs, targets = setup.train_data.inputs, setup.train_data.targets
    per_epoch = len(setup.train_data) // config.train.batch_size
    steps = (
        config.train.steps if config.train.steps is not None else config.train.epochs * per_epoch
    )
    minibatches = []
    epoch = 0
    while len(minibatches) < steps:
        for index in batch_indices(
            len(setup.train_data),
            config.train.batch_size,
            seed=config.train.seed,
            epoch=epoch,
            drop_last=True,
        ):
            minibatches.append((inputs[index], targets[index]))
        epoch += 1
    emulate_async_pipeline(
        setup.model,
        plan_pipeline_run(config).partition,
        minibatches[:steps],
        num_microbatches=config.num_microbatches,
        optimizer=config.train.optimizer,
        lr_schedule=config.train.lr_schedule,
        vertical_sync=config.vertical_sync,
        drain_every=per_epoch,
    )
    return {k: v.detach().clone() for k, v in setup.model.state_dict().items()}


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 stages on 2 cores is allowed
@pytest.mark.parametrize(
    ("stages", "schedule", "microbatches", "optimizer", "vertical_sync"),
    [
        (2, "pipedream", 1, "sgd", False),
        (2, "pipedream", 4, "adam", False),
        (2, "pipedream-2bw", 2, "adam", True),
        (4, "pipedream", 1, "adam", False),
        (4, "pipedream-2bw", 4, "sgd", False),
    ],
)
def test_pipedream_steps_equal_the_emulated_run(
    stages: int, schedule: str, microbatches: int, optimizer: str, vertical_sync: bool
) -> None:
    config = PipelineConfig.of(
        model="lenet5",
        data="digits",
        num_samples=400,  # 320 training samples: 10 steps per epoch, so 12 steps cross a drain
        num_ranks=stages,
        schedule=schedule,
        vertical_sync=vertical_sync,
        num_microbatches=microbatches,
        batch_size=BATCH,
        steps=12,
        optimizer=OptimizerConfig(name=optimizer, lr=0.003 if optimizer == "adam" else 0.05),
        lr_schedule="cosine",
        evaluate=False,
        return_parameters=True,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.parameters is not None
    expected = _emulated(config)
    assert sorted(result.parameters) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(result.parameters[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert result.weight_stash is not None and len(result.weight_stash) == stages
    assert [s["peak_in_flight"] for s in result.weight_stash] == [
        min(stages - s, 12 * microbatches) for s in range(stages)
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_failing_stage_ends_the_asynchronous_run_and_names_its_rank(failing_rank: int) -> None:
    config = PipelineConfig.of(
        model="lenet5",
        num_ranks=2,
        schedule="pipedream",
        num_microbatches=2,
        steps=6,
        evaluate=False,
        fail_rank=failing_rank,
        fail_at_step=2,
    )
    started = time.monotonic()
    with pytest.raises(RankFailedError) as failure:
        run_pipeline(config, quiet=True)
    assert failure.value.rank == failing_rank
    assert "injected failure at step 2" in str(failure.value)
    # generous: start-up alone took ~70 s at a load average of 30 on two cores
    assert time.monotonic() - started < 150
    deadline = time.monotonic() + 10
    while leftover_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover_processes()


@pytest.mark.timeout(120)
def test_an_epoch_is_evaluated_and_reports_stash_and_activations() -> None:
    config = PipelineConfig.of(
        model="lenet5",
        num_samples=400,
        num_ranks=2,
        schedule="pipedream-2bw",
        num_microbatches=2,
        epochs=2,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.weight_stash is not None
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.val_accuracy is not None and 0.0 <= result.val_accuracy <= 1.0
    first, last = result.weight_stash
    assert first["peak_versions"] == 2 and last["peak_versions"] == 1
    assert first["stash_bytes"] == 2 * first["parameter_bytes"] > 0
    # The last stage's version is done with before its next update: an alias, no copy.
    assert last["peak_copies"] == 0 and last["stash_bytes"] == 0
    assert first["activation_bytes"] > 0
    assert first["peak_activation_bytes"] == 2 * first["activation_bytes"]


def test_bad_asynchronous_settings_are_refused_before_any_process_starts() -> None:
    with pytest.raises(ScheduleError, match="pipedream-2bw accumulates"):
        plan_pipeline_run(
            PipelineConfig.of(num_ranks=4, schedule="pipedream-2bw", num_microbatches=2)
        )
    with pytest.raises(ConfigError, match="vertical sync applies to the asynchronous"):
        PipelineConfig.of(schedule="1f1b", vertical_sync=True)
    with pytest.raises(ScheduleError, match="one stage per rank"):
        plan_pipeline_run(PipelineConfig.of(schedule="pipedream", stages_per_rank=2))


@pytest.mark.timeout(300)
def test_a_run_resumed_from_its_epoch_checkpoint_ends_where_an_uninterrupted_one_does(
    tmp_path: Path,
) -> None:
    settings = {
        "model": "lenet5",
        "num_samples": 400,  # 10 steps per epoch
        "num_ranks": 2,
        "schedule": "pipedream",
        "num_microbatches": 2,
        "epochs": 2,
        "lr_schedule": "cosine",
        "return_parameters": True,
    }
    whole = run_pipeline(PipelineConfig.of(**settings), quiet=True)
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(RankFailedError):  # dies in epoch 2, after epoch 1's checkpoint
        run_pipeline(
            PipelineConfig.of(**settings, checkpoint_dir=checkpoints, fail_rank=1, fail_at_step=13),
            quiet=True,
        )
    assert sorted(p.name for p in (checkpoints / "stage-1").iterdir()) == ["step-00000010.pt"]
    resumed = run_pipeline(
        PipelineConfig.of(**settings, checkpoint_dir=checkpoints, resume=True), quiet=True
    )
    assert whole is not None and resumed is not None
    assert whole.parameters is not None and resumed.parameters is not None
    for name, tensor in whole.parameters.items():
        torch.testing.assert_close(resumed.parameters[name], tensor, rtol=1e-6, atol=1e-7)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[-1]["val_accuracy"] == whole.history[-1]["val_accuracy"]


def test_the_stash_copies_only_what_it_must_and_leaves_frozen_weights_alone() -> None:
    from torch import nn

    from parnn.pipeline.async_stage import WeightStash

    module = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    module[0].bias.requires_grad_(False)  # frozen
    stash = WeightStash(module)
    stash.live_grads()
    assert module[0].bias.grad is None and module[0].weight.grad is not None
    stash.make(0, copy=False)  # the live weights are version 0: nothing copied
    stash.make(1, copy=True)
    copy = stash.versions[1]
    assert stash.versions[0] is None and copy is not None
    assert copy["0.weight"].grad is module[0].weight.grad  # one gradient buffer for all
    assert not copy["0.bias"].requires_grad and copy["0.bias"].grad is None
    assert copy["0.weight"].data_ptr() != module[0].weight.data_ptr()
    stash.drop(1)
    stash.make(2, copy=True)  # reuses the dropped copy's buffers
    again = stash.versions[2]
    assert again is not None and again["0.weight"] is copy["0.weight"]
    assert (stash.peak, stash.peak_copies) == (2, 1)
