"""The pipeline engine's view of the schedule registry (:mod:`parnn.partition.schedules`,
which holds every schedule's torch class, constraints and order of actions).

Kept for the imports of the engine's own modules; new code imports the registry."""

from __future__ import annotations

from parnn.partition.schedules import (
    SCHEDULES,
    ScheduleSpec,
    check_schedule,
    rank_of_stage,
    schedule_names,
    stage_indices,
)
from parnn.partition.schedules import get_schedule as _lookup

__all__ = [
    "SCHEDULES",
    "ScheduleSpec",
    "check_schedule",
    "get_schedule",
    "rank_of_stage",
    "schedule_names",
    "stage_indices",
]


def get_schedule(name: str) -> ScheduleSpec:
    """The schedule called ``name``, refused when the installed torch cannot run it."""
    return _lookup(name, runnable=True)
