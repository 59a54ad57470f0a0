"""PipeDream's asynchronous pipeline against the synchronous schedules: throughput (gpipe,
1f1b, pipedream on the same partition and micro-batch size), the simulator's prediction,
and statistical efficiency (accuracy against time and samples on MNIST). The study itself
is :mod:`parnn.bench.studies.pipedream` (also ``parnn study pipedream``).

    .venv/bin/python benchmarks/pipedream/main.py --data-dir ../shared/data/mnist
    .venv/bin/python benchmarks/pipedream/main.py --parts throughput --stages 4 --models lenet5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from parnn.bench.studies.pipedream import PARTS, PipeDreamStudyConfig, run_pipedream_study
from parnn.results import write_json

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="throughput,predict,accuracy")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (else digits)")
    parser.add_argument("--stages", default="2", help="pipeline depths, e.g. 2,4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="steps per throughput run")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the accuracy runs")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--lr-schedule", default="cosine", help="of the accuracy runs")
    parser.add_argument("--models", default="lenet5,vgg-cifar", help="throughput cells")
    parser.add_argument(
        "--microbatches", default="4", help="micro-batches of 8 samples a mini-batch, e.g. 2,4"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "results.json")
    args = parser.parse_args()

    started = time.perf_counter()
    config = PipeDreamStudyConfig(
        data_dir=args.data_dir,
        stages=tuple(int(v) for v in args.stages.split(",")),
        repeats=args.repeats,
        steps=args.steps,
        epochs=args.epochs,
        target_accuracy=args.target,
        lr_schedule=args.lr_schedule,
        models=tuple(args.models.split(",")),
        microbatches=tuple(int(v) for v in args.microbatches.split(",")),
        parts=tuple(args.parts.split(",")),
    )
    payload = run_pipedream_study(config, report=lambda line: print(line, flush=True))
    payload["wall_s"] = time.perf_counter() - started
    write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
