"""``--transport``: DDP's gradients and local SGD's averaging over MPI (mpi4py under
mpiexec) give the parameters of gloo and of the reference trainer, and the choice of
transport is resolved, reported and refused as documented.

Tolerances: over 2 ranks MPI and gloo give bit-identical parameters (a sum of two floats
does not depend on their order and a division by 2 is exact), so that comparison is
exact; against the single-process reference the gradients differ by float summation
order: rtol 1e-5 / atol 1e-6 for SGD, rtol 1e-4 / atol 1e-5 for Adam (its update divides
by the root of the second moment, which magnifies rounding where gradients are tiny).
"""

from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from parnn.cli import cli
from parnn.data import ArrayDataset, load_dataset
from parnn.data_parallel import DataParallelConfig, FailurePlan, run_data_parallel
from parnn.data_parallel.transport import mpi_unusable_reason, resolve_transport
from parnn.errors import ConfigError, ParnnWarning, RankFailedError
from parnn.launch import leftover_processes
from parnn.models import build_model
from parnn.train import OptimizerConfig, TrainConfig, train

BATCH = 32
STEPS = 9  # 199 samples: 7 batches per epoch, so the run crosses an epoch boundary
OPTIMIZERS = {
    "sgd": (OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4), 1e-5, 1e-6),
    "adam": (OptimizerConfig(name="adam", lr=0.01), 1e-4, 1e-5),
}
needs_mpi = pytest.mark.skipif(mpi_unusable_reason() is not None, reason=str(mpi_unusable_reason()))


def _setup(num_samples: int = 199) -> tuple[nn.Module, ArrayDataset]:
    # 199 = 6 x 32 + 7: an uneven last batch (4 + 3 samples per rank)
    data = load_dataset("digits", input_shape=(1, 16, 16), num_samples=num_samples)
    torch.manual_seed(0)
    model = build_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    return model, data


def _reference(model: nn.Module, data: ArrayDataset, optimizer: OptimizerConfig) -> nn.Module:
    reference = copy.deepcopy(model)
    config = TrainConfig(steps=STEPS, batch_size=BATCH, optimizer=optimizer, threads=1)
    train(reference, data, None, config, quiet=True)
    return reference


def _parallel(
    model: nn.Module, data: ArrayDataset, engine: str, transport: str, optimizer: OptimizerConfig
) -> tuple[nn.Module, str | None]:
    trained = copy.deepcopy(model)
    config = DataParallelConfig.of(
        engine=engine, transport=transport, num_ranks=2, batch_size=BATCH, steps=STEPS,
        accumulate_steps=2, average_every=1 if engine == "local-sgd" else None,
        optimizer=optimizer, lr_schedule="constant", monitor_interval_s=0,  # the reference's
    )  # fmt: skip
    result = run_data_parallel(trained, data, None, config, quiet=True)
    assert result is not None and result.steps == STEPS
    return trained, result.transport


def _assert_close(actual: nn.Module, expected: nn.Module, rtol: float, atol: float) -> None:
    for (name, value), reference in zip(
        actual.state_dict().items(), expected.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(value, reference, rtol=rtol, atol=atol, msg=name)


@needs_mpi
@pytest.mark.timeout(180)
@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_ddp_over_mpi_matches_gloo_and_reference(optimizer_name: str) -> None:
    optimizer, rtol, atol = OPTIMIZERS[optimizer_name]
    model, data = _setup()
    expected = _reference(model, data, optimizer)
    over_mpi, transport = _parallel(model, data, "ddp", "mpi", optimizer)
    assert transport == "mpi"
    over_gloo, transport = _parallel(model, data, "ddp", "gloo", optimizer)
    assert transport == "gloo"
    _assert_close(over_mpi, over_gloo, rtol=0.0, atol=0.0)
    _assert_close(over_mpi, expected, rtol=rtol, atol=atol)
    assert not torch.equal(over_mpi.state_dict()["fc3.linear.weight"], model.fc3.linear.weight)


@needs_mpi
@pytest.mark.timeout(120)
def test_local_sgd_over_mpi_matches_reference() -> None:
    # averaging after every step with SGD = synchronous gradient averaging, where every
    # rank's share of a step has the same size (192 = 6 x 32; each replica follows the
    # mean over its own samples, so an uneven last batch would weigh them differently)
    optimizer, rtol, atol = OPTIMIZERS["sgd"]
    model, data = _setup(192)
    expected = _reference(model, data, optimizer)
    trained, transport = _parallel(model, data, "local-sgd", "mpi", optimizer)
    assert transport == "mpi"
    _assert_close(trained, expected, rtol=rtol, atol=atol)


@needs_mpi
@pytest.mark.timeout(150)
def test_ddp_over_mpi_failed_rank_is_named() -> None:
    # rank 1 raises while rank 0 waits in the hook's Allreduce: MPI_Abort ends both
    model, data = _setup(192)
    config = DataParallelConfig.of(
        engine="ddp", transport="mpi", num_ranks=2, batch_size=BATCH, epochs=200,
        fail_at=FailurePlan(rank=1, step=2), failure_timeout_s=20, monitor_interval_s=0,
    )  # fmt: skip
    with pytest.raises(RankFailedError) as caught:
        run_data_parallel(model, data, None, config, quiet=True)
    assert caught.value.rank == 1
    assert "injected failure on rank 1 at step 2" in str(caught.value)
    assert leftover_processes() == []


def _config(engine: str, transport: str) -> DataParallelConfig:
    return DataParallelConfig.of(engine=engine, transport=transport, num_ranks=2, steps=1)


def test_torchrun_falls_back_with_a_reason_or_refuses_mpi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for engine in ("ddp", "local-sgd"):
        resolved = resolve_transport(_config(engine, "auto"))
        assert resolved.name == "gloo" and "torchrun" in resolved.note
        assert resolve_transport(_config(engine, "gloo")).name == "gloo"
        with pytest.raises(ConfigError, match=r"--transport mpi cannot be used: torchrun.*gloo"):
            resolve_transport(_config(engine, "mpi"))
    with pytest.raises(ConfigError, match=r"--engine mpi cannot be used: torchrun"):
        resolve_transport(_config("mpi", "auto"))


def test_without_mpi4py_auto_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("parnn.data_parallel.mpi.mpi_available", lambda: False)
    resolved = resolve_transport(_config("ddp", "auto"))
    assert resolved.name == "gloo" and resolved.note.startswith("auto chose gloo: MPI needs mpi4py")
    with pytest.raises(ConfigError, match="needs mpi4py, which is not installed"):
        resolve_transport(_config("ddp", "mpi"))


def test_engines_without_collectives_have_no_transport() -> None:
    for engine in ("serial", "hogwild"):
        processes = 1 if engine == "serial" else 2
        config = DataParallelConfig.of(engine=engine, num_ranks=processes, steps=1)
        assert resolve_transport(config).name is None
    with pytest.warns(ParnnWarning, match="transport 'mpi' is ignored by engine 'hogwild'"):
        DataParallelConfig.of(engine="hogwild", transport="mpi", steps=1)


def test_bad_transports_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown transport 'tcp'.*auto, gloo, mpi"):
        DataParallelConfig.of(engine="ddp", transport="tcp")
    with pytest.raises(ConfigError, match="--engine local-sgd --transport gloo"):
        DataParallelConfig.of(engine="mpi", transport="gloo")


def test_cli_mpi_under_torchrun_is_one_error_line() -> None:
    result = CliRunner().invoke(
        cli,
        ["dp", "--engine", "ddp", "--transport", "mpi", "--model", "mlp", "--data", "digits",
         "--input", "1x8x8", "--num-samples", "200", "--steps", "1"],
        env={"RANK": "0", "WORLD_SIZE": "2"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().startswith("parnn: error: --transport mpi cannot be used")
    assert len(result.output.strip().splitlines()) == 1
