"""The studies the harness runs, one module each, all on one resumable store
(:class:`parnn.bench.cells.StudyStore`) and rendered by one renderer
(:mod:`parnn.bench.render`, ``parnn report DIR``).

Pipeline studies (each a settings dataclass, a ``run_*_study`` function taking the measure
and predict functions, and a report builder; their cells run here or, with ``cluster``,
one Dask task each):

- :mod:`.schemes`: named layer-distribution schemes + ``auto`` per model and batch size
- :mod:`.microbatches`: the number of micro-batches per step (the optimum m)
- :mod:`.scaling`: speedup and efficiency against the number of stages

The other studies: :mod:`.demo` (``parnn demo``), :mod:`.axes` (serial, data- and
pipeline-parallel side by side), :mod:`.batch_scaling` (steps to a target accuracy against
the batch size), :mod:`.compare` (``parnn dp --compare``), :mod:`.pipedream`.

Names are imported lazily: the CLI reads lists of names (and --help) without torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parnn.bench.studies.driver import StudyOutcome
    from parnn.bench.studies.microbatches import MicrobatchesSettings, run_microbatches_study
    from parnn.bench.studies.runs import Prediction, RunMeasurement, RunSpec, StageMeasurement
    from parnn.bench.studies.scaling import ScalingSettings, run_scaling_study
    from parnn.bench.studies.schemes import SchemesSettings, run_schemes_study

_LAZY = {
    "StudyOutcome": "parnn.bench.studies.driver",
    "MicrobatchesSettings": "parnn.bench.studies.microbatches",
    "run_microbatches_study": "parnn.bench.studies.microbatches",
    "Prediction": "parnn.bench.studies.runs",
    "RunMeasurement": "parnn.bench.studies.runs",
    "RunSpec": "parnn.bench.studies.runs",
    "StageMeasurement": "parnn.bench.studies.runs",
    "ScalingSettings": "parnn.bench.studies.scaling",
    "run_scaling_study": "parnn.bench.studies.scaling",
    "SchemesSettings": "parnn.bench.studies.schemes",
    "run_schemes_study": "parnn.bench.studies.schemes",
}

__all__ = [
    "MicrobatchesSettings",
    "Prediction",
    "RunMeasurement",
    "RunSpec",
    "ScalingSettings",
    "SchemesSettings",
    "StageMeasurement",
    "StudyOutcome",
    "run_microbatches_study",
    "run_scaling_study",
    "run_schemes_study",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parnn.bench.studies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
