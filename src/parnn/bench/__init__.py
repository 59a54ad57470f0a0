"""Benchmark harness: resumable studies, statistics with the outlier rule, plots and
reports rendered from results."""

from parnn.bench.cells import Cell, StudyStore
from parnn.bench.stats import Summary, summarize

__all__ = ["Cell", "StudyStore", "Summary", "summarize"]
