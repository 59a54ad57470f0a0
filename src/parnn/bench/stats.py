"""Statistics of repeated measurements, with the studies' outlier rule.

The GPipe study keeps only the runs within ±1.5 standard deviations of the mean before
averaging; :func:`summarize` applies that rule and says how many runs it kept.

    >>> s = summarize([1.0, 1.1, 0.9, 1.0, 5.0])
    >>> s.kept, s.num_runs
    (4, 5)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["OUTLIER_SIGMA", "Summary", "summarize"]

OUTLIER_SIGMA = 1.5  # keep runs within mean ± 1.5σ (the GPipe study's rule)


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean, spread and median of the runs kept by the outlier rule."""

    mean: float
    std: float
    median: float
    minimum: float
    maximum: float
    kept: int  # runs inside mean ± sigma·σ
    num_runs: int  # runs measured
    values: tuple[float, ...]  # the kept values, in measurement order

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(values: Sequence[float], *, sigma: float = OUTLIER_SIGMA) -> Summary:
    """Summarise ``values`` after dropping runs farther than ``sigma`` standard deviations
    from the mean (sample standard deviation over all runs). With fewer than three runs, or
    no spread, every run is kept."""
    runs = [float(v) for v in values]
    if not runs:
        raise ValueError("summarize() needs at least one value")
    if any(math.isnan(v) for v in runs):
        raise ValueError(f"summarize() got NaN among {runs}")
    kept = runs
    if len(runs) >= 3:
        mean = statistics.fmean(runs)
        spread = statistics.stdev(runs)
        if spread > 0:
            kept = [v for v in runs if abs(v - mean) <= sigma * spread]
    return Summary(
        mean=statistics.fmean(kept),
        std=statistics.stdev(kept) if len(kept) > 1 else 0.0,
        median=statistics.median(kept),
        minimum=min(kept),
        maximum=max(kept),
        kept=len(kept),
        num_runs=len(runs),
        values=tuple(kept),
    )
