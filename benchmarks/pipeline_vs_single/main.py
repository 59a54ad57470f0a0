"""Does a 2-stage pipeline (one core per stage) beat one process on the same 2 cores?

Three ways to train the same model with the same seed, data and optimizer (Adam, lr
0.003), each in fresh processes placed by ``parnn.launch``:

- ``single-1t``: the reference trainer, one process pinned to core 0, 1 intra-op thread;
- ``single-2t``: the reference trainer, one process on cores 0-1, 2 intra-op threads;
- ``pipeline``: ``parnn.pipeline`` with 2 ranks pinned one per core, 1 thread each
  (GPipe, 4 micro-batches, the equal-load partition unless told otherwise).

Measured: the median step time over the steps after warm-up (steady-state throughput,
not start-up), per repeat; the pipeline's per-stage forward/backward compute and wait
figures are kept to explain its result. Repeats alternate the order of the three sides.

    .venv/bin/python benchmarks/pipeline_vs_single/main.py                 # ~10-20 min, busy 2 cores
    .venv/bin/python benchmarks/pipeline_vs_single/main.py --partition time --repeats 5
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
from parnn.launch import LaunchConfig, launch
from parnn.pipeline import PipelineConfig, run_pipeline
from parnn.results import machine_facts, write_json
from parnn.train import OptimizerConfig, TrainConfig, train
from parnn.train.setup import setup_training

HERE = Path(__file__).resolve().parent
OPTIMIZER = OptimizerConfig(name="adam", lr=0.003)
SIDES = ("single-1t", "single-2t", "pipeline")


@dataclass(frozen=True, slots=True)
class Cell:
    """One model/batch setting, measured on the three sides."""

    model: str
    data: str
    input_shape: tuple[int, int, int]
    batch_size: int
    steps: int = 6
    warmup_steps: int = 2  # left out of the median
    num_samples: int | None = None  # synthetic: how many samples to draw

    @property
    def label(self) -> str:
        return f"{self.model} b{self.batch_size}"


def _cells(steps: int, warmup: int) -> list[Cell]:
    # On a busy core VGG16 costs 1.7-5.5 s a step at batch 32 and AlexNet 4-12 s at 256:
    # few cells, so that the whole run stays near ~10 minutes on a shared 2-core machine.
    plan: list[tuple[str, str, tuple[int, int, int], int, int | None]]
    plan = [("lenet5", "digits", (1, 32, 32), b, None) for b in (32, 64, 128, 256)]
    plan += [("alexnet", "synthetic", (3, 32, 32), b, 2048) for b in (32, 256)]
    plan += [("vgg16", "synthetic", (3, 32, 32), 32, 1024)]
    return [
        Cell(
            model=model,
            data=data,
            input_shape=shape,
            batch_size=batch,
            steps=steps,
            warmup_steps=warmup,
            num_samples=samples,
        )
        for model, data, shape, batch, samples in plan
    ]


def single_step_times(rank: int, world_size: int, cells: list[Cell], threads: int) -> list[float]:
    """(In a launched process.) Median step time (s) of the reference trainer per cell."""
    medians = []
    for cell in cells:
        setup = setup_training(
            cell.model, cell.data, input_shape=cell.input_shape, num_samples=cell.num_samples
        )
        config = TrainConfig(
            steps=cell.steps,
            batch_size=cell.batch_size,
            optimizer=OPTIMIZER,
            threads=threads,
            drop_last=True,
        )
        result = train(setup.model, setup.train_data, None, config, quiet=True)
        walls = [0.0] + [record.wall_s for record in result.step_log]
        durations = [after - before for before, after in zip(walls, walls[1:], strict=False)]
        medians.append(statistics.median(durations[cell.warmup_steps :]))
    return medians


def pipeline_run(cell: Cell, *, partition: str, microbatches: int) -> dict[str, Any]:
    """One 2-stage pipeline run: its median step time and per-stage figures."""
    config = PipelineConfig.of(
        model=cell.model,
        data=cell.data,
        input_shape=cell.input_shape,
        num_samples=cell.num_samples,
        num_ranks=2,
        num_microbatches=microbatches,
        schedule="gpipe",
        partition=partition,
        batch_size=cell.batch_size,
        steps=cell.steps,
        optimizer=OPTIMIZER,
        evaluate=False,
        threads=1,
        measure_warmup_steps=cell.warmup_steps,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None
    return {
        "step_time_s": result.step_time_s,
        "bubble_fraction": result.bubble_fraction,
        "partition": result.partition,
        "stages": [
            {
                "units": f"{s.units[0]}..{s.units[-1]}",
                "parameters": s.parameters,
                "forward_s": s.forward_s,
                "backward_s": s.backward_s,
                "compute_s": s.compute_s,
                "wait_s": s.wait_s,
                "idle_share": s.idle_share,
            }
            for s in result.stages
        ],
        "boundary_bytes_per_step": [b.bytes_per_step for b in result.boundaries],
    }


def write_results(
    args: argparse.Namespace,
    cells: list[Cell],
    times: dict[str, list[list[float]]],
    pipeline_runs: list[list[dict[str, Any]]],
    loads: list[dict[str, float]],
    started: float,
) -> None:
    """Summarise the repeats done so far, write them to ``args.out`` and print a table."""
    rows = []
    for index, cell in enumerate(cells):
        step = {side: summarize(times[side][index]) for side in SIDES}
        pipe = times["pipeline"][index]
        vs_1t = [a / p for a, p in zip(times["single-1t"][index], pipe, strict=True)]
        vs_2t = [a / p for a, p in zip(times["single-2t"][index], pipe, strict=True)]
        # The per-stage figures of the repeat whose step time is the median one.
        middle = sorted(pipeline_runs[index], key=lambda r: r["step_time_s"])[len(pipe) // 2]
        compute = [s["compute_s"] for s in middle["stages"]]
        rows.append(
            {
                "cell": asdict(cell),
                "label": cell.label,
                "step_s": {side: step[side].to_dict() for side in SIDES},
                "samples_per_s": {side: cell.batch_size / step[side].median for side in SIDES},
                "pipeline_vs_1t": summarize(vs_1t).to_dict(),  # > 1: the pipeline is faster
                "pipeline_vs_2t": summarize(vs_2t).to_dict(),
                "pipeline_median_run": middle,
                "stage_balance": max(compute) / (sum(compute) / len(compute)),
            }
        )
    payload = {
        "benchmark": "pipeline_vs_single",
        "settings": {
            "repeats": len(loads),
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "partition": args.partition,
            "microbatches": args.microbatches,
            "schedule": "gpipe",
        },
        "rows": rows,
        "load_average_1m": loads,
        "wall_s": time.perf_counter() - started,
        "machine": machine_facts(),
    }
    write_json(args.out, payload)
    header = f"{'cell':<14}" + "".join(f"{side + ' /s':>15}" for side in SIDES)
    print(header + f"{'vs 1t':>8}{'vs 2t':>8}{'bubble':>8}{'balance':>9}")
    for row in rows:
        rates = "".join(f"{row['samples_per_s'][side]:>15,.1f}" for side in SIDES)
        print(
            f"{row['label']:<14}{rates}{row['pipeline_vs_1t']['median']:>7.2f}x"
            f"{row['pipeline_vs_2t']['median']:>7.2f}x"
            f"{100 * row['pipeline_median_run']['bubble_fraction']:>7.0f}%"
            f"{row['stage_balance']:>9.2f}"
        )
    print(f"wrote {args.out} ({len(loads)} repeats)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    parser.add_argument("--partition", default="equal-load", help="pipeline partition")
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--models", default="lenet5,alexnet,vgg16", help="comma-separated")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    wanted = set(args.models.split(","))
    cells = [c for c in _cells(args.steps, args.warmup) if c.model in wanted]
    times: dict[str, list[list[float]]] = {side: [[] for _ in cells] for side in SIDES}
    pipeline_runs: list[list[dict[str, Any]]] = [[] for _ in cells]
    loads: list[dict[str, float]] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        before = os.getloadavg()[0]
        order = SIDES[repeat % 3 :] + SIDES[: repeat % 3]  # rotate the order per repeat
        for side in order:
            if side == "pipeline":
                for index, cell in enumerate(cells):
                    run = pipeline_run(
                        cell, partition=args.partition, microbatches=args.microbatches
                    )
                    pipeline_runs[index].append(run)
                    times[side][index].append(run["step_time_s"])
            else:
                threads = 1 if side == "single-1t" else 2
                config = LaunchConfig(
                    num_processes=1, threads_per_process=threads, init_process_group=False
                )
                medians = launch(single_step_times, config, cells, threads)[0]
                for index, value in enumerate(medians):
                    times[side][index].append(value)
            elapsed = time.perf_counter() - started
            print(f"repeat {repeat + 1}: {side} done at {elapsed:.0f} s", flush=True)
        after = os.getloadavg()[0]
        loads.append({"repeat": repeat, "before": before, "after": after})
        print(
            f"repeat {repeat + 1}/{args.repeats} done, load {before:.2f} -> {after:.2f}", flush=True
        )
        write_results(args, cells, times, pipeline_runs, loads, started)


if __name__ == "__main__":
    main()
