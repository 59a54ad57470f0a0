"""The simulator against the pipeline runtime: predicted vs measured step time for 2-stage
runs of LeNet-5 (1x28x28), AlexNet and VGG16 (3x32x32) at several batch sizes and numbers
of micro-batches, partition `auto`. Target: median absolute error within 15%. Writes
results/validation.json and results/validation.md.

    .venv/bin/python benchmarks/partitioners/validate_simulator.py          # ~15 min
    .venv/bin/python benchmarks/partitioners/validate_simulator.py --models lenet5 --steps 6
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import HERE, machine_line, measure_run, median, profile_source

from parnn.partition import plan_pipeline
from parnn.partition.measure.cache import default_cache_dir
from parnn.results import machine_facts, write_json

INPUTS = {"lenet5": (1, 28, 28), "alexnet": (3, 32, 32), "vgg16": (3, 32, 32)}
BATCH_SIZES = {"lenet5": (64, 256), "alexnet": (16, 64), "vgg16": (16, 32)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    facts_before = machine_facts()
    rows = []
    for model in args.models:
        shape = INPUTS[model]
        source = profile_source(
            model, shape, cache_dir=args.cache_dir, comm=args.comm, repeats=args.repeats
        )
        for batch_size in BATCH_SIZES[model]:
            for m in args.microbatches:
                if m > batch_size or batch_size % m:
                    continue
                plan = plan_pipeline(
                    "auto",
                    profile_for=source,
                    batch_size=batch_size,
                    num_stages=2,
                    schedule=args.schedule,
                    num_microbatches=m,
                )
                measured = measure_run(
                    model=model,
                    input_shape=shape,
                    partition=plan.partition,
                    batch_size=batch_size,
                    num_microbatches=m,
                    schedule=args.schedule,
                    steps=args.steps,
                    warmup_steps=args.warmup_steps,
                )
                predicted = plan.chosen.step_time_s
                error = (predicted - measured["step_time_s"]) / measured["step_time_s"]
                rows.append(
                    {
                        "model": model,
                        "batch_size": batch_size,
                        "num_microbatches": m,
                        "partition": str(plan.partition),
                        "predicted_step_s": predicted,
                        "measured_step_s": measured["step_time_s"],
                        "error": error,
                        "predicted_bubble": plan.chosen.simulation.bubble_fraction,
                        "measured_bubble": measured["bubble_fraction"],
                        "predicted_stage_compute_s": [
                            m * s.compute_s for s in plan.chosen.cost.stages
                        ],
                        "measured_stage_compute_s": [
                            s["forward_s"] + s["backward_s"] for s in measured["stages"]
                        ],
                    }
                )
                print(
                    f"{model} b={batch_size} m={m}: predicted {predicted * 1e3:.1f} ms, "
                    f"measured {measured['step_time_s'] * 1e3:.1f} ms ({error:+.1%})",
                    flush=True,
                )
    errors = [abs(r["error"]) for r in rows]
    return {
        "benchmark": "partitioners/validate_simulator",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine_before": facts_before,
        "machine_after": machine_facts(),
        "elapsed_s": time.perf_counter() - started,
        "median_abs_error": median(errors),
        "max_abs_error": max(errors) if errors else None,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Simulator vs pipeline runtime, 2 stages",
        "",
        f"Settings: {result['settings']}",
        "",
        f"Machine: {machine_line(result['machine_before'])}; load average after: "
        f"{result['machine_after']['load_average_1m']}",
        "",
        "| model | batch | m | partition | predicted ms | measured ms | error | "
        "predicted bubble | measured bubble |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['batch_size']} | {row['num_microbatches']} | "
            f"{row['partition']} | {row['predicted_step_s'] * 1e3:.1f} | "
            f"{row['measured_step_s'] * 1e3:.1f} | {row['error']:+.1%} | "
            f"{row['predicted_bubble']:.1%} | {row['measured_bubble']:.1%} |"
        )
    lines += [
        "",
        f"Median absolute error: {result['median_abs_error']:.1%} (target <= 15%); "
        f"largest: {result['max_abs_error']:.1%}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    parser.add_argument("--microbatches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--schedule", default="gpipe")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--comm", default="measure", choices=["measure", "none"])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args)
    write_json(args.out / "validation.json", result)
    (args.out / "validation.md").write_text(markdown(result) + "\n")
    print(f"wrote {args.out / 'validation.json'} and validation.md")


if __name__ == "__main__":
    main()
