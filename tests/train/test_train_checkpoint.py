"""Checkpoints: atomic, validated, and a resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from parnn.errors import CheckpointError, ConfigError
from parnn.results import read_json, read_jsonl
from parnn.train import (
    OptimizerConfig,
    TrainConfig,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    train,
    trainer,
)


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    # Dropout draws from the global RNG: the checkpoint must carry its state.
    return nn.Sequential(
        nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)
    )


def tiny_data() -> TensorDataset:
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(150, 1, 4, 4, generator=generator)
    return TensorDataset(inputs, inputs.flatten(1)[:, :4].argmax(dim=1))


def config(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "epochs": 3,
        "batch_size": 16,  # 10 steps per epoch, the last batch of 6
        "optimizer": OptimizerConfig(name="adam", lr=3e-3),
        "schedule": "warm",
        "threads": 1,
        "checkpoint_every": 7,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


class Crash(Exception):
    """The process 'dies' in the middle of a step."""


def test_resume_ends_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_data()
    reference = tiny_model()
    expected = train(reference, data, data, config(), out_dir=tmp_path / "whole", quiet=True)

    # The first session crashes during step 18, after a checkpoint at step 14.
    run_dir = tmp_path / "run"
    real_criterion = trainer.make_criterion
    calls = []

    def crashing_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 18:
            raise Crash
        return nn.functional.cross_entropy(logits, targets)

    monkeypatch.setattr(trainer, "make_criterion", lambda: crashing_loss)
    with pytest.raises(Crash):
        train(tiny_model(), data, data, config(), out_dir=run_dir, quiet=True)
    monkeypatch.setattr(trainer, "make_criterion", real_criterion)
    assert (
        latest_checkpoint(run_dir / "checkpoints") == run_dir / "checkpoints" / "step-00000014.pt"
    )

    # A new process: other weights and another global RNG state, both replaced by the resume.
    torch.manual_seed(1234)
    resumed_model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)
    )
    result = train(resumed_model, data, data, config(), out_dir=run_dir, resume=True, quiet=True)

    assert result.resumed_from == 14
    for got, want in zip(resumed_model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(got, want)
    assert result.steps == expected.steps == 30
    assert [r.loss for r in result.step_log] == [r.loss for r in expected.step_log]
    assert [r.lr for r in result.step_log] == [r.lr for r in expected.step_log]
    assert result.final == expected.final
    assert [r.val for r in result.history] == [r.val for r in expected.history]
    records = list(read_jsonl(run_dir / "metrics.jsonl"))
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(1, 31))  # steps 15-17 of the crashed session were dropped
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2]
    saved = read_json(run_dir / "result.json")
    assert saved["steps"] == 30 and saved["resumed_from"] == 14 and "machine" in saved
    assert expected.final is not None and saved["final"]["accuracy"] == expected.final.accuracy


def test_resume_with_other_total_steps_is_refused(tmp_path: Path) -> None:
    train(tiny_model(), tiny_data(), None, config(steps=7), out_dir=tmp_path, quiet=True)
    with pytest.raises(CheckpointError, match="total_steps: 7 -> 30"):
        train(tiny_model(), tiny_data(), None, config(), out_dir=tmp_path, resume=True)


def test_checkpoint_holds_the_position_and_keeps_the_latest_two(tmp_path: Path) -> None:
    train(tiny_model(), tiny_data(), None, config(), out_dir=tmp_path, quiet=True)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000028.pt", "step-00000030.pt"]
    state = load_checkpoint(tmp_path / "checkpoints" / "step-00000028.pt")
    assert (state["step"], state["epoch"], state["batch_index"]) == (28, 2, 8)
    assert set(state) >= {"model", "optimizer", "scheduler", "torch_rng_state", "step_log"}


def test_corrupt_or_missing_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good.pt", {"step": 3, "weights": torch.ones(4)})
    assert load_checkpoint(good)["step"] == 3
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"step": 1}, foreign)
    with pytest.raises(CheckpointError, match="not a parnn checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_resume_from_a_corrupt_latest_checkpoint_fails_clearly(tmp_path: Path) -> None:
    train(tiny_model(), tiny_data(), None, config(steps=14), out_dir=tmp_path, quiet=True)
    (tmp_path / "checkpoints" / "step-00000014.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="step-00000014.pt"):
        train(tiny_model(), tiny_data(), None, config(steps=14), out_dir=tmp_path, resume=True)


def test_resume_needs_a_directory_and_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--out"):
        train(tiny_model(), tiny_data(), None, config(), resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(tiny_model(), tiny_data(), None, config(), out_dir=tmp_path, resume=True)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    train(tiny_model(), tiny_data(), None, config(steps=7), out_dir=tmp_path, quiet=True)
    with pytest.raises(CheckpointError, match="batch_size: 16 -> 8"):
        train(
            tiny_model(),
            tiny_data(),
            None,
            config(steps=7, batch_size=8),
            out_dir=tmp_path,
            resume=True,
        )
