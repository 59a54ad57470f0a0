"""Pipeline-parallel training on ``torch.distributed.pipelining``: one pinned process per
stage (or per group of stages), rank 0 the master, measured per stage and micro-batch."""

from parnn.pipeline.config import PipelineConfig
from parnn.pipeline.result import BoundaryStats, PipelineResult, StageStats
from parnn.pipeline.runtime import PipelinePlan, plan_pipeline_run, run_pipeline

__all__ = [
    "BoundaryStats",
    "PipelineConfig",
    "PipelinePlan",
    "PipelineResult",
    "StageStats",
    "plan_pipeline_run",
    "run_pipeline",
]
