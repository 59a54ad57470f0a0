"""The studies the harness re-runs, one module each; importing this package registers their
report builders with :mod:`parnn.bench.report`.

Pipeline studies (each a settings dataclass, a ``run_*_study`` function taking the measure
and predict functions, and a report builder):

- :mod:`.schemes`: named layer-distribution schemes + ``auto`` per model and batch size
- :mod:`.microbatches`: the number of micro-batches per step (the optimum m)
- :mod:`.scaling`: speedup and efficiency against the number of stages
"""

from parnn.bench.studies import microbatches_report, scaling_report, schemes_report
from parnn.bench.studies.driver import StudyOutcome
from parnn.bench.studies.microbatches import MicrobatchesSettings, run_microbatches_study
from parnn.bench.studies.runs import Prediction, RunMeasurement, RunSpec, StageMeasurement
from parnn.bench.studies.scaling import ScalingSettings, run_scaling_study
from parnn.bench.studies.schemes import SchemesSettings, run_schemes_study

__all__ = [
    "MicrobatchesSettings",
    "Prediction",
    "RunMeasurement",
    "RunSpec",
    "ScalingSettings",
    "SchemesSettings",
    "StageMeasurement",
    "StudyOutcome",
    "microbatches_report",
    "run_microbatches_study",
    "run_scaling_study",
    "run_schemes_study",
    "scaling_report",
    "schemes_report",
]
