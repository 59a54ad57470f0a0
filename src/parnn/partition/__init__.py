"""Partitions of a model into pipeline stages: the value, the named schemes, the profiler,
the communication model, the cost model, the balancers, the exact solver, the simulator and
the planner that picks the number of micro-batches.

    profile (per unit)  ->  partition_for / auto_partition  ->  partition_cost  ->  simulate
"""

from parnn.partition.balancers import BALANCERS, auto_partition, balance, uniform_partition
from parnn.partition.cache import load_or_measure_comm, load_or_profile, profile_model
from parnn.partition.comm import CommModel, fit_comm_model, measure_comm_model
from parnn.partition.cost import (
    PartitionCost,
    StageCost,
    efficiency,
    in_flight_microbatches,
    partition_cost,
)
from parnn.partition.methods import METHODS, needs_profile, partition_for
from parnn.partition.partition import Partition, parse_partition_spec
from parnn.partition.plan import PipelinePlan, PlanCandidate, microbatch_candidates, plan_pipeline
from parnn.partition.profile import ModelProfile, UnitProfile
from parnn.partition.resolve import (
    ProfileConfig,
    ProfileSource,
    parse_microbatches,
    resolve_partition,
    resolve_plan,
)
from parnn.partition.schedules import SCHEDULES, Action, format_schedule, schedule_actions
from parnn.partition.schemes import SCHEMES, scheme_partition
from parnn.partition.simulate import Simulation, StageTimes, simulate
from parnn.partition.solver import Solution, solve_min_max

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
