"""The planner across axes: how to spend the cores (threads, data, pipeline, hybrid) for a
model and a batch, predicted from measured profiles and costs, and verified.

    enumerate_candidates -> predict (profiles, contention, all-reduce, simulator)
                         -> rank, explain -> measure_candidate (verify)
"""

from parnn.plan.config import PlanConfig
from parnn.plan.enumerate import AXES, Candidate, enumerate_candidates, thread_counts
from parnn.plan.machine import MachineModel, allreduce_s
from parnn.plan.planner import ASSUMPTIONS, PlannedCandidate, PlanResult, make_plan
from parnn.plan.predict import Prediction, predict, serial_step_s
from parnn.plan.profiles import ProfileSource, amdahl_fraction, extrapolate_profile
from parnn.plan.verify import (
    Measurement,
    VerifySettings,
    measure_candidate,
    measure_run,
    steady_samples_per_s,
)

__all__ = [
    "ASSUMPTIONS",
    "AXES",
    "Candidate",
    "MachineModel",
    "Measurement",
    "PlanConfig",
    "PlanResult",
    "PlannedCandidate",
    "Prediction",
    "ProfileSource",
    "VerifySettings",
    "allreduce_s",
    "amdahl_fraction",
    "enumerate_candidates",
    "extrapolate_profile",
    "make_plan",
    "measure_candidate",
    "measure_run",
    "predict",
    "serial_step_s",
    "steady_samples_per_s",
    "thread_counts",
]
