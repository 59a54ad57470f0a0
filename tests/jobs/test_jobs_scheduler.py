"""Longest job first: the order, the simulated makespan, and the cost estimates."""

from __future__ import annotations

import pytest

from parnn.errors import ConfigError
from parnn.jobs.scheduler import estimate_step_costs, list_schedule, longest_first
from parnn.jobs.spec import JobSpec, job_seed


def _job(model: str, fold: int, cost: float) -> JobSpec:
    return JobSpec(
        model=model, lr_schedule="cosine", fold=fold, seed=0, total_steps=10, cost_s=cost
    )


def test_longest_first_sorts_by_cost_and_keeps_ties_in_order() -> None:
    jobs = [_job("mlp", 0, 1.0), _job("vgg16", 0, 9.0), _job("mlp", 1, 1.0), _job("vgg16", 1, 9.0)]
    ordered = longest_first(jobs, cost=lambda job: job.cost_s)
    assert [job.job_id for job in ordered] == [
        "vgg16/cosine/fold0",
        "vgg16/cosine/fold1",
        "mlp/cosine/fold0",
        "mlp/cosine/fold1",
    ]


def test_longest_first_shortens_the_makespan_of_a_mixed_pool() -> None:
    # 4 short jobs then one long one on 2 workers: given order ends with the long job alone.
    costs = [1.0, 1.0, 1.0, 1.0, 4.0]
    given = list_schedule(costs, num_workers=2)
    lpt = list_schedule(longest_first(costs, cost=float), num_workers=2)
    assert given.makespan == 6.0
    assert lpt.makespan == 4.0
    assert lpt.worker == (0, 1, 1, 1, 1)
    assert lpt.start == (0.0, 0.0, 1.0, 2.0, 3.0)


def test_list_schedule_rejects_no_workers() -> None:
    with pytest.raises(ConfigError, match="num_workers"):
        list_schedule([1.0], num_workers=0)


def test_param_proxy_ranks_vgg16_above_lenet5() -> None:
    costs = estimate_step_costs(
        {"lenet5": "lenet5", "vgg16": "vgg16"},
        input_shape=(1, 32, 32),
        num_classes=10,
        batch_size=8,
        method="params",
    )
    assert costs["vgg16"] > 100 * costs["lenet5"] > 0


def test_profile_costs_are_seconds_per_step() -> None:
    costs = estimate_step_costs(
        {"mlp": "mlp", "lenet5": "lenet5"},
        input_shape=(1, 28, 28),
        num_classes=10,
        batch_size=16,
        method="profile",
    )
    assert set(costs) == {"mlp", "lenet5"}
    assert all(0 < cost < 5 for cost in costs.values())


def test_unknown_cost_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown cost method 'guess'"):
        estimate_step_costs(
            {"mlp": "mlp"}, input_shape=(1, 8, 8), num_classes=10, batch_size=4, method="guess"
        )


def test_job_seed_depends_on_model_and_fold_not_on_the_schedule() -> None:
    assert job_seed(0, "mlp", 0) == job_seed(0, "mlp", 0)
    assert len({job_seed(0, "mlp", 0), job_seed(0, "mlp", 1), job_seed(0, "lenet5", 0)}) == 3
    assert job_seed(1, "mlp", 0) != job_seed(0, "mlp", 0)
    a = JobSpec(model="m/x.py:b", lr_schedule="warm", fold=2, seed=1, total_steps=1, cost_s=0)
    assert a.job_id == "m/x.py:b/warm/fold2"
    assert "/" not in a.file_stem and ":" not in a.file_stem
