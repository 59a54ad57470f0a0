"""The job pool: jobs start in the order given, a failing or dying job is recorded while
the others go on, workers are pinned, and nothing is left running afterwards."""

from __future__ import annotations

import pytest
from kfold_test_models import toy_job

from parnn.errors import ConfigError
from parnn.jobs.pool import PoolConfig, PoolEvent, WorkerPool
from parnn.launch import leftover_processes, usable_cores


def _run(payloads: list[str], **config: object) -> list[PoolEvent]:
    events: list[PoolEvent] = []
    context = {"sleep_s": float(config.pop("sleep_s", 0.0))}  # type: ignore[arg-type]
    pool = WorkerPool(
        toy_job,
        context,
        PoolConfig(**{"num_workers": 2, "preload": ("kfold_test_models",), **config}),  # type: ignore[arg-type]
    )
    pool.run([(f"job{i}", payload) for i, payload in enumerate(payloads)], events.append)
    return events


@pytest.mark.timeout(120)
def test_jobs_start_in_the_given_order_on_one_worker() -> None:
    events = _run(["a", "b", "c", "d"], num_workers=1)
    started = [event.key for event in events if event.kind == "started"]
    assert started == ["job0", "job1", "job2", "job3"]
    finished = [event for event in events if event.kind == "finished"]
    assert [event.result["payload"] for event in finished] == ["a", "b", "c", "d"]  # type: ignore[index]
    progress = [event for event in events if event.kind == "progress"]
    assert len(progress) == 8 and all(event.total == 2 for event in progress)
    assert leftover_processes() == []


@pytest.mark.timeout(120)
def test_a_failing_and_a_dying_job_are_recorded_and_the_others_finish() -> None:
    events = _run(["a", "boom", "die", "b", "c"], num_workers=2)
    outcome = {e.key: e for e in events if e.kind in ("finished", "failed")}
    assert sorted(outcome) == ["job0", "job1", "job2", "job3", "job4"]
    assert outcome["job1"].kind == "failed"
    assert outcome["job1"].error == "ValueError: boom happened"
    assert "toy_job" in (outcome["job1"].detail or "")  # the traceback travels too
    assert outcome["job2"].kind == "failed"
    assert outcome["job2"].error is not None and "SIGKILL" in outcome["job2"].error
    assert all(outcome[key].kind == "finished" for key in ("job0", "job3", "job4"))
    assert leftover_processes() == []


@pytest.mark.timeout(120)
def test_workers_are_pinned_to_their_own_core_with_their_threads() -> None:
    cores = usable_cores()
    if len(cores) < 2:
        pytest.skip("needs two usable cores")
    events = _run(["a", "b", "c", "d"], num_workers=2, sleep_s=0.05)
    seen = {
        e.worker: (tuple(e.result["affinity"]), e.result["threads"])  # type: ignore[index]
        for e in events
        if e.kind == "finished"
    }
    assert seen[0] == ((cores[0],), 1)
    assert seen[1] == ((cores[1],), 1)


@pytest.mark.timeout(60)
def test_a_context_that_cannot_be_pickled_is_a_config_error() -> None:
    pool = WorkerPool(toy_job, {"bad": lambda: None}, PoolConfig(num_workers=1))
    with pytest.raises(ConfigError, match="cannot be sent to the worker processes"):
        pool.run([("job0", "a")], lambda event: None)
    assert leftover_processes() == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"num_workers": 0}, "num_workers=0"),
        ({"threads_per_worker": 0}, "threads_per_worker=0"),
        ({"start_method": "fork"}, "start_method='fork'"),
        ({"cores": (9999,)}, "cores=(9999,)"),
    ],
)
def test_pool_config_rejects_bad_values(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        PoolConfig(**{"num_workers": 1, **changes})  # type: ignore[arg-type]
