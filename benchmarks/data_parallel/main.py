"""Data-parallel engines vs the serial baselines, repeated; medians into a summary.

    python benchmarks/data_parallel/main.py --data-dir ../shared/data/mnist --repeats 3

Each repeat runs `parnn dp --compare` (serial 1 thread, serial with every core as intra-op
threads, then the engines) on LeNet-5 / MNIST (8,000 train / 2,000 validation) and keeps
every run's result; the summary holds the median samples/s, speedups and accuracy of each
run label, and the 1-minute load average before and after each repeat (the machine may be
shared: a load above the core count means the timings are polluted).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from pathlib import Path
from typing import Any

from parnn.bench.data_parallel_plots import plot_cpu, plot_loss, plot_throughput
from parnn.bench.studies.compare import comparison_configs, parse_compare_list, run_comparison
from parnn.data_parallel.config import DataParallelConfig
from parnn.results import machine_facts, write_json
from parnn.train import OptimizerConfig
from parnn.train.setup import setup_training

HERE = Path(__file__).resolve().parent


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[2] / "shared/data/mnist")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--data", default="mnist", help="mnist, or e.g. synthetic")
    parser.add_argument("--input-shape", default=None, help="e.g. 3x32x32 (synthetic data)")
    parser.add_argument("--num-samples", type=int, default=None, help="first N samples")
    parser.add_argument("--engines", default="ddp,hogwild,local-sgd,mpi,independent")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--per-process-batch", action="store_true", help="--batch-size per rank, not global"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--average-every", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-threads-baseline", action="store_true",
        help="leave out serial with every core as intra-op threads (slow on a busy machine)",
    )  # fmt: skip
    parser.add_argument("--lr-schedule", default="cosine", help="LR schedule")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def main() -> None:
    args = _arguments()
    names = parse_compare_list(args.engines)
    if args.skip_threads_baseline:
        names = [name for name in names if name != "serial-threads"]
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        names = [name for name in names if name != "mpi" and not name.endswith(":mpi")]
    shape = tuple(int(part) for part in args.input_shape.split("x")) if args.input_shape else None
    setup = setup_training(
        args.model, args.data, data_dir=args.data_dir if args.data == "mnist" else None,
        input_shape=shape, num_samples=args.num_samples, seed=0,
    )  # fmt: skip
    initial = copy.deepcopy(setup.model)
    base = DataParallelConfig.of(
        engine="ddp",
        num_ranks=args.ranks,
        batch_size=args.batch_size,
        per_process_batch=args.per_process_batch,
        epochs=args.epochs,
        optimizer=OptimizerConfig(name="sgd", lr=args.lr, momentum=args.momentum),
        lr_schedule=args.lr_schedule,
    )
    configs = comparison_configs(base, names, average_every=args.average_every)
    repeats: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        load_before = round(os.getloadavg()[0], 2)
        # alternate the order: a neighbour's burst hurts the first and the last runs alike
        ordered = configs if repeat % 2 == 0 else configs[::-1]
        comparison = run_comparison(
            lambda: copy.deepcopy(initial), setup.train_data, setup.val_data, ordered,
            model_name=args.model, quiet=True,
        )  # fmt: skip
        load_after = round(os.getloadavg()[0], 2)
        rows = comparison.speedups()
        repeats.append({"repeat": repeat, "load_before": load_before, "load_after": load_after,
                        "speedup": rows})  # fmt: skip
        print(f"repeat {repeat}: load {load_before} -> {load_after}")
        for row in rows:
            share = row["share_of_independent"]
            print(f"  {row['label']:<14} {row['samples_per_s']:>9,.0f} samples/s  "
                  f"x{row['speedup_vs_1_thread']:.2f} vs 1t  x{row['speedup_vs_all_cores']:.2f} "
                  f"vs all cores  of independent {'-' if share is None else f'{share:.0%}'}  "
                  f"acc {row['accuracy']:.4f}")  # fmt: skip
        if repeat == args.repeats - 1:
            args.out.mkdir(parents=True, exist_ok=True)
            plot_loss(comparison.runs, args.out / "loss_vs_time.png", x_axis="time")
            plot_loss(comparison.runs, args.out / "loss_vs_samples.png", x_axis="samples")
            plot_cpu(comparison.runs, args.out / "cpu.png")
            plot_throughput(comparison.runs, args.out / "throughput.png")
    labels = [row["label"] for row in repeats[0]["speedup"]]
    summary = []
    for label in labels:
        rows = [row for rep in repeats for row in rep["speedup"] if row["label"] == label]
        summary.append({
            "label": label,
            "samples_per_s": _median(rows, "samples_per_s"),
            "speedup_vs_1_thread": _median(rows, "speedup_vs_1_thread"),
            "speedup_vs_all_cores": _median(rows, "speedup_vs_all_cores"),
            "share_of_independent": _median(rows, "share_of_independent"),
            "accuracy": _median(rows, "accuracy"),
            "accuracy_delta_points": _median(rows, "accuracy_delta_points"),
            "cpu_process_percent": _median(rows, "cpu_process_percent"),
        })  # fmt: skip
    write_json(
        args.out / "summary.json",
        {
            "settings": vars(args),
            "engines": names,
            "median": summary,
            "repeats": repeats,
            "machine": machine_facts(),
        },  # fmt: skip
    )
    print("median over repeats:")
    for row in summary:
        print(f"  {row['label']:<14} {row['samples_per_s']:>9,.0f} samples/s  "
              f"x{row['speedup_vs_1_thread']} vs 1t  x{row['speedup_vs_all_cores']} vs all cores  "
              f"of independent {row['share_of_independent']}  "
              f"acc {row['accuracy']}  delta {row['accuracy_delta_points']} pts")  # fmt: skip


if __name__ == "__main__":
    main()
