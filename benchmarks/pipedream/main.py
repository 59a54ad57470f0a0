"""PipeDream's asynchronous pipeline against the synchronous schedules: throughput and
statistical efficiency.

1. Throughput: the same model, partition, batch and micro-batch size trained with
   ``gpipe``, ``1f1b`` and ``pipedream`` on 2 stages (and 4, oversubscribed on this 2-core
   machine, reported as such); LeNet-5 on MNIST and a VGG-style CNN on CIFAR-shaped
   synthetic data. Measured per run: the median step time after warm-up (for pipedream the
   period between two updates of the first stage: the steady state, no flush), the bubble
   fraction, and samples over the whole training time (warm-up and drain included).
   Repeats rotate the order of the schedules; the ratio pipedream / 1f1b is taken per repeat.
2. Statistical efficiency: LeNet-5 on MNIST trained for the same epochs with ``1f1b``
   (synchronous), ``pipedream`` and ``pipedream`` with vertical sync; validation accuracy
   after every epoch against training time and samples seen; the time to 97%.

    .venv/bin/python benchmarks/pipedream/main.py --data-dir ../shared/data/mnist
    .venv/bin/python benchmarks/pipedream/main.py --part throughput --stages 2,4 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from parnn.bench.stats import summarize
from parnn.partition import Partition
from parnn.pipeline import PipelineConfig, plan_pipeline_run, run_pipeline
from parnn.results import machine_facts, write_json
from parnn.train import OptimizerConfig

HERE = Path(__file__).resolve().parent
OPTIMIZER = OptimizerConfig(name="adam", lr=0.003)
SCHEDULES = ("gpipe", "1f1b", "pipedream")
VGG = f"{HERE / 'vgg_cifar.py'}:build"


@dataclass(frozen=True, slots=True)
class Cell:
    """One model/data setting whose schedules are compared."""

    label: str
    model: str
    data: str
    input_shape: tuple[int, int, int] | None
    num_samples: int | None
    batch_size: int = 32
    num_microbatches: int = 4


def _cells(data_dir: Path | None) -> list[Cell]:
    mnist = "mnist" if data_dir is not None else "digits"
    return [
        Cell("lenet5 " + mnist, "lenet5", mnist, None, None),
        Cell("vgg-cifar synthetic", VGG, "synthetic", (3, 32, 32), 2048),
    ]


def _config(cell: Cell, schedule: str, stages: int, partition: Any, **kw: Any) -> PipelineConfig:
    return PipelineConfig(
        model=cell.model,
        data=cell.data,
        data_dir=kw.pop("data_dir", None),
        input_shape=cell.input_shape,
        num_samples=cell.num_samples,
        num_stages=stages,
        schedule=schedule,
        partition=partition,
        batch_size=cell.batch_size,
        num_microbatches=cell.num_microbatches,
        optimizer=OPTIMIZER,
        **kw,
    )


def throughput_run(
    cell: Cell, schedule: str, stages: int, partition: Partition, steps: int, data_dir: Path | None
) -> dict[str, Any]:
    config = _config(
        cell,
        schedule,
        stages,
        partition,
        data_dir=data_dir,
        steps=steps,
        evaluate=False,
        measure_warmup_steps=max(2, stages),
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None
    return {
        "schedule": schedule,
        "step_time_s": result.step_time_s,
        "samples_per_s": result.samples_per_s,
        "train_samples_per_s": result.samples / result.train_s,
        "bubble_fraction": result.bubble_fraction,
        "stage_compute_s": [s.compute_s for s in result.stages],
        "weight_stash": result.weight_stash,
        "load_1m": os.getloadavg()[0],
    }


def throughput(args: argparse.Namespace, cells: list[Cell]) -> dict[str, Any]:
    rows = []
    for cell in cells:
        for stages in args.stages:
            # One partition for every schedule: the profile-balanced one ("time").
            partition = plan_pipeline_run(
                _config(cell, "1f1b", stages, "time", data_dir=args.data_dir)
            ).partition
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SCHEDULES}
            for repeat in range(args.repeats):
                order = SCHEDULES[repeat % 3 :] + SCHEDULES[: repeat % 3]
                for schedule in order:
                    run = throughput_run(
                        cell, schedule, stages, partition, args.steps, args.data_dir
                    )
                    runs[schedule].append(run)
                    print(
                        f"{cell.label} k={stages} r{repeat + 1} {schedule:<9} "
                        f"{run['samples_per_s']:8.0f} samples/s (steady), "
                        f"{run['train_samples_per_s']:8.0f} (whole run), bubble "
                        f"{100 * run['bubble_fraction']:4.0f}%, load {run['load_1m']:.1f}",
                        flush=True,
                    )
            ratio = [
                p["samples_per_s"] / s["samples_per_s"]
                for p, s in zip(runs["pipedream"], runs["1f1b"], strict=True)
            ]
            ratio_whole = [
                p["train_samples_per_s"] / s["train_samples_per_s"]
                for p, s in zip(runs["pipedream"], runs["1f1b"], strict=True)
            ]
            rows.append(
                {
                    "cell": asdict(cell),
                    "label": cell.label,
                    "stages": stages,
                    "oversubscribed": stages > (os.cpu_count() or 1),
                    "partition": list(partition.boundaries),
                    "samples_per_s": {
                        s: summarize([r["samples_per_s"] for r in runs[s]]).to_dict()
                        for s in SCHEDULES
                    },
                    "bubble_fraction": {
                        s: statistics.median(r["bubble_fraction"] for r in runs[s])
                        for s in SCHEDULES
                    },
                    "pipedream_vs_1f1b": summarize(ratio).to_dict(),
                    "pipedream_vs_1f1b_per_repeat": ratio,
                    "pipedream_vs_1f1b_whole_run": summarize(ratio_whole).to_dict(),
                    "runs": runs,
                }
            )
    return {"rows": rows}


def predict(args: argparse.Namespace, cells: list[Cell]) -> dict[str, Any]:
    """The simulator's steady-state step of every schedule on the profiled stage costs of
    the same partition: the noise-free expectation beside the measurement."""
    from parnn.partition.cache import default_cache_dir
    from parnn.partition.resolve import ProfileConfig, ProfileSource, resolve_plan

    rows = []
    for cell in cells:
        for stages in args.stages:
            config = _config(cell, "1f1b", stages, "time", data_dir=args.data_dir)
            plan = plan_pipeline_run(config, profile_cache_dir=default_cache_dir())
            source = ProfileSource(
                ProfileConfig(
                    model=cell.model,
                    input_shape=plan.input_shape,
                    num_classes=10,
                    cache_dir=default_cache_dir(),
                )
            )
            predicted = {}
            for schedule in SCHEDULES:
                chosen = resolve_plan(
                    plan.partition,
                    source=source,
                    num_stages=stages,
                    batch_size=cell.batch_size,
                    num_microbatches=cell.num_microbatches,
                    schedule=schedule,
                ).chosen
                predicted[schedule] = {
                    "step_time_s": chosen.step_time_s,
                    "samples_per_s": cell.batch_size / chosen.step_time_s,
                    "bubble_fraction": chosen.simulation.bubble_fraction,
                }
            rows.append(
                {
                    "label": cell.label,
                    "stages": stages,
                    "partition": list(plan.partition.boundaries),
                    "predicted": predicted,
                    "pipedream_vs_1f1b": predicted["1f1b"]["step_time_s"]
                    / predicted["pipedream"]["step_time_s"],
                }
            )
            print(
                f"{cell.label} k={stages} predicted: "
                + ", ".join(
                    f"{s} {p['samples_per_s']:,.0f}/s bubble {100 * p['bubble_fraction']:.0f}%"
                    for s, p in predicted.items()
                )
                + f"; pipedream/1f1b {rows[-1]['pipedream_vs_1f1b']:.2f}x",
                flush=True,
            )
    return {"rows": rows}


def accuracy(args: argparse.Namespace, cell: Cell) -> dict[str, Any]:
    """Validation accuracy per epoch against training time and samples, per schedule."""
    sides = [("1f1b", False), ("pipedream", False), ("pipedream", True)]
    partition = plan_pipeline_run(
        _config(cell, "1f1b", 2, "time", data_dir=args.data_dir)
    ).partition
    curves = {}
    for schedule, vertical in sides:
        name = schedule + (" +vsync" if vertical else "")
        config = _config(
            cell,
            schedule,
            2,
            partition,
            data_dir=args.data_dir,
            epochs=args.epochs,
            vertical_sync=vertical,
        )
        result = run_pipeline(config, quiet=True)
        assert result is not None
        points = [
            {
                "epoch": h["epoch"],
                "samples": h["step"] * cell.batch_size,
                "train_s": h["train_s"],
                "val_accuracy": h["val_accuracy"],
            }
            for h in result.history
        ]
        reached = next((p for p in points if p["val_accuracy"] >= args.target), None)
        curves[name] = {
            "points": points,
            "final_accuracy": points[-1]["val_accuracy"],
            "time_to_target_s": None if reached is None else reached["train_s"],
            "epochs_to_target": None if reached is None else reached["epoch"],
            "load_1m": os.getloadavg()[0],
        }
        print(
            f"{name:<16} final {100 * points[-1]['val_accuracy']:.2f}%, "
            f"{args.target:.0%} after epoch "
            f"{curves[name]['epochs_to_target']} / {curves[name]['time_to_target_s']} s, "
            f"accuracy by epoch {[round(100 * p['val_accuracy'], 2) for p in points]}, "
            f"train s {[round(p['train_s'], 1) for p in points]}",
            flush=True,
        )
    sync = curves["1f1b"]
    for curve in curves.values():
        curve["accuracy_minus_sync_points"] = 100 * (
            curve["final_accuracy"] - sync["final_accuracy"]
        )
        if curve["time_to_target_s"] and sync["time_to_target_s"]:
            curve["time_to_target_vs_sync"] = curve["time_to_target_s"] / sync["time_to_target_s"]
    return {"label": cell.label, "partition": list(partition.boundaries), "curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["all", "throughput", "accuracy", "predict"], default="all"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (else digits)")
    parser.add_argument("--stages", type=lambda t: [int(v) for v in t.split(",")], default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per throughput run")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the accuracy runs")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--models", default="lenet5,vgg-cifar", help="throughput cells")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "results.json")
    args = parser.parse_args()

    started = time.perf_counter()
    cells = [c for c in _cells(args.data_dir) if c.label.split()[0] in args.models.split(",")]
    payload: dict[str, Any] = {
        "benchmark": "pipedream",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_start": os.getloadavg(),
    }
    if args.part == "predict":
        payload["predict"] = predict(args, cells)
    if args.part in ("all", "throughput"):
        payload["throughput"] = throughput(args, cells)
        write_json(args.out, payload)
    if args.part in ("all", "accuracy"):
        payload["accuracy"] = accuracy(args, _cells(args.data_dir)[0])
    payload["load_average_end"] = os.getloadavg()
    payload["wall_s"] = time.perf_counter() - started
    payload["machine"] = machine_facts()
    write_json(args.out, payload)
    for row in payload.get("throughput", {}).get("rows", []):
        rates = "  ".join(
            f"{s} {row['samples_per_s'][s]['median']:,.0f}/s "
            f"(bubble {100 * row['bubble_fraction'][s]:.0f}%)"
            for s in SCHEDULES
        )
        print(
            f"{row['label']} k={row['stages']}{' (oversubscribed)' if row['oversubscribed'] else ''}"
            f": {rates}; pipedream/1f1b {row['pipedream_vs_1f1b']['median']:.2f}x "
            f"(per repeat {', '.join(f'{r:.2f}' for r in row['pipedream_vs_1f1b_per_repeat'])})"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
