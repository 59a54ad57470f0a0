"""Partitions of a model into pipeline stages: the value, the named schemes, the profiler,
the communication model, the cost model, the balancers, the exact solver, the simulator and
the planner that picks the number of micro-batches.

    profile (per unit)  ->  partition_for / auto_partition  ->  partition_cost  ->  simulate
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.partition.balancers import BALANCERS, auto_partition, balance, uniform_partition
    from parnn.partition.comm import CommModel, fit_comm_model
    from parnn.partition.cost import (
        PartitionCost,
        StageCost,
        efficiency,
        in_flight_microbatches,
        partition_cost,
    )
    from parnn.partition.measure.cache import load_or_measure_comm, load_or_profile, profile_model
    from parnn.partition.measure.comm import measure_comm_model
    from parnn.partition.measure.resolve import (
        ProfileConfig,
        ProfileSource,
        parse_microbatches,
        resolve_partition,
        resolve_plan,
    )
    from parnn.partition.methods import METHODS, needs_profile, partition_for
    from parnn.partition.partition import Partition, parse_partition_spec
    from parnn.partition.plan import (
        PipelinePlan,
        PlanCandidate,
        microbatch_candidates,
        plan_pipeline,
    )
    from parnn.partition.profile import ModelProfile, UnitProfile
    from parnn.partition.schedules import SCHEDULES, Action, format_schedule, schedule_actions
    from parnn.partition.schemes import SCHEMES, scheme_partition
    from parnn.partition.simulate import Simulation, StageTimes, simulate
    from parnn.partition.solver import Solution, solve_min_max

# Names are imported lazily, so that the schedule registry (a CLI choice) and the pure
# values cost no torch import.
_LAZY = {
    "BALANCERS": "parnn.partition.balancers",
    "auto_partition": "parnn.partition.balancers",
    "balance": "parnn.partition.balancers",
    "uniform_partition": "parnn.partition.balancers",
    "load_or_measure_comm": "parnn.partition.measure.cache",
    "load_or_profile": "parnn.partition.measure.cache",
    "profile_model": "parnn.partition.measure.cache",
    "CommModel": "parnn.partition.comm",
    "fit_comm_model": "parnn.partition.comm",
    "measure_comm_model": "parnn.partition.measure.comm",
    "PartitionCost": "parnn.partition.cost",
    "StageCost": "parnn.partition.cost",
    "efficiency": "parnn.partition.cost",
    "in_flight_microbatches": "parnn.partition.cost",
    "partition_cost": "parnn.partition.cost",
    "METHODS": "parnn.partition.methods",
    "needs_profile": "parnn.partition.methods",
    "partition_for": "parnn.partition.methods",
    "Partition": "parnn.partition.partition",
    "parse_partition_spec": "parnn.partition.partition",
    "PipelinePlan": "parnn.partition.plan",
    "PlanCandidate": "parnn.partition.plan",
    "microbatch_candidates": "parnn.partition.plan",
    "plan_pipeline": "parnn.partition.plan",
    "ModelProfile": "parnn.partition.profile",
    "UnitProfile": "parnn.partition.profile",
    "ProfileConfig": "parnn.partition.measure.resolve",
    "ProfileSource": "parnn.partition.measure.resolve",
    "parse_microbatches": "parnn.partition.measure.resolve",
    "resolve_partition": "parnn.partition.measure.resolve",
    "resolve_plan": "parnn.partition.measure.resolve",
    "SCHEDULES": "parnn.partition.schedules",
    "Action": "parnn.partition.schedules",
    "format_schedule": "parnn.partition.schedules",
    "schedule_actions": "parnn.partition.schedules",
    "SCHEMES": "parnn.partition.schemes",
    "scheme_partition": "parnn.partition.schemes",
    "Simulation": "parnn.partition.simulate",
    "StageTimes": "parnn.partition.simulate",
    "simulate": "parnn.partition.simulate",
    "Solution": "parnn.partition.solver",
    "solve_min_max": "parnn.partition.solver",
}

__all__ = [
    "BALANCERS",
    "METHODS",
    "SCHEDULES",
    "SCHEMES",
    "Action",
    "CommModel",
    "ModelProfile",
    "Partition",
    "PartitionCost",
    "PipelinePlan",
    "PlanCandidate",
    "ProfileConfig",
    "ProfileSource",
    "Simulation",
    "Solution",
    "StageCost",
    "StageTimes",
    "UnitProfile",
    "auto_partition",
    "balance",
    "efficiency",
    "fit_comm_model",
    "format_schedule",
    "in_flight_microbatches",
    "load_or_measure_comm",
    "load_or_profile",
    "measure_comm_model",
    "microbatch_candidates",
    "needs_profile",
    "parse_microbatches",
    "parse_partition_spec",
    "partition_cost",
    "partition_for",
    "plan_pipeline",
    "profile_model",
    "resolve_partition",
    "resolve_plan",
    "schedule_actions",
    "scheme_partition",
    "simulate",
    "solve_min_max",
    "uniform_partition",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.partition' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps a name that is also a submodule's (``simulate``) bound to the function, as an
    eager ``from .simulate import simulate`` would: importing the submodule sets the
    package's attribute to the module, which this turns back into the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
