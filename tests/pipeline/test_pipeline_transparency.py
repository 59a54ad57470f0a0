"""The test that proves the engine: k pipelined training steps give the reference trainer's
parameters on the same seed and data (gpipe and 1f1b, 2 and 4 stages, two models; the five
multi-stage schedules, 2 ranks x 2 stages; over shared memory, the default transport, and
over gloo). Every schedule of the registry is trained here but PipeDream's, whose exactness
against its own emulator is tests/pipeline/test_pipeline_pipedream.py's.

Tolerance: rtol 1e-4, atol 1e-5. Splitting a mini-batch into micro-batches changes only
the order of floating-point sums, so the difference stays at rounding level.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pipeline_reference import reference_state

from parnn.pipeline import PipelineConfig, run_pipeline
from parnn.train import OptimizerConfig
from parnn.train.setup import setup_training

SMALL_VGG = f"{Path(__file__).with_name('small_vgg.py')}:build"
STEPS = 3


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 stages on 2 cores is allowed
@pytest.mark.parametrize(
    ("model", "input_shape", "stages", "schedule", "stages_per_rank", "transport"),
    [
        ("lenet5", None, 2, "gpipe", 1, "shm"),
        ("lenet5", None, 2, "1f1b", 1, "shm"),
        ("lenet5", None, 4, "gpipe", 1, "auto"),
        ("lenet5", None, 4, "1f1b", 1, "shm"),
        (SMALL_VGG, (1, 16, 16), 2, "gpipe", 1, "shm"),
        (SMALL_VGG, (1, 16, 16), 4, "1f1b", 1, "shm"),
        ("lenet5", None, 2, "interleaved-1f1b", 2, "shm"),
        ("lenet5", None, 2, "zero-bubble", 2, "shm"),
        ("lenet5", None, 2, "zbv", 2, "shm"),
        ("lenet5", None, 2, "looped-bfs", 2, "shm"),
        ("lenet5", None, 2, "dualpipev", 2, "shm"),
        ("lenet5", None, 2, "gpipe", 1, "gloo"),
        ("lenet5", None, 2, "1f1b", 1, "gloo"),
    ],
)
def test_pipeline_steps_equal_the_reference_trainer(
    model: str,
    input_shape: tuple[int, ...] | None,
    stages: int,
    schedule: str,
    stages_per_rank: int,
    transport: str,
) -> None:
    batch_size = 32
    config = PipelineConfig.of(
        model=model,
        data="digits",
        input_shape=input_shape,
        num_ranks=stages,
        stages_per_rank=stages_per_rank,
        transport=transport,
        schedule=schedule,
        num_microbatches=4,
        batch_size=batch_size,
        steps=STEPS,
        partition="equal-load",
        optimizer=OptimizerConfig(name="adam", lr=0.003),
        lr_schedule="constant",
        evaluate=False,
        return_parameters=True,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None and result.parameters is not None
    assert result.transport["used"] == ("gloo" if transport == "gloo" else "shm")
    expected = reference_state(model, input_shape, batch_size, STEPS)
    assert sorted(result.parameters) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(result.parameters[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    # ... and the parameters did move: the comparison is not between two untouched models.
    setup = setup_training(model, "digits", input_shape=input_shape, seed=0)
    initial = setup.model.state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected)
