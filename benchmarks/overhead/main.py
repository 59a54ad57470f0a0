"""The wall clock a user sees: whole-process times of parnn commands against what a user
would write by hand, run alternately, medians of repeats.

    python benchmarks/overhead/main.py --data-dir ../shared/data/mnist --repeats 5
    python benchmarks/overhead/main.py --only help,startup --repeats 7

Cases (each run alternates its commands, one after another, ``--repeats`` times):

    help      python -c "import torch" | parnn --help | parnn train --help | a usage error
    listing   python -c "import torch" | parnn models | parnn schedules | parnn partition
              (cached profile)
    startup   python -c "import torch" | startup_s of parnn pipeline --json, parnn dp --json
              (2 ranks): command start to the first training step
    train     plain_train.py | parnn train (LeNet-5, MNIST 8k/2k, 3 epochs, SGD, 1 thread)
    kfold     plain_kfold.py (joblib, 2 jobs) | parnn kfold with its defaults (lenet5,mlp x
              cosine,warm x 5 folds, MNIST 10k, 1 epoch, batch 32, 2 workers)
    demo      parnn demo (what `make run` runs)

Writes ``results/<case>.json`` (every run's seconds, the medians, the load average before
and after) and prints one table per case. parnn's sources are byte-compiled first, as pip
does when it installs a package (see :func:`compile_parnn`).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
PARNN = [PY, "-m", "parnn.cli"]
CASES = ("help", "listing", "startup", "train", "kfold", "demo")


def _run(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 900
) -> tuple[float, str]:
    """Seconds of the whole process (start to exit) and its stdout."""
    started = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    seconds = time.perf_counter() - started
    expected_failure = "--no-such-flag" in command
    if completed.returncode != 0 and not expected_failure:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    return seconds, completed.stdout


def compile_parnn(*sources: Path) -> None:
    """Byte-compile the parnn that the commands import (and ``--before``'s), as pip does
    when it installs a package. Where ``PYTHONDONTWRITEBYTECODE`` is set (some sandboxes and
    CI images set it) an editable checkout is otherwise compiled from source, ~100 modules,
    in every timed run, which no installed parnn pays; the plain scripts are one file."""
    spec = importlib.util.find_spec("parnn")
    if spec is None or spec.origin is None:
        raise RuntimeError("parnn is not importable from this Python: run `make setup`")
    for source in (Path(spec.origin).parent, *sources):
        compileall.compile_dir(source, quiet=1)


def _json_key(key: str) -> Any:
    def read(stdout: str) -> float:
        return float(json.loads(stdout.strip().splitlines()[-1])[key])

    return read


def _commands(case: str, data_dir: Path, scratch: Path) -> dict[str, tuple[list[str], Any]]:
    """label -> (command, None for its wall time | a reader of the number it prints)."""
    torch_import = [PY, "-c", "import torch"]
    mnist = ["--data", "mnist", "--data-dir", str(data_dir)]
    if case == "help":
        return {
            "import torch": (torch_import, None),
            "parnn --help": ([*PARNN, "--help"], None),
            "parnn train --help": ([*PARNN, "train", "--help"], None),
            "parnn train --no-such-flag": ([*PARNN, "train", "--no-such-flag"], None),
        }
    if case == "listing":
        return {
            "import torch": (torch_import, None),
            "parnn models": ([*PARNN, "models"], None),
            "parnn schedules": ([*PARNN, "schedules"], None),
            "parnn partition (cached)": ([*PARNN, "partition", "--model", "lenet5"], None),
        }
    if case == "startup":
        return {
            "import torch": (torch_import, None),
            "parnn pipeline startup_s": (
                [*PARNN, "pipeline", "--steps", "3", "--no-eval", "--json", "--quiet"],
                _json_key("startup_s"),
            ),
            "parnn dp startup_s": (
                [*PARNN, "dp", "--steps", "3", "--json", "--quiet"],
                _json_key("startup_s"),
            ),
        }
    if case == "train":
        return {
            "plain PyTorch loop": ([PY, str(HERE / "plain_train.py"), str(data_dir)], None),
            "parnn train": (
                [
                    *PARNN,
                    "train",
                    "--model",
                    "lenet5",
                    *mnist,
                    "--epochs",
                    "3",
                    "--optimizer",
                    "sgd",
                    "--lr",
                    "0.05",
                    "--lr-schedule",
                    "constant",
                    "--batch-size",
                    "32",
                    "--threads",
                    "1",
                ],
                None,
            ),  # fmt: skip
        }
    if case == "kfold":
        return {
            "joblib, 2 jobs": ([PY, str(HERE / "plain_kfold.py"), str(data_dir), "2"], None),
            "parnn kfold": (
                [
                    *PARNN,
                    "kfold",
                    *mnist,
                    "--epochs",
                    "1",
                    "--batch-size",
                    "32",
                    "--workers",
                    "2",
                    "--out",
                    str(scratch / "kfold-{run}"),
                ],
                None,
            ),  # fmt: skip
        }
    if case == "demo":
        return {"parnn demo": ([*PARNN, "demo", "--out", str(scratch / "demo-{run}")], None)}
    raise ValueError(case)


def run_case(
    case: str, repeats: int, data_dir: Path, before_src: Path | None = None
) -> dict[str, Any]:
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix=f"parnn-overhead-{case}-") as tmp:
        commands: dict[str, tuple[list[str], Any, dict[str, str] | None]] = {
            label: (command, reader, None)
            for label, (command, reader) in _commands(case, data_dir, Path(tmp)).items()
        }
        if before_src is not None:  # the same parnn commands from another source tree
            before_env = {**os.environ, "PYTHONPATH": str(before_src)}
            for label, (command, reader, _) in list(commands.items()):
                if command[:3] == PARNN and reader is None:
                    before = [part.replace("{run}", "before-{run}") for part in command]
                    commands[f"{label} (before)"] = (before, reader, before_env)
        if case not in ("kfold", "demo"):
            for command, _, env in commands.values():  # warm the caches (disk, profiles)
                _run(command, env=env)
        for run in range(repeats):
            for label, (command, reader, env) in commands.items():
                wall_s, stdout = _run(
                    [part.replace("{run}", str(run)) for part in command], env=env
                )
                seconds.setdefault(label, []).append(reader(stdout) if reader else wall_s)
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    return {
        "case": case,
        "repeats": repeats,
        "seconds": seconds,
        "median_s": medians,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _print(result: dict[str, Any]) -> None:
    medians = result["median_s"]
    first = next(iter(medians.values()))
    load = ", ".join(f"{value:.1f}" for value in result["load_average_before"])
    print(f"\n{result['case']}: medians of {result['repeats']} alternating runs (load {load})")
    for label, median in medians.items():
        runs = " ".join(f"{value:.2f}" for value in result["seconds"][label])
        print(f"  {label:32s} {median:7.2f} s  {median / first:5.2f}x   [{runs}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[2] / "shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES), help="Comma-separated cases.")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="A src/ directory of an earlier parnn: its commands run alternately too.",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    compile_parnn(*([args.before] if args.before is not None else []))
    for case in [name.strip() for name in args.only.split(",") if name.strip()]:
        result = run_case(case, args.repeats, args.data_dir, args.before)
        (args.out / f"{case}.json").write_text(json.dumps(result, indent=2) + "\n")
        _print(result)


if __name__ == "__main__":
    main()
