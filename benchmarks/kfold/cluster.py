"""K-fold jobs through Dask's scheduler vs the pinned pool: what going through a scheduler
costs, on one machine.

The README's k-fold example (``parnn kfold --models lenet5,mlp --lr-schedules cosine,warm
--folds 5``: digits, 2 epochs, 20 jobs) run three ways, in alternating order within each
repeat:

  pool   the pinned pool (the default; ``--workers auto``: one per usable core);
  local  ``--cluster local``: a LocalCluster started by the command, one worker process
         per usable core, one thread each;
  tcp    ``--cluster tcp://127.0.0.1:PORT``: a ``dask scheduler`` and one ``dask worker``
         per usable core (``--nthreads 1 --resources cores=1``, the statistical profiler
         off), started once before the repeats and kept, as a cluster is in use.

For each run: the session's wall time (``timing.parallel.wall_s``: from the workers'
start, or the first task's submission, to the last job's end; the fork server's or the
cluster's start excluded) and the whole command's wall time, and the 1-minute load
average before it. Ratios are taken within a repeat (cluster / pool). Writes
``OUT/summary.json`` and prints Markdown.

    .venv/bin/python benchmarks/kfold/cluster.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from parnn.launch import usable_cores
from parnn.results import machine_facts, write_json

HERE = Path(__file__).resolve().parent
EXAMPLE = ["--models", "lenet5,mlp", "--lr-schedules", "cosine,warm", "--folds", "5"]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _kfold(out: Path, *extra: str) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)  # a benchmark measures afresh; never resumes
    command = [sys.executable, "-m", "parnn.cli", "kfold", *EXAMPLE, "--out", str(out)]
    command += ["--json", "--quiet", *extra]
    load = _load()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    command_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"parnn kfold failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    payload = json.loads(done.stdout)
    timing = payload["timing"]["parallel"]
    return {
        "wall_s": timing["wall_s"],
        "command_s": round(command_s, 3),
        "job_time_s": timing["job_time_s"],
        "workers": timing["workers"],
        "cpu_process_percent": timing["cpu_process_percent"],
        "load_average_1m_before": load,
        "accuracies": {job["job_id"]: job["accuracy"] for job in payload["jobs"]},
    }


class _Cluster:
    """A `dask scheduler` and N `dask worker` processes on 127.0.0.1, for the tcp arm."""

    def __init__(self, workers: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="parnn-bench-dask-"))
        self.workers = workers
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def _start(self, *args: str) -> None:
        log = open(self.folder / f"{args[0]}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # as docs/cluster.md advises: no statistical profiler in the workers
                env={**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"},
            )
        )
        log.close()

    def __enter__(self) -> _Cluster:
        scheduler_file = self.folder / "scheduler.json"
        self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file))  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                self.address = json.loads(scheduler_file.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the dask scheduler did not start") from None
                time.sleep(0.2)
        for _ in range(self.workers):
            self._start("worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                        "--nthreads", "1", "--resources", "cores=1", "--no-dashboard")  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.workers, timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cluster")
    parser.add_argument("--skip-tcp", action="store_true", help="Only the pool and local.")
    args = parser.parse_args()
    # SIGTERM (a timeout, a batch system) unwinds like Ctrl-C: the cluster is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args.out = args.out.resolve()  # a remote cluster needs an absolute --out
    args.out.mkdir(parents=True, exist_ok=True)
    cores = len(usable_cores())
    facts = machine_facts()
    runs: list[dict[str, Any]] = []
    load = {"before": _load()}
    with _Cluster(cores) if not args.skip_tcp else _NoCluster() as cluster:
        load["cluster_started"] = _load()
        arms = {"pool": (), "local": ("--cluster", "local")}
        if cluster.address:
            arms["tcp"] = ("--cluster", cluster.address)
        for repeat in range(args.repeats):
            order = list(arms) if repeat % 2 == 0 else list(reversed(arms))
            for arm in order:
                result = _kfold(args.out / arm, *arms[arm])
                result.update(repeat=repeat, arm=arm, load_average_1m_after=_load())
                print(json.dumps({k: v for k, v in result.items() if k != "accuracies"}),
                      file=sys.stderr, flush=True)  # fmt: skip
                runs.append(result)
    summary = _summarise(runs, list(arms))
    summary.update(load_average_1m=load, machine=facts, example=EXAMPLE, repeats=args.repeats)
    summary["runs"] = [{k: v for k, v in run.items() if k != "accuracies"} for run in runs]
    write_json(args.out / "summary.json", summary)
    print(_markdown(summary))


class _NoCluster:
    address = ""

    def __enter__(self) -> _NoCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _summarise(runs: list[dict[str, Any]], arms: list[str]) -> dict[str, Any]:
    by_repeat: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_repeat.setdefault(run["repeat"], {})[run["arm"]] = run
    reference = runs[0]["accuracies"]
    arms_summary: dict[str, Any] = {}
    for arm in arms:
        mine = [repeat[arm] for repeat in by_repeat.values() if arm in repeat]
        entry: dict[str, Any] = {
            "wall_s": [run["wall_s"] for run in mine],
            "command_s": [run["command_s"] for run in mine],
            "median_wall_s": statistics.median(run["wall_s"] for run in mine),
            "median_command_s": statistics.median(run["command_s"] for run in mine),
            "identical_accuracies": all(run["accuracies"] == reference for run in mine),
        }
        if arm != "pool":
            walls = [r[arm]["wall_s"] / r["pool"]["wall_s"] for r in by_repeat.values()]
            commands = [r[arm]["command_s"] / r["pool"]["command_s"] for r in by_repeat.values()]
            entry["wall_ratio_vs_pool"] = [round(value, 3) for value in walls]
            entry["command_ratio_vs_pool"] = [round(value, 3) for value in commands]
            entry["median_wall_ratio_vs_pool"] = round(statistics.median(walls), 3)
            entry["median_command_ratio_vs_pool"] = round(statistics.median(commands), 3)
        arms_summary[arm] = entry
    return {"arms": arms_summary}


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"load average (1 min): {summary['load_average_1m']}; per run: "
        + ", ".join(f"{run['arm']} {run['load_average_1m_before']}" for run in summary["runs"]),
        "",
        "| executor | session wall (median) | / pool, per repeat | command wall (median) "
        "| / pool, per repeat | accuracies = pool's |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for arm, entry in summary["arms"].items():
        ratio = entry.get("median_wall_ratio_vs_pool")
        command_ratio = entry.get("median_command_ratio_vs_pool")
        lines.append(
            f"| {arm} | {entry['median_wall_s']:.2f} s | "
            + (
                f"{ratio:.3f}x ({', '.join(map(str, entry['wall_ratio_vs_pool']))})"
                if ratio
                else "-"
            )
            + f" | {entry['median_command_s']:.1f} s | "
            + (
                f"{command_ratio:.3f}x ({', '.join(map(str, entry['command_ratio_vs_pool']))})"
                if command_ratio
                else "-"
            )
            + f" | {'yes' if entry['identical_accuracies'] else 'NO'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
