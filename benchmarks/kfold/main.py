"""K-fold cross-validation as parallel jobs vs serial: speedup, CPU utilisation, accuracy.

Two runs of ``parnn kfold`` on the same jobs (models x schedules x folds):

  A. ``--compare-serial``: a pool of one single-thread worker per usable core, then the
     same jobs one after another on one worker with one thread (serial 1t);
  B. ``--workers 1 --threads 2``: the jobs one after another on one worker using
     both cores through intra-op threads (serial 2t).

Writes ``OUT/summary.json`` (and the two run directories, with their JSON, CSV and plots)
and prints the figures as Markdown. See benchmarks/kfold/README.md for the question and the results.

    .venv/bin/python benchmarks/kfold/main.py --data mnist --data-dir ../shared/data/mnist
    .venv/bin/python benchmarks/kfold/main.py --smoke       # digits, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from parnn.results import machine_facts, write_json

HERE = Path(__file__).resolve().parent


def _kfold(args: argparse.Namespace, out: Path, *extra: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "parnn.cli",
        "kfold",
        "--models",
        args.models,
        "--lr-schedules",
        args.lr_schedules,
        "--folds",
        str(args.folds),
        "--data",
        args.data,
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--json",
        "--quiet",
        *extra,
    ]
    if args.data_dir is not None:
        command += ["--data-dir", str(args.data_dir)]
    if args.num_samples is not None:
        command += ["--num-samples", str(args.num_samples)]
    print("$", " ".join(command[2:]), file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"parnn kfold failed ({done.returncode}): {done.stderr.strip()}")
    return dict(json.loads(done.stdout))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,mlp")
    parser.add_argument("--lr-schedules", default="cosine,warm")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--skip-two-threads", action="store_true", help="Skip run B.")
    parser.add_argument(
        "--smoke", action="store_true", help="digits, 2 folds, 1 epoch: a check in seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.data, args.data_dir, args.folds, args.epochs = "digits", None, 2, 1
        args.out = args.out.parent / (args.out.name + "-smoke")

    runs = {"parallel_vs_serial": args.out / "parallel_vs_serial"}
    if not args.skip_two_threads:
        runs["serial_2_threads"] = args.out / "serial_2_threads"
    for path in runs.values():
        if path.exists():
            shutil.rmtree(path)  # a benchmark measures afresh; never resumes

    facts = machine_facts()
    load = {"before": _load()}
    a = _kfold(args, runs["parallel_vs_serial"], "--compare-serial", "--workers", "auto")
    load["after_parallel_vs_serial"] = _load()
    b = None
    if "serial_2_threads" in runs:
        b = _kfold(args, runs["serial_2_threads"], "--workers", "1", "--threads", "2")
        load["after_serial_2_threads"] = _load()

    parallel, serial = a["timing"]["parallel"], a["timing"]["serial"]
    two = b["timing"]["parallel"] if b is not None else None
    summary = {
        "settings": a["settings"],
        "load_average_1m": load,
        "parallel": parallel,
        "serial_1_thread": serial,
        "serial_2_threads": two,
        "speedup_vs_serial_1_thread": a["timing"]["speedup"],
        "speedup_vs_serial_2_threads": (
            round(two["wall_s"] / parallel["wall_s"], 3) if two is not None else None
        ),
        "identical_parallel_serial": all(row["identical"] for row in a["summary"]),
        "summary": a["summary"],
        "per_model": a["per_model"],
        "cost": a["cost"],
        "files": {"parallel_vs_serial": a["files"], "serial_2_threads": b and b["files"]},
        "machine": facts,
    }
    write_json(args.out / "summary.json", summary)
    print(_markdown(summary))


def _markdown(summary: dict[str, Any]) -> str:
    def row(name: str, timing: dict[str, Any] | None, speedup: float | None) -> str:
        if timing is None:
            return f"| {name} | - | - | - | - | - |"
        full = timing["cpu_full_percent"]
        return (
            f"| {name} | {timing['workers']} x {timing['threads']} | "
            f"{timing['wall_s']:.1f} s | {timing['cpu_mean_percent']:.0f} % | "
            f"{full if full is not None else '-'} % | "
            f"{f'{speedup:.2f}x' if speedup is not None else '-'} |"
        )

    parallel = summary["parallel"]
    lines = [
        f"load average (1 min): {summary['load_average_1m']}",
        "",
        "| run | workers x threads | wall | CPU mean | CPU while pool full | parallel speedup |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        row("parallel", parallel, None),
        row("serial 1 thread", summary["serial_1_thread"], summary["speedup_vs_serial_1_thread"]),
        row(
            "serial 2 threads", summary["serial_2_threads"], summary["speedup_vs_serial_2_threads"]
        ),
        "",
        f"identical accuracies parallel vs serial, every job: {summary['identical_parallel_serial']}",
        "",
        "| model | schedule | parallel | serial |",
        "| --- | --- | ---: | ---: |",
    ]
    for entry in summary["summary"]:
        cells = []
        for mode in ("parallel", "serial"):
            cell = entry[mode]
            cells.append(
                f"{100 * cell['mean_accuracy']:.2f} ± {100 * cell['std_accuracy']:.2f} %"
                if cell and cell["mean_accuracy"] is not None
                else "-"
            )
        lines.append(f"| {entry['model']} | {entry['lr_schedule']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
