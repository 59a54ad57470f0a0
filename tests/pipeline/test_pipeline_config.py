"""PipelineConfig: ranks and stages, and ``num_microbatches="auto"`` resolved in the library."""

from __future__ import annotations

from pathlib import Path

import pytest

from parnn.errors import ConfigError
from parnn.partition import Partition
from parnn.pipeline import PipelineConfig
from parnn.pipeline.runtime import resolve_microbatches


def test_stages_are_ranks_times_stages_per_rank() -> None:
    config = PipelineConfig.of(num_ranks=2, stages_per_rank=2, schedule="interleaved-1f1b")
    assert (config.num_ranks, config.num_stages) == (2, 4)
    assert config.to_dict()["num_ranks"] == 2 and "num_stages" not in config.to_dict()


@pytest.mark.parametrize("text", ["auto", "Auto", " AUTO "])
def test_auto_microbatches_is_a_setting(text: str) -> None:
    config = PipelineConfig.of(num_microbatches=text, batch_size=30)
    assert config.num_microbatches == "auto"  # 30 need not split yet: auto picks a divisor
    with pytest.raises(ConfigError, match="resolve"):
        _ = config.microbatch_size


def test_other_text_for_microbatches_is_refused() -> None:
    with pytest.raises(ConfigError, match="'many'.*'auto'"):
        PipelineConfig.of(num_microbatches="many")


def test_a_given_number_of_microbatches_is_kept() -> None:
    config = PipelineConfig.of(num_microbatches=4)
    assert resolve_microbatches(config) == (config, None)


@pytest.mark.timeout(240)
def test_auto_microbatches_asks_the_simulator(tmp_path: Path) -> None:
    config = PipelineConfig.of(
        model="mlp", num_ranks=2, partition="auto", num_microbatches="auto", batch_size=16
    )
    resolved, prediction = resolve_microbatches(config, profile_cache_dir=tmp_path)
    assert prediction is not None
    m = resolved.num_microbatches
    assert m == prediction["num_microbatches"] and isinstance(m, int) and 16 % m == 0
    assert m in [c["num_microbatches"] for c in prediction["candidates"]]
    assert prediction["step_time_s"] > 0 and prediction["samples_per_s"] > 0
    assert isinstance(resolved.partition, Partition) and resolved.partition.num_stages == 2
    assert resolved.microbatch_size == 16 // m
    assert config.num_microbatches == "auto"  # the caller's config is left as it was


def test_shared_settings_nest_in_one_train_config() -> None:
    from parnn.train import OptimizerConfig, TrainConfig

    config = PipelineConfig.of(num_ranks=2, batch_size=16, steps=4, seed=3)
    assert (config.train.batch_size, config.train.steps, config.train.seed) == (16, 4, 3)
    assert config.train.optimizer == OptimizerConfig(name="adam", lr=0.003)  # the default
    assert config.to_dict()["train"]["batch_size"] == 16 and "batch_size" not in config.to_dict()
    assert config.replace(batch_size=8, schedule="1f1b").train.batch_size == 8
    reference = TrainConfig(steps=2, batch_size=8, threads=None, drop_last=True)
    shared = PipelineConfig(num_ranks=2, train=reference, num_microbatches=2)
    assert shared.threads == 1 and shared.train.steps == 2
    with pytest.raises(ConfigError, match="drops each epoch's last"):
        PipelineConfig(train=TrainConfig(batch_size=8))
