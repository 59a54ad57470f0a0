"""The schedule registry: one entry per schedule, its rules, and its order of actions equal
to the order torch's own schedule classes compute (``pipeline_order``, idle slots dropped)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from parnn.errors import ScheduleError
from parnn.partition.schedules import (
    SCHEDULES,
    canonical_schedule,
    check_schedule,
    format_schedule,
    get_schedule,
    rank_of_stage,
    schedule_actions,
    schedule_choices,
    stage_indices,
)

_KINDS = {"FORWARD": "F", "FULL_BACKWARD": "B", "BACKWARD_INPUT": "I", "BACKWARD_WEIGHT": "W"}
_MULTI = ["interleaved-1f1b", "looped-bfs", "zero-bubble", "zbv", "dualpipev"]


def _flat(ops: list[Any]) -> list[tuple[str, int, int]]:
    """torch's compute actions as (kind, stage, micro-batch): idle slots and gradient
    reductions dropped, overlapped F+B pairs in their order."""
    flat = []
    for op in ops:
        for action in () if op is None else op.sub_actions or (op,):
            kind = _KINDS.get(action.computation_type.name)
            if kind is not None:
                flat.append((kind, action.stage_index, action.microbatch_index))
    return flat


def _ours(schedule: str, k: int, m: int, v: int) -> list[list[tuple[str, int, int]]]:
    plans = schedule_actions(schedule, k, m, num_chunks=v)
    return [[(a.kind, a.stage, a.microbatch) for a in actions] for actions in plans]


def test_every_schedule_has_one_entry_with_a_torch_class() -> None:
    names = {
        "gpipe",
        "1f1b",
        "interleaved-1f1b",
        "looped-bfs",
        "zero-bubble",
        "zbv",
        "dualpipev",
        "pipedream",
        "pipedream-2bw",
    }
    assert set(SCHEDULES) == names
    assert set(schedule_choices()) == names | {"interleaved"}
    assert canonical_schedule(" Interleaved ") == "interleaved-1f1b"
    assert get_schedule("zbv").layout == "v"
    with pytest.raises(ScheduleError, match="unknown schedule 'nope'"):
        get_schedule("nope")
    from torch.distributed.pipelining import schedules as torch_schedules

    for spec in SCHEDULES.values():
        if not spec.asynchronous:
            assert spec.available
            assert isinstance(getattr(torch_schedules, spec.torch_class), type)


def test_the_registry_imports_no_torch() -> None:
    code = (
        "import sys, parnn.partition.schedules as s; s.schedule_actions('zbv', 2, 4, "
        "num_chunks=2); print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("schedule", "ranks", "per_rank", "m", "message"),
    [
        ("1f1b", 4, 1, 2, "at least as many micro-batches as stages"),
        ("gpipe", 2, 2, 4, "one stage per rank"),
        ("interleaved-1f1b", 2, 1, 4, "interleaves 2 or more"),
        ("interleaved-1f1b", 4, 2, 9, "not a multiple of 2"),
        ("zero-bubble", 4, 2, 9, "not a multiple of 2"),
        ("zbv", 2, 3, 4, "needs exactly --stages-per-rank 2"),
        ("dualpipev", 2, 2, 3, r"--microbatches >= 2 x stages \(4\)"),
        ("looped-bfs", 1, 2, 4, "at least 2 ranks"),
        ("pipedream-2bw", 4, 1, 2, "pipedream-2bw accumulates"),
    ],
)
def test_settings_the_runtime_cannot_run_are_refused(
    schedule: str, ranks: int, per_rank: int, m: int, message: str
) -> None:
    spec = get_schedule(schedule)
    with pytest.raises(ScheduleError, match=message):
        check_schedule(spec, num_ranks=ranks, stages_per_rank=per_rank, num_microbatches=m)


def test_layouts_place_stages_as_the_runtime_does() -> None:
    loop, v = get_schedule("interleaved-1f1b"), get_schedule("dualpipev")
    assert stage_indices(loop, rank=1, num_ranks=3, stages_per_rank=2) == [1, 4]
    assert stage_indices(v, rank=0, num_ranks=3, stages_per_rank=2) == [0, 5]
    for spec in (loop, v):
        for rank in range(3):
            for stage in stage_indices(spec, rank=rank, num_ranks=3, stages_per_rank=2):
                assert rank_of_stage(spec, stage, 3) == rank


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_single_stage_orders_are_torchs(schedule: str, k: int) -> None:
    # torch's ScheduleGPipe runs the backwards in micro-batch order 0..m-1, as ours does.
    from torch.distributed.pipelining import schedules as torch_schedules

    cls = getattr(torch_schedules, get_schedule(schedule).torch_class)
    for m in range(k if schedule == "1f1b" else 1, 9):
        order = cls._get_pipeline_order(SimpleNamespace(_num_stages=k, _n_microbatches=m))
        expected = [_flat(order[r]) for r in range(k)]
        ours = _ours(schedule, k, m, 1)
        if schedule == "1f1b":
            # torch's 1F1B *IR* numbers the last rank's forwards from 1 (it increments its
            # counter before the first use when there is no warm-up); what its
            # _step_microbatches runs there, and what we replay, is F0 B0 F1 B1 ...
            assert ours[k - 1] == [(kind, k - 1, j) for j in range(m) for kind in "FB"]
            ours, expected = ours[:-1], expected[:-1]
        assert ours == expected


@pytest.mark.parametrize("schedule", _MULTI)
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("v", [1, 2, 3])
def test_multi_stage_orders_are_torchs(schedule: str, k: int, v: int) -> None:
    from torch.distributed.pipelining import schedules as torch_schedules

    spec = get_schedule(schedule)
    cls = getattr(torch_schedules, spec.torch_class)
    checked = 0
    for m in range(1, 13):
        try:
            check_schedule(spec, num_ranks=k, stages_per_rank=v, num_microbatches=m)
        except ScheduleError:
            continue
        rounds = max(1, m // k)
        fake = SimpleNamespace(
            n_local_stages=v,
            microbatches_per_round=m // rounds,
            pp_group_size=k,
            _n_microbatches=m,
            num_stages=k * v,
            _stages=[None] * v,
        )
        expected = [_flat(cls._calculate_single_rank_operations(fake, r)) for r in range(k)]
        assert _ours(schedule, k, m, v) == expected, (k, v, m)
        checked += 1
    assert (
        checked > 0 or spec.fixed_stages_per_rank not in (None, v) or v < spec.min_stages_per_rank
    )


def test_split_backward_grids() -> None:
    # ZBV, 2 ranks x 2 stages in a V (rank0 holds stages 0 and 3), 2 micro-batches.
    # ".1" is the rank's second stage.
    assert format_schedule(schedule_actions("zbv", 2, 2, num_chunks=2)) == "\n".join(
        [
            "rank0: F0.0 F1.0 F0.1 I0.1 W0.1 F1.1 I1.1 W1.1 I0.0 W0.0 I1.0 W1.0",
            "rank1: F0.0 F0.1 F1.0 F1.1 I0.1 W0.1 I0.0 W0.0 I1.1 W1.1 I1.0 W1.0",
        ]
    )
