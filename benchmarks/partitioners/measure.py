"""Measured throughput of every partition method on 2 pipeline stages (alexnet, vgg16,
resnet50 at 3x32x32). Every distinct partition the methods produce is run with the pipeline
runtime (synthetic data, SGD) in ``--rounds`` interleaved rounds; a method's throughput is
the median over rounds of its partition's median step. Writes results/measured.json and
results/measured.md.

    .venv/bin/python benchmarks/partitioners/measure.py                     # ~15 min, 2 rounds
    .venv/bin/python benchmarks/partitioners/measure.py --models alexnet --rounds 1 --steps 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import HERE, machine_line, measure_run, median, profile_source

from parnn.partition import METHODS, Partition, plan_pipeline
from parnn.partition.measure.cache import default_cache_dir
from parnn.results import machine_facts, write_json


def run(args: argparse.Namespace) -> dict[str, Any]:
    shape = tuple(int(s) for s in args.input.split("x"))
    started = time.perf_counter()
    facts_before = machine_facts()
    cells = []
    for model in args.models:
        source = profile_source(
            model, shape, cache_dir=args.cache_dir, comm=args.comm, repeats=args.repeats
        )
        plans = {
            method: plan_pipeline(
                method,
                profile_for=source,
                batch_size=args.batch_size,
                num_stages=2,
                schedule=args.schedule,
                num_microbatches=args.microbatches,
            )
            for method in METHODS
        }
        distinct = sorted({plan.partition.boundaries for plan in plans.values()})
        steps: dict[tuple[int, ...], list[float]] = {b: [] for b in distinct}
        for round_index in range(args.rounds):
            for boundaries in distinct if round_index % 2 == 0 else reversed(distinct):
                measured = measure_run(
                    model=model,
                    input_shape=shape,
                    partition=Partition(boundaries),
                    batch_size=args.batch_size,
                    num_microbatches=args.microbatches,
                    schedule=args.schedule,
                    steps=args.steps,
                    warmup_steps=args.warmup_steps,
                )
                steps[boundaries].append(measured["step_time_s"])
                print(f"{model} {boundaries}: {measured['step_time_s'] * 1e3:.1f} ms", flush=True)
        rows = []
        for method, plan in plans.items():
            step = median(steps[plan.partition.boundaries])
            rows.append(
                {
                    "method": method,
                    "partition": str(plan.partition),
                    "boundaries": list(plan.partition.boundaries),
                    "predicted_step_s": plan.chosen.step_time_s,
                    "predicted_efficiency": plan.chosen.cost.efficiency,
                    "measured_step_s": step,
                    "measured_steps_s": steps[plan.partition.boundaries],
                    "measured_samples_per_s": args.batch_size / step,
                }
            )
        auto = next(r for r in rows if r["method"] == "auto")
        best = max(
            (r for r in rows if r["method"] != "auto"), key=lambda r: r["measured_samples_per_s"]
        )
        spread = [
            (max(v) - min(v)) / median(v) for v in steps.values() if len(v) > 1 and median(v) > 0
        ]
        cells.append(
            {
                "model": model,
                "methods": rows,
                "auto_over_best_other": auto["measured_samples_per_s"]
                / best["measured_samples_per_s"],
                "best_other_method": best["method"],
                "round_spread": median(spread) if spread else None,
            }
        )
    return {
        "benchmark": "partitioners/measure",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine_before": facts_before,
        "machine_after": machine_facts(),
        "elapsed_s": time.perf_counter() - started,
        "cells": cells,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Measured throughput, 2 stages",
        "",
        f"Settings: {result['settings']}",
        "",
        f"Machine: {machine_line(result['machine_before'])}; load average after: "
        f"{result['machine_after']['load_average_1m']}",
        "",
    ]
    for cell in result["cells"]:
        lines += [
            f"## {cell['model']}",
            "",
            "| method | partition | predicted step ms | measured step ms | samples/s |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for row in cell["methods"]:
            name = f"**{row['method']}**" if row["method"] == "auto" else row["method"]
            lines.append(
                f"| {name} | {row['partition']} | {row['predicted_step_s'] * 1e3:.1f} | "
                f"{row['measured_step_s'] * 1e3:.1f} | {row['measured_samples_per_s']:.1f} |"
            )
        spread = cell["round_spread"]
        lines += [
            "",
            f"auto / best other ({cell['best_other_method']}) measured throughput: "
            f"{cell['auto_over_best_other']:.3f}"
            + ("" if spread is None else f" (median spread between rounds: {spread:.1%})"),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16", "resnet50"])
    parser.add_argument("--input", default="3x32x32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--schedule", default="gpipe")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--comm", default="measure", choices=["measure", "none"])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args)
    write_json(args.out / "measured.json", result)
    (args.out / "measured.md").write_text(markdown(result) + "\n")
    print(f"wrote {args.out / 'measured.json'} and measured.md")


if __name__ == "__main__":
    main()
