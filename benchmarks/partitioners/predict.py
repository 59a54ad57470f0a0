"""Every partition method's predicted efficiency on real profiles (alexnet, vgg16, resnet50).

For each model and number of stages, every method (7 schemes, uniform, params, fwd-time,
time, auto) is priced on the same profile (measured at the micro-batch size, with the
machine's measured communication model) and simulated. Writes results/predicted.json and
results/predicted.md. Where `auto` stays below 95% efficiency it reports the granularity
bound: auto is exactly optimal, so no contiguous partition can do better, and the heaviest
unit shows why.

    .venv/bin/python benchmarks/partitioners/predict.py            # ~2 min (profiles cached)
    .venv/bin/python benchmarks/partitioners/predict.py --models alexnet --stages 2 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import HERE, machine_line, profile_source

from parnn.partition import METHODS, plan_pipeline
from parnn.partition.measure.cache import default_cache_dir
from parnn.partition.solver import solve_min_max
from parnn.results import machine_facts, write_json


def granularity(profile: Any, num_stages: int) -> dict[str, Any]:
    """The best efficiency any contiguous partition of these units reaches (compute only):
    the exact min-max bottleneck against the ideal average stage."""
    compute = [u.forward_s + u.backward_s for u in profile.units]
    best = solve_min_max(compute, num_stages)
    heaviest = max(range(len(compute)), key=compute.__getitem__)
    average = sum(compute) / num_stages
    return {
        "heaviest_unit": profile.units[heaviest].name,
        "heaviest_unit_s": compute[heaviest],
        "average_stage_s": average,
        "best_bottleneck_s": best.bottleneck,
        "efficiency_bound": average / best.bottleneck if best.bottleneck > 0 else 1.0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cells = []
    started = time.perf_counter()
    for model in args.models:
        source = profile_source(
            model,
            tuple(int(s) for s in args.input.split("x")),
            cache_dir=args.cache_dir,
            comm=args.comm,
            repeats=args.repeats,
        )
        for num_stages in args.stages:
            size = args.batch_size // args.microbatches
            profile = source(size)
            if num_stages > profile.num_units:
                continue
            rows = []
            for method in METHODS:
                plan = plan_pipeline(
                    method,
                    profile_for=source,
                    batch_size=args.batch_size,
                    num_stages=num_stages,
                    schedule=args.schedule,
                    num_microbatches=args.microbatches,
                )
                chosen = plan.chosen
                rows.append(
                    {
                        "method": method,
                        "partition": str(chosen.partition),
                        "boundaries": list(chosen.partition.boundaries),
                        "bottleneck_s": chosen.cost.bottleneck_s,
                        "efficiency": chosen.cost.efficiency,
                        "efficiency_without_comm": chosen.cost.efficiency_without_comm,
                        "step_time_s": chosen.step_time_s,
                        "samples_per_s": plan.samples_per_s,
                    }
                )
            auto = next(r for r in rows if r["method"] == "auto")
            others = [r for r in rows if r["method"] != "auto"]
            best_other = min(others, key=lambda r: r["bottleneck_s"])
            cells.append(
                {
                    "model": model,
                    "num_stages": num_stages,
                    "num_units": profile.num_units,
                    "microbatch_size": size,
                    "methods": rows,
                    "auto_vs_best_other": best_other["bottleneck_s"] / auto["bottleneck_s"],
                    "best_other_method": best_other["method"],
                    "granularity": granularity(profile, num_stages),
                }
            )
            print(
                f"{model:9s} k={num_stages}: auto {auto['efficiency']:.1%} "
                f"(best other {best_other['method']} {best_other['efficiency']:.1%})",
                flush=True,
            )
    return {
        "benchmark": "partitioners/predict",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_facts(),
        "elapsed_s": time.perf_counter() - started,
        "cells": cells,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Predicted partition efficiency",
        "",
        f"Settings: {result['settings']}",
        "",
        f"Machine: {machine_line(result['machine'])}",
        "",
    ]
    for cell in result["cells"]:
        bound = cell["granularity"]
        lines += [
            f"## {cell['model']}, {cell['num_stages']} stages ({cell['num_units']} units, "
            f"micro-batch {cell['microbatch_size']})",
            "",
            "| method | partition | bottleneck ms | eff. (comm) | eff. (no comm) | step ms |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for row in cell["methods"]:
            name = f"**{row['method']}**" if row["method"] == "auto" else row["method"]
            lines.append(
                f"| {name} | {row['partition']} | {row['bottleneck_s'] * 1e3:.2f} | "
                f"{row['efficiency']:.1%} | {row['efficiency_without_comm']:.1%} | "
                f"{row['step_time_s'] * 1e3:.1f} |"
            )
        auto = next(r for r in cell["methods"] if r["method"] == "auto")
        verdict = (
            f"auto reaches {auto['efficiency']:.1%} (>= 95%)."
            if auto["efficiency"] >= 0.95
            else f"auto reaches {auto['efficiency']:.1%}; granularity bound: no contiguous "
            f"partition of these units exceeds {bound['efficiency_bound']:.1%} (compute only: "
            f"best possible bottleneck {bound['best_bottleneck_s'] * 1e3:.2f} ms against an "
            f"ideal {bound['average_stage_s'] * 1e3:.2f} ms; heaviest unit "
            f"{bound['heaviest_unit']}, {bound['heaviest_unit_s'] * 1e3:.2f} ms)."
        )
        lines += [
            "",
            f"Best other method by bottleneck: {cell['best_other_method']} "
            f"({cell['auto_vs_best_other']:.3f}x auto's bottleneck). {verdict}",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16", "resnet50"])
    parser.add_argument("--stages", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--input", default="3x32x32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--schedule", default="gpipe")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--comm", default="measure", choices=["measure", "none"])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args)
    write_json(args.out / "predicted.json", result)
    (args.out / "predicted.md").write_text(markdown(result) + "\n")
    print(f"wrote {args.out / 'predicted.json'} and predicted.md")


if __name__ == "__main__":
    main()
