"""The studies' measure function on the real pipeline engine (:mod:`parnn.pipeline`).

:class:`PipelineEngine` turns a :class:`~parnn.bench.studies.runs.RunSpec` into a
:class:`~parnn.pipeline.PipelineConfig` on parnn's synthetic data (``input_shape``, 10
classes, twice the mini-batch of samples so that every step has a full batch), runs it
with :func:`~parnn.pipeline.run_pipeline` (pinned processes, gloo), and maps the result
back: the time of every timed step, each stage's forward and backward compute and its
time blocked on a neighbour, the bytes crossing every boundary, peak memory.

No evaluation runs (``evaluate=False``): the studies time training steps only. A
cost-aware partition (``auto``, ``time``...) is resolved by the pipeline with profiles
cached in ``cache_dir``, the same cache the simulator's predictions read.
"""

from __future__ import annotations

from pathlib import Path

from parnn.bench.studies.runs import RunMeasurement, RunSpec, StageMeasurement
from parnn.partition.measure.resolve import resolve_partition
from parnn.pipeline import PipelineConfig, run_pipeline

__all__ = [
    "PipelineEngine",
    "pipeline_config",
    "resolve_boundaries",
]

_VAL_FRACTION = 0.2  # the pipeline's held-out share (unused: no evaluation)


def pipeline_config(spec: RunSpec) -> PipelineConfig:
    """The :class:`~parnn.pipeline.PipelineConfig` of one study run."""
    # Enough synthetic samples that the training split (80 %) holds a whole mini-batch.
    num_samples = max(32, 2 * spec.batch_size)
    return PipelineConfig.of(
        model=spec.model,
        data="synthetic",
        input_shape=tuple(spec.input_shape),
        num_samples=num_samples,
        num_ranks=spec.num_ranks,
        partition=spec.partition,
        schedule=spec.schedule,
        num_microbatches=spec.num_microbatches,
        batch_size=spec.batch_size,
        steps=spec.warmup_steps + spec.steps,
        seed=spec.seed,
        val_fraction=_VAL_FRACTION,
        evaluate=False,
        threads=spec.threads,
        measure_warmup_steps=spec.warmup_steps,
    )


class PipelineEngine:
    """``engine(spec) -> RunMeasurement``: one launch of the pipeline per call, reporting
    every timed step (so one launch can serve several repeats)."""

    def __init__(self, *, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def __call__(self, spec: RunSpec) -> RunMeasurement:
        result = run_pipeline(pipeline_config(spec), quiet=True, profile_cache_dir=self.cache_dir)
        assert result is not None, "the study runs the pipeline from its master process"
        step_times = tuple(float(t) for t in result.step_times_s)
        boundary_bytes = {int(b.after_stage): int(b.activation_bytes) for b in result.boundaries}
        stages = tuple(
            StageMeasurement(
                forward_s=float(stage.forward_s),
                backward_s=float(stage.backward_s),
                wait_s=float(stage.wait_s),
                boundary_bytes=boundary_bytes.get(int(stage.stage), 0),
                peak_rss_bytes=int(float(stage.peak_rss_mib) * 2**20),
            )
            for stage in sorted(result.stages, key=lambda s: s.stage)
        )
        return RunMeasurement(
            step_times_s=step_times,
            boundaries=tuple(int(b) for b in result.partition),
            stages=stages,
        )


def resolve_boundaries(spec: RunSpec, *, cache_dir: str | Path | None) -> tuple[int, ...]:
    """The boundaries ``spec.partition`` names for ``spec``'s model, stages and micro-batch
    size, resolved as the pipeline resolves them (a cost-aware method from the profile
    cached in ``cache_dir``)."""
    partition = resolve_partition(
        spec.partition,
        model=spec.model,
        num_stages=spec.num_ranks,
        batch_size=spec.batch_size,
        num_microbatches=spec.num_microbatches,
        schedule=spec.schedule,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        cache_dir=cache_dir,
        threads=spec.threads,
    )
    return partition.boundaries
