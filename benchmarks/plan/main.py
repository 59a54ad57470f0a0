"""Does `parnn plan` pick the fastest way to spend the cores, and how close are its
predictions? Every candidate it enumerates on this machine is verified (run for a few
steps through the real engines), for several models and batch sizes.

Per cell (model, data, batch): ``make_plan`` with ``verify`` = every candidate, on this
machine's cores, each run ``--verify-repeats`` times in rotating rounds (its figure is the
median: with one run, the best of ten noisy figures is biased up, and ties within a few
percent fall either way). Reported: the picked configuration's measured samples/s over the best
measured (target >= 0.95 in every cell), and the absolute prediction error
``|predicted - measured| / measured`` per axis (target: median <= 15%). The 1-minute load
average is written beside every cell: on a shared machine it explains more than the code.

    .venv/bin/python benchmarks/plan/main.py                       # every cell (~30 min quiet)
    .venv/bin/python benchmarks/plan/main.py --models lenet5,user --batch-sizes 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parnn.partition.measure.cache import default_cache_dir
from parnn.plan import PlanConfig, make_plan
from parnn.results import machine_facts, write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USER_MODEL = str(HERE / "user_model.py") + ":build"
SYNTHETIC = (3, 32, 32)
SHARED_DATA = Path(os.environ.get("PARNN_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True, slots=True)
class Cell:
    """One model/data setting at one batch size."""

    name: str
    model: str
    data: str
    input_shape: tuple[int, ...]
    batch_size: int
    data_dir: Path | None = None


def cells(models: list[str], batch_sizes: list[int], mnist_dir: Path) -> list[Cell]:
    have_mnist = (mnist_dir / "t10k-images-idx3-ubyte.gz").exists()
    out = []
    for batch in batch_sizes:
        for name in models:
            if name == "lenet5":
                data = "mnist" if have_mnist else "digits"
                out.append(
                    Cell(
                        name, "lenet5", data, (1, 28, 28), batch, mnist_dir if have_mnist else None
                    )
                )
            elif name == "user":
                out.append(Cell(name, USER_MODEL, "synthetic", SYNTHETIC, batch))
            else:
                out.append(Cell(name, name, "synthetic", SYNTHETIC, batch))
    return out


def run_cell(
    cell: Cell,
    *,
    steps: int,
    warmup: int,
    verify_seconds: float,
    verify_repeats: int,
    cache_dir: Path,
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    config = PlanConfig(
        model=cell.model,
        input_shape=cell.input_shape,
        batch_size=cell.batch_size,
        verify=10_000,  # every runnable candidate
        data=cell.data,
        data_dir=cell.data_dir,
        steps=steps,
        warmup_steps=warmup,
        verify_seconds=verify_seconds,
        verify_repeats=verify_repeats,
        cache_dir=cache_dir,
    )
    result = make_plan(config)
    payload = result.to_dict()
    measured = [c for c in payload["candidates"] if c["measured_samples_per_s"]]
    picked = next(c for c in payload["candidates"] if c["runnable"])
    best = max(measured, key=lambda c: c["measured_samples_per_s"])
    return {
        "cell": cell.name,
        "model": cell.model,
        "data": cell.data,
        "batch_size": cell.batch_size,
        "picked": picked["config"]["label"],
        "picked_measured": picked["measured_samples_per_s"],
        "best_measured": best["config"]["label"],
        "best_measured_samples_per_s": best["measured_samples_per_s"],
        "picked_share_of_best": (picked["measured_samples_per_s"] or 0.0)
        / best["measured_samples_per_s"],
        "failed": [
            {"label": c["config"]["label"], "error": c["verify_error"]}
            for c in payload["candidates"]
            if c["verify_error"]
        ],
        "candidates": payload["candidates"],
        "reason": payload["reason"],
        "contention": payload["machine"]["model_of_machine"]["contention"],
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 1),
    }


def errors_by_axis(results: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    errors: dict[str, list[float]] = {}
    for cell in results:
        for c in cell["candidates"]:
            if c["prediction_error"] is not None:
                errors.setdefault(c["axis"], []).append(abs(c["prediction_error"]))
    everything = [e for values in errors.values() for e in values]
    summary = {
        axis: {"median": statistics.median(values), "max": max(values), "count": len(values)}
        for axis, values in errors.items()
    }
    if everything:
        summary["all"] = {
            "median": statistics.median(everything),
            "max": max(everything),
            "count": len(everything),
        }
    return summary


def print_cell(cell: dict[str, Any]) -> None:
    share = cell["picked_share_of_best"]
    print(
        f"\n{cell['cell']} b{cell['batch_size']} ({cell['data']}), load {cell['load_average_1m']}, "
        f"{cell['seconds']} s: picked {cell['picked']} = {share:.2f}x the best measured "
        f"({cell['best_measured']}) {'OK' if share >= 0.95 else 'MISSED'}"
    )
    for failure in cell["failed"]:
        print(f"  FAILED {failure['label']}: {failure['error'][:200]}")
    for c in cell["candidates"]:
        measured = c["measured_samples_per_s"]
        error = c["prediction_error"]
        print(
            f"  {c['rank']:>2} {c['axis']:<9}{c['config']['label']:<32}"
            f"{c['predicted_samples_per_s']:>10,.0f}"
            f"{'-' if measured is None else f'{measured:,.0f}':>10}"
            f"{'-' if error is None else f'{100 * error:+.0f}%':>8}"
            f"  {' '.join(f'{run:,.0f}' for run in c['measured_runs'])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,alexnet,vgg16,mobilenetv2,user")
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--steps", type=int, default=4, help="steps per verification run")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of each")
    parser.add_argument(
        "--verify-seconds",
        type=float,
        default=1.0,
        help="measure each run at least this long (steps added as predicted)",
    )
    parser.add_argument(
        "--verify-repeats",
        type=int,
        default=3,
        help="runs of every candidate, in rotating rounds; each figure is their median",
    )
    parser.add_argument("--mnist-dir", type=Path, default=SHARED_DATA / "mnist")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=HERE / "results" / "results.json")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = []
    for cell in cells(models, batch_sizes, args.mnist_dir):
        result = run_cell(
            cell,
            steps=args.steps,
            warmup=args.warmup,
            verify_seconds=args.verify_seconds,
            verify_repeats=args.verify_repeats,
            cache_dir=args.cache_dir,
        )
        print_cell(result)
        results.append(result)
        summary = {
            "cells": [{k: v for k, v in r.items() if k != "candidates"} for r in results],
            "picked_within_5_percent": sum(r["picked_share_of_best"] >= 0.95 for r in results),
            "num_cells": len(results),
            "errors_by_axis": errors_by_axis(results),
        }
        write_json(args.out, {"summary": summary, "results": results, "machine": machine_facts()})
    print(
        f"\npicked >= 0.95x best measured in {summary['picked_within_5_percent']} of "
        f"{summary['num_cells']} cells"
    )
    for axis, stats in summary["errors_by_axis"].items():
        print(f"  |error| {axis:<9} median {100 * stats['median']:.0f}% "
              f"max {100 * stats['max']:.0f}% over {stats['count']}")  # fmt: skip
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
