"""Per-step synchronisation cost of each transport: one all-reduce of a float32 buffer
between two pinned processes, medians of 200.

    python benchmarks/data_parallel/sync_cost.py            # starts mpiexec -n 2 itself

Three ways to sum a buffer over the two ranks, measured in the same processes, in
alternating rounds (size by size, method by method, `--rounds` times), so that a busy
neighbour hurts all of them alike:

- ``gloo``: ``dist.all_reduce`` (blocking; what DDP's default hook and local-sgd do);
- ``gloo-poll``: ``dist.all_reduce(async_op=True)`` then ``is_completed()`` polled with
  ``os.sched_yield()`` between polls (the caller spins instead of sleeping on a futex);
- ``mpi``: mpi4py ``Allreduce(MPI.IN_PLACE, ...)`` on the tensor's memory (MPICH's
  shared-memory transport; what ``--transport mpi`` does).

Sizes: 4 KB, 250 KB (LeNet-5's 61,706 gradients are 247 KB) and 4 MB. Each timed call
is preceded by a barrier of its own transport (not timed), so both ranks enter together.
Results (rank 0): ``results/sync_cost.json`` with the median, 10th and 90th percentile
in microseconds per round and the median of the rounds, and the load averages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES_BYTES = {"4 KB": 4096, "250 KB": 250_000, "4 MB": 4_194_304}
METHODS = ("gloo", "gloo-poll", "mpi")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed all-reduces per median")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternating repeats")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sync_cost.json")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _rank(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[rank % len(cores)]})
    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=60)
    store = (
        dist.TCPStore("127.0.0.1", 0, size, True, timeout=timeout, wait_for_workers=False)
        if rank == 0
        else None
    )
    port = comm.bcast(store.port if store is not None else None, root=0)
    if store is None:
        store = dist.TCPStore("127.0.0.1", port, size, False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=size, timeout=timeout)

    def gloo(buffer: torch.Tensor) -> None:
        dist.all_reduce(buffer)

    def gloo_poll(buffer: torch.Tensor) -> None:
        work = dist.all_reduce(buffer, async_op=True)
        while not work.is_completed():
            os.sched_yield()
        work.wait()

    def mpi(buffer: torch.Tensor) -> None:
        comm.Allreduce(MPI.IN_PLACE, buffer.numpy(), op=MPI.SUM)

    barriers = {"gloo": dist.barrier, "gloo-poll": dist.barrier, "mpi": comm.Barrier}
    calls = {"gloo": gloo, "gloo-poll": gloo_poll, "mpi": mpi}
    samples: dict[str, dict[str, list[list[float]]]] = {
        method: {name: [] for name in SIZES_BYTES} for method in METHODS
    }
    for _ in range(args.rounds):
        for name, num_bytes in SIZES_BYTES.items():
            buffer = torch.ones(num_bytes // 4)  # (P,) float32
            for method in METHODS:
                times = []
                for index in range(args.warmup + args.calls):
                    barriers[method]()
                    start = time.perf_counter()
                    calls[method](buffer)
                    elapsed = time.perf_counter() - start
                    if index >= args.warmup:
                        times.append(elapsed * 1e6)  # microseconds
                    buffer.fill_(1.0)  # keep the values finite
                samples[method][name].append(times)
    dist.destroy_process_group()
    if rank != 0:
        return
    table: dict[str, dict[str, dict[str, object]]] = {}
    for method in METHODS:
        table[method] = {}
        for name in SIZES_BYTES:
            rounds = samples[method][name]
            medians = [statistics.median(times) for times in rounds]
            table[method][name] = {
                "median_us": round(statistics.median(medians), 1),
                "round_medians_us": [round(value, 1) for value in medians],
                "p10_us": round(statistics.median(_percentile(t, 0.1) for t in rounds), 1),
                "p90_us": round(statistics.median(_percentile(t, 0.9) for t in rounds), 1),
            }
    payload = {
        "calls": args.calls,
        "rounds": args.rounds,
        "sizes_bytes": SIZES_BYTES,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "time_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"load average {payload['load_average']}")
    print("median us per all-reduce (median of the rounds' medians; each round's median)")
    for method in METHODS:
        cells = [
            f"{name}: {table[method][name]['median_us']:.0f} "
            f"{table[method][name]['round_medians_us']}"
            for name in SIZES_BYTES
        ]
        print(f"{method:<10} " + " | ".join(cells))


def main() -> None:
    args = _arguments()
    if args.rank:
        _rank(args)
        return
    from parnn.data_parallel.mpi import find_mpiexec

    before = [round(value, 2) for value in os.getloadavg()]
    print(f"load average before {before}")
    command = [find_mpiexec(), "-n", "2", sys.executable, __file__, "--rank"]
    command += ["--calls", str(args.calls), "--warmup", str(args.warmup)]
    command += ["--rounds", str(args.rounds), "--out", str(args.out)]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
