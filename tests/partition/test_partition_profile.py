"""The profiler on a tiny real model (structure, not timings), its cache, and the comm fit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from parnn.models import build_model, count_parameters
from parnn.partition.comm import CommModel, fit_comm_model
from parnn.partition.measure import cache as cache_module
from parnn.partition.measure.cache import load_or_profile, model_fingerprint, profile_file_name
from parnn.partition.measure.comm import measure_comm_model
from parnn.partition.profile import ModelProfile


def test_profile_of_lenet5_has_one_positive_entry_per_unit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = load_or_profile(
        "lenet5", input_shape=(1, 28, 28), batch_size=4, cache_dir=tmp_path, warmup=0, repeats=2
    )
    torch.manual_seed(0)
    model = build_model("lenet5", input_shape=(1, 28, 28))
    assert profile.unit_names == tuple(name for name, _ in model.named_children())
    assert profile.batch_size == 4 and profile.input_shape == (1, 28, 28)
    assert profile.torch_version == torch.__version__
    for unit, (_, module) in zip(profile.units, model.named_children(), strict=True):
        assert unit.forward_s > 0 and unit.backward_s > 0
        assert unit.output_shape[0] == 4
        assert unit.activation_bytes == 4 * math.prod(unit.output_shape)  # float32
        assert unit.saved_bytes > 0
        assert unit.num_parameters == count_parameters(module)
        assert unit.parameter_bytes == 4 * unit.num_parameters
        assert unit.update_s > 0
    assert profile.units[-1].output_shape == (4, 10)
    assert profile.input_bytes == 4 * 4 * 28 * 28
    assert (tmp_path / profile_file_name("lenet5", (1, 28, 28), batch_size=4, threads=1)).exists()
    assert ModelProfile.from_dict(profile.to_dict()) == profile


def test_cache_is_keyed_and_refreshable(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = load_or_profile(
        "mlp", input_shape=(1, 8, 8), batch_size=2, cache_dir=tmp_path, warmup=0, repeats=1
    )
    calls = []
    real = cache_module.measure_units

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "measure_units", counting)
    again = load_or_profile("mlp", input_shape=(1, 8, 8), batch_size=2, cache_dir=tmp_path)
    assert again == first and calls == []  # served from the cache
    load_or_profile(
        "mlp", input_shape=(1, 8, 8), batch_size=3, cache_dir=tmp_path, warmup=0, repeats=1
    )
    assert len(calls) == 1  # another batch size is another key
    load_or_profile(
        "mlp",
        input_shape=(1, 8, 8),
        batch_size=2,
        cache_dir=tmp_path,
        refresh=True,
        warmup=0,
        repeats=1,
    )
    assert len(calls) == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        profile_file_name("mlp", (1, 8, 8), batch_size=2, threads=1),
        profile_file_name("mlp", (1, 8, 8), batch_size=3, threads=1),
    ]
    # A corrupt file is measured again, not trusted.
    (tmp_path / names[0]).write_text("{not json")
    load_or_profile(
        "mlp", input_shape=(1, 8, 8), batch_size=2, cache_dir=tmp_path, warmup=0, repeats=1
    )
    assert len(calls) == 3


def test_an_unnamed_module_is_fingerprinted() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    profile = load_or_profile(model, input_shape=(1, 4, 4), batch_size=2, warmup=0, repeats=1)
    assert profile.model == model_fingerprint(model)
    assert model_fingerprint(model) != model_fingerprint(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    )


def test_comm_fit_recovers_latency_and_bandwidth() -> None:
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    times = [50e-6 + s / 2e9 for s in sizes]
    model = fit_comm_model(sizes, times)
    assert model.latency_s == pytest.approx(50e-6)
    assert model.bandwidth_bytes_per_s == pytest.approx(2e9)
    assert model.time_s(0) == 0.0
    assert model.time_s(4e9) == pytest.approx(50e-6 + 2.0)
    assert CommModel.from_dict(model.to_dict()) == model


def test_comm_fit_clips_a_negative_latency() -> None:
    model = fit_comm_model([1_000, 2_000], [1e-6, 3e-6])  # the line crosses zero below 500 B
    assert model.latency_s == 0.0
    assert model.bandwidth_bytes_per_s > 0


@pytest.mark.timeout(120)
def test_comm_is_measured_between_two_processes() -> None:
    model = measure_comm_model(sizes_bytes=(1024, 65536, 1 << 20), warmup=1, repeats=2)
    assert model.backend == "gloo"
    assert model.sizes_bytes == (1024, 65536, 1 << 20)
    assert all(t > 0 for t in model.times_s)
    assert model.latency_s >= 0 and model.bandwidth_bytes_per_s > 0


def test_timed_passes_last_at_least_the_time_floor() -> None:
    """A profile of a tiny model takes more passes than asked until they last
    ``min_seconds`` (so that one slow moment of the machine is a minority of them), and
    exactly the passes asked without a floor; the profile records the passes it timed."""
    from parnn.partition.measure.profiler import MAX_PASSES, measure_units

    model = build_model("mlp", input_shape=(1, 8, 8))
    inputs, targets = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    passes: list[int] = []
    measure_units(model, inputs, targets, warmup=1, repeats=3, on_pass=lambda: passes.append(1))
    assert len(passes) == 4
    passes.clear()
    measure_units(
        model, inputs, targets, warmup=1, repeats=3, min_seconds=0.05,
        on_pass=lambda: passes.append(1),
    )  # fmt: skip
    assert 4 < len(passes) <= 1 + MAX_PASSES
    profile = load_or_profile(
        model, input_shape=(1, 8, 8), batch_size=4, warmup=1, repeats=3, cache_dir=None
    )
    assert 3 < profile.repeats <= MAX_PASSES
    with pytest.raises(ValueError, match="min_seconds"):
        measure_units(model, inputs, targets, min_seconds=-1.0)
