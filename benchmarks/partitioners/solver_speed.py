"""How long the exact solver takes: n units into k stages, random costs and cut costs,
with and without a memory cap (median of 5 runs). The issue's target: 1,000 units into 64
stages in well under a second.

    .venv/bin/python benchmarks/partitioners/solver_speed.py     # writes results/solver_speed.md
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from parnn.partition.solver import solve_min_max
from parnn.results import atomic_write_text, machine_facts


def timed(repeats: int = 5, **problem: Any) -> float:
    """Median seconds of ``solve_min_max(**problem)``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solve_min_max(**problem)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    facts = machine_facts()
    lines = [
        "# Exact solver speed (median of 5 runs)",
        "",
        f"Machine: {facts['cpu_model']}, load average {facts['load_average_1m']} (1 min), "
        f"numpy {facts['numpy']}",
        "",
        "| units | stages | memory cap | median s |",
        "| ---: | ---: | --- | ---: |",
    ]
    for n, k in ((100, 8), (1000, 8), (1000, 64), (2000, 64)):
        costs = rng.random(n)
        cuts = np.concatenate([[0.0], rng.random(n - 1) * 0.1, [0.0]])
        fixed = rng.integers(0, 100, n).astype(float)
        saved = rng.integers(0, 100, n).astype(float)
        flights = [min(8, k - i) for i in range(k)]
        cap = 3 * (fixed.sum() + 8 * saved.sum()) / k
        plain = timed(unit_costs=costs, num_stages=k, cut_costs=cuts)
        capped = timed(
            unit_costs=costs,
            num_stages=k,
            cut_costs=cuts,
            fixed_bytes=fixed,
            per_microbatch_bytes=saved,
            in_flight=flights,
            max_stage_memory=cap,
        )
        lines.append(f"| {n} | {k} | none | {plain:.3f} |")
        lines.append(f"| {n} | {k} | yes | {capped:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    atomic_write_text(Path(__file__).resolve().parent / "results" / "solver_speed.md", text)


if __name__ == "__main__":
    main()
