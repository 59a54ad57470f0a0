"""The simulator's prediction for a study cell, priced with the model's own profile.

For the partition a run actually used, :class:`SimulatorPredictor` profiles the model at the
run's micro-batch size (once per size, cached on disk, so that a resumed study does not
measure again), prices every stage with the machine's communication model and replays the
schedule (:mod:`parnn.partition.simulate`). It predicts the step, the forward passes alone
(the same schedule with free backward passes), each stage's compute and communication, and
the partition efficiency with and without communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from parnn.bench.studies.runs import Prediction, RunSpec
from parnn.partition.measure.resolve import ProfileConfig, ProfileSource
from parnn.partition.partition import Partition
from parnn.partition.plan import plan_pipeline
from parnn.partition.simulate import StageTimes, simulate

__all__ = ["SimulatorPredictor"]


class SimulatorPredictor:
    """``predictor(spec, boundaries) -> Prediction``.

    ``cache_dir`` holds the profiles and the communication model (a study keeps them in its
    results directory); ``comm='none'`` prices transfers as free.
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None,
        comm: str = "measure",
        warmup: int = 2,
        repeats: int = 7,
    ) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.comm = comm
        self.warmup = warmup
        self.repeats = repeats
        self._sources: dict[tuple[object, ...], ProfileSource] = {}

    def _source(self, spec: RunSpec) -> ProfileSource:
        key = (spec.model, spec.input_shape, spec.num_classes, spec.threads, spec.seed)
        if key not in self._sources:
            # Keyed as the pipeline keys its own profiles (model name, input, classes,
            # micro-batch size, threads): a cost-aware partition the pipeline resolved and the
            # prediction for it come from the same cached profile.
            self._sources[key] = ProfileSource(
                ProfileConfig(
                    model=spec.model,
                    input_shape=spec.input_shape,
                    num_classes=spec.num_classes,
                    threads=spec.threads,
                    cache_dir=self.cache_dir,
                    comm=self.comm,
                    warmup=self.warmup,
                    repeats=self.repeats,
                    seed=spec.seed,
                )
            )
        return self._sources[key]

    def __call__(self, spec: RunSpec, boundaries: Sequence[int]) -> Prediction:
        m = spec.num_microbatches
        plan = plan_pipeline(
            Partition(tuple(boundaries)),
            profile_for=self._source(spec),
            batch_size=spec.batch_size,
            num_stages=spec.num_ranks,
            schedule=spec.schedule,
            num_microbatches=m,
        )
        chosen = plan.chosen
        stages = chosen.cost.stages
        times = StageTimes.from_cost(chosen.cost)
        forward_only = simulate(
            StageTimes(
                forward_s=times.forward_s,
                backward_s=(0.0,) * times.num_stages,
                recv_forward_s=times.recv_forward_s,
                recv_backward_s=(0.0,) * times.num_stages,
                link_latency_s=times.link_latency_s,
            ),
            schedule=spec.schedule,
            num_microbatches=m,
        )
        return Prediction(
            step_time_s=chosen.step_time_s,
            forward_time_s=forward_only.step_time_s,
            stage_forward_s=tuple(m * s.forward_s for s in stages),
            stage_backward_s=tuple(m * s.backward_s for s in stages),
            stage_comm_s=tuple(m * s.comm_s for s in stages),
            stage_update_s=tuple(s.update_s for s in stages),
            efficiency=chosen.cost.efficiency,
            efficiency_without_comm=chosen.cost.efficiency_without_comm,
            bubble_fraction=chosen.simulation.bubble_fraction,
        )
