"""What does the pipeline machinery cost? A 1-stage pipeline against the reference trainer.

Both sides train the same model on the same data with the same seed, optimizer (Adam,
lr 0.003) and thread count, each in a fresh process pinned to the same core(s) by
``parnn.launch``. Compared: steady-state step throughput, i.e. the median step time over
the steps after warm-up (the pipeline's ``step_time_s``; the reference's from the gaps
between the wall times of its ``step_log``), never process start-up. Each cell is
repeated; the order of the two sides alternates between repeats so that a drift in the
machine's load does not always hit the same side. Target (issue 3): >= 0.90x.

    .venv/bin/python benchmarks/pipeline_overhead/main.py            # ~2.5 min on 2 busy cores
    .venv/bin/python benchmarks/pipeline_overhead/main.py --repeats 5 --threads 2
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


@dataclass(frozen=True, slots=True)
class Cell:
    """One model/data/batch setting measured on both sides."""

    model: str
    data: str
    input_shape: tuple[int, int, int]
    batch_size: int
    steps: int
    warmup_steps: int  # left out of the median
    num_samples: int | None = None  # synthetic: how many samples to draw

    @property
    def label(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.model} {shape} b{self.batch_size}"


CELLS = (
    Cell(model="lenet5", data="digits", input_shape=(1, 28, 28), batch_size=32, steps=40,
         warmup_steps=5),
    Cell(model="lenet5", data="digits", input_shape=(1, 28, 28), batch_size=128, steps=20,
         warmup_steps=3),
    Cell(model="vgg16", data="synthetic", input_shape=(3, 32, 32), batch_size=32, steps=8,
         warmup_steps=2, num_samples=1024),
)  # fmt: skip


def reference_step_times(
    rank: int, world_size: int, cells: list[Cell], threads: int
) -> list[float]:
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
            drop_last=True,  # the pipeline's rule: every mini-batch is whole
        )
        result = train(setup.model, setup.train_data, None, config, quiet=True)
        walls = [0.0] + [record.wall_s for record in result.step_log]
        durations = [after - before for before, after in zip(walls, walls[1:], strict=False)]
        medians.append(statistics.median(durations[cell.warmup_steps :]))
    return medians


def pipeline_step_time(cell: Cell, threads: int) -> float:
    """Median step time (s) of a 1-stage, 1-micro-batch GPipe pipeline."""
    config = PipelineConfig.of(
        model=cell.model,
        data=cell.data,
        input_shape=cell.input_shape,
        num_samples=cell.num_samples,
        num_ranks=1,
        num_microbatches=1,
        schedule="gpipe",
        batch_size=cell.batch_size,
        steps=cell.steps,
        optimizer=OPTIMIZER,
        evaluate=False,
        threads=threads,
        measure_warmup_steps=cell.warmup_steps,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None
    return result.step_time_s


def load_1m() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both sides")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    cells = list(CELLS)
    reference: list[list[float]] = [[] for _ in cells]
    pipeline: list[list[float]] = [[] for _ in cells]
    loads: list[dict[str, float]] = []
    started = time.perf_counter()
    launch_config = LaunchConfig(
        num_processes=1, threads_per_process=args.threads, init_process_group=False
    )
    for repeat in range(args.repeats):
        before = load_1m()
        order = ("reference", "pipeline") if repeat % 2 == 0 else ("pipeline", "reference")
        for side in order:
            if side == "reference":
                medians = launch(reference_step_times, launch_config, cells, args.threads)[0]
                for index, value in enumerate(medians):
                    reference[index].append(value)
            else:
                for index, cell in enumerate(cells):
                    pipeline[index].append(pipeline_step_time(cell, args.threads))
        loads.append({"repeat": repeat, "before": before, "after": load_1m()})
        print(f"repeat {repeat + 1}/{args.repeats} done, load {before:.2f} -> {load_1m():.2f}")

    rows: list[dict[str, Any]] = []
    for index, cell in enumerate(cells):
        ratios = [r / p for r, p in zip(reference[index], pipeline[index], strict=True)]
        ref = summarize(reference[index])
        pipe = summarize(pipeline[index])
        ratio = summarize(ratios)
        rows.append(
            {
                "cell": asdict(cell),
                "label": cell.label,
                "reference_step_s": ref.to_dict(),
                "pipeline_step_s": pipe.to_dict(),
                "reference_samples_per_s": cell.batch_size / ref.median,
                "pipeline_samples_per_s": cell.batch_size / pipe.median,
                "ratio_per_repeat": ratios,  # pipeline samples/s / reference samples/s
                "ratio": ratio.to_dict(),
                # Best case: the fastest step time of each side over the repeats (the run
                # least disturbed by other tenants of the machine).
                "best_ratio": min(reference[index]) / min(pipeline[index]),
                "meets_target": ratio.median >= 0.90,
            }
        )
    payload = {
        "benchmark": "pipeline_overhead",
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": rows,
        "load_average_1m": loads,
        "wall_s": time.perf_counter() - started,
        "machine": machine_facts(),
    }
    write_json(args.out, payload)
    print(
        f"{'cell':<24} {'reference/s':>12} {'pipeline/s':>12} {'ratio':>7} {'best':>7}  per repeat"
    )
    for row in rows:
        print(
            f"{row['label']:<24} {row['reference_samples_per_s']:>12,.1f} "
            f"{row['pipeline_samples_per_s']:>12,.1f} {row['ratio']['median']:>6.3f}x {row['best_ratio']:>6.3f}x  "
            + ", ".join(f"{r:.3f}" for r in row["ratio_per_repeat"])
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
