"""A failing stage ends the whole run quickly, naming the rank; bad settings are refused in
one line before any process starts."""

from __future__ import annotations

import time

import psutil  # noqa: F401  (the type of leftover_processes())
import pytest
from click.testing import CliRunner

from parnn.cli import cli
from parnn.errors import ConfigError, PartitionError, RankFailedError, ScheduleError
from parnn.launch import leftover_processes
from parnn.pipeline import PipelineConfig, plan_pipeline_run, run_pipeline


def _children() -> list[psutil.Process]:
    return leftover_processes()  # descendants other than multiprocessing's own helpers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_stage_that_raises_ends_every_process_and_names_its_rank(failing_rank: int) -> None:
    config = PipelineConfig.of(
        model="lenet5",
        num_ranks=2,
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
    assert time.monotonic() - started < 60  # generous: the launcher stops the rest in ~1 s
    deadline = time.monotonic() + 10
    while _children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _children()


@pytest.mark.timeout(120)
def test_the_cli_prints_the_failing_rank_in_one_line_and_exits_non_zero() -> None:
    result = CliRunner().invoke(
        cli, ["pipeline", "--steps", "5", "--no-eval", "--quiet", "--fail-at", "1:1"]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("parnn: error:")]
    assert lines == [lines[0]] and "rank 1 failed" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"partition": "0,3,3,5"}, PartitionError, "stage 1 is empty"),
        ({"partition": "0,4,3"}, PartitionError, "strictly increasing"),
        ({"partition": "0,3,9"}, PartitionError, "must be 5"),
        (
            {"partition": "0,2,5", "num_ranks": 4},
            PartitionError,
            "has 2 stages but 4 were asked for",
        ),
        ({"num_ranks": 6}, PartitionError, "only 5 units"),
        ({"schedule": "pipedream-3bw"}, ScheduleError, "unknown schedule"),
        (
            {"schedule": "1f1b", "num_ranks": 4, "num_microbatches": 2},
            ScheduleError,
            "at least as many",
        ),
        ({"schedule": "zbv"}, ScheduleError, "exactly --stages-per-rank 2"),
        ({"partition": "middle-heavy"}, PartitionError, "middle-load"),
    ],
)
def test_bad_settings_fail_before_any_process_starts(
    settings: dict[str, object], error: type[Exception], message: str
) -> None:
    config = PipelineConfig.of(model="lenet5", **settings)
    with pytest.raises(error, match=message):
        plan_pipeline_run(config)
    assert not _children()


def test_batch_size_must_split_into_equal_microbatches() -> None:
    with pytest.raises(ConfigError, match="not divisible by 3 micro-batches"):
        PipelineConfig.of(batch_size=32, num_microbatches=3)


def test_cli_bad_input_is_one_line_with_exit_code_2() -> None:
    result = CliRunner().invoke(cli, ["pipeline", "--schedule", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("parnn: error: unknown schedule 'nope'")
    assert "gpipe" in result.output and "Traceback" not in result.output
