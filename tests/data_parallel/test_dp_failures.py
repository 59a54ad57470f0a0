"""A worker that raises or dies ends the whole run within seconds, naming its rank; no
worker process is left behind."""

from __future__ import annotations

import time

import pytest

from parnn.data import load_dataset
from parnn.data_parallel import DataParallelConfig, FailurePlan, run_data_parallel
from parnn.errors import RankFailedError
from parnn.launch import leftover_processes
from parnn.models import build_model


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("engine", "kind", "expected"),
    [
        ("ddp", "raise", "RuntimeError: injected failure on rank 1 at step 3"),
        ("hogwild", "exit", "exited with code 17"),
        ("local-sgd", "raise", "injected failure on rank 1"),
    ],
)
def test_crashed_worker_is_named(engine: str, kind: str, expected: str) -> None:
    data = load_dataset("digits", input_shape=(1, 16, 16), num_samples=256)
    model = build_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    config = DataParallelConfig.of(
        engine=engine,
        transport="gloo" if engine != "hogwild" else "auto",  # parnn's own launcher
        num_ranks=2,
        batch_size=16,
        epochs=50,  # far longer than the test: only the failure can end it early
        fail_at=FailurePlan(rank=1, step=3, kind=kind),
        failure_timeout_s=20,
    )
    start = time.monotonic()
    with pytest.raises(RankFailedError) as caught:
        run_data_parallel(model, data, None, config, quiet=True)
    assert time.monotonic() - start < 30
    assert caught.value.rank == 1
    assert expected in str(caught.value)
    assert leftover_processes() == []
