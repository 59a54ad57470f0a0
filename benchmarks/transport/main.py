"""The pipeline's messages over shared memory vs gloo: a 4 KB ping-pong, LeNet-5 with GPipe
and 1F1B over both transports, and the simulator's error with the per-transport comm
model. Repeats alternate the variants side by side; the load average is written beside
every figure (the machine is shared). Writes results/<part>.json and prints a table.

    .venv/bin/python benchmarks/transport/main.py pingpong --repeats 7
    .venv/bin/python benchmarks/transport/main.py lenet --repeats 3 --steps 20
    .venv/bin/python benchmarks/transport/main.py simulator --models lenet5 alexnet
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from parnn.launch import LaunchConfig, launch
from parnn.partition import Partition, ProfileConfig, ProfileSource, plan_pipeline
from parnn.partition.measure.cache import default_cache_dir
from parnn.results import machine_facts, write_json
from parnn.transport import new_transport_group

HERE = Path(__file__).resolve().parent
INPUTS = {"lenet5": (1, 28, 28), "alexnet": (3, 32, 32)}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --- 1. ping-pong -----------------------------------------------------------------------------


def _ping_pong(rank: int, world_size: int, size: int, trips: int, rounds: int) -> list[dict]:
    """Both transports in the same two pinned processes, blocks alternating shm / gloo;
    per block the median round trip of ``trips`` ping-pongs."""
    groups = {"shm": new_transport_group("shm"), "gloo": new_transport_group("gloo")}
    peer = 1 - rank
    buffer = torch.zeros(size // 4)  # (size / 4,) float32
    rows = []
    for block in range(rounds):
        for name in ("shm", "gloo") if block % 2 == 0 else ("gloo", "shm"):
            group = groups[name]
            dist.barrier()
            times = []
            for _ in range(trips):
                start = time.perf_counter()
                if rank == 0:
                    dist.send(buffer, dst=peer, group=group)
                    dist.recv(buffer, src=peer, group=group)
                else:
                    dist.recv(buffer, src=peer, group=group)
                    dist.send(buffer, dst=peer, group=group)
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "block": block,
                    "transport": name,
                    "round_trip_s": statistics.median(times),
                    "mean_round_trip_s": statistics.fmean(times),
                    "load_1m": load(),
                }
            )
    return rows


def pingpong(args: argparse.Namespace) -> dict[str, Any]:
    rows = launch(_ping_pong, LaunchConfig(num_processes=2), args.size, args.trips, args.repeats)[0]
    summary = {}
    for name in ("shm", "gloo"):
        trips = [r["round_trip_s"] for r in rows if r["transport"] == name]
        means = [r["mean_round_trip_s"] for r in rows if r["transport"] == name]
        summary[name] = {
            "round_trip_us": 1e6 * statistics.median(trips),
            "mean_round_trip_us": 1e6 * statistics.median(means),
            "one_way_us": 0.5e6 * statistics.median(trips),
            "blocks_us": [round(1e6 * t, 1) for t in trips],
        }
        print(
            f"{args.size} B ping-pong over {name}: round trip {summary[name]['round_trip_us']:.0f}"
            f" us (one way {summary[name]['one_way_us']:.0f} us; mean round trip "
            f"{summary[name]['mean_round_trip_us']:.0f} us); blocks {summary[name]['blocks_us']}"
        )
    print(f"load average per block: {[r['load_1m'] for r in rows]}")
    return {"settings": vars(args), "summary": summary, "rows": rows}


# --- 2. LeNet-5, gpipe vs 1f1b over both transports ----------------------------------------------


def measure(
    *,
    model: str,
    partition: Partition | str,
    batch_size: int,
    num_microbatches: int,
    schedule: str,
    transport: str,
    steps: int,
    warmup_steps: int,
) -> dict[str, Any]:
    """One pipeline run on synthetic data, SGD (the optimizer the profile's update times
    are for): its median step after warm-up."""
    from parnn.pipeline import PipelineConfig, run_pipeline
    from parnn.train import OptimizerConfig

    before = load()
    config = PipelineConfig.of(
        model=model,
        data="synthetic",
        input_shape=INPUTS[model],
        num_samples=batch_size * (steps + warmup_steps),
        num_ranks=2,
        partition=partition,
        schedule=schedule,
        num_microbatches=num_microbatches,
        batch_size=batch_size,
        steps=steps + warmup_steps,
        evaluate=False,
        optimizer=OptimizerConfig(name="sgd", lr=0.01),
        measure_warmup_steps=warmup_steps,
        transport=transport,
    )
    result = run_pipeline(config, quiet=True)
    assert result is not None
    return {
        "step_time_s": result.step_time_s,
        "partition": result.partition,
        "transport": result.transport["used"],
        "load_1m": [before, load()],
    }


def lenet(args: argparse.Namespace) -> dict[str, Any]:
    variants = [(s, t) for t in ("shm", "gloo") for s in ("gpipe", "1f1b")]
    rows = []
    for repeat in range(args.repeats):
        shift = repeat % len(variants)  # rotate the order: no variant always runs first
        for schedule, transport in variants[shift:] + variants[:shift]:
            run = measure(
                model="lenet5",
                partition=args.partition,
                batch_size=args.batch_size,
                num_microbatches=args.microbatches,
                schedule=schedule,
                transport=transport,
                steps=args.steps,
                warmup_steps=args.warmup_steps,
            )
            rows.append({"repeat": repeat, "schedule": schedule, **run, "requested": transport})
            print(
                f"repeat {repeat} {schedule:5s} {transport:4s}: {1e3 * run['step_time_s']:.1f} ms"
                f" (load {run['load_1m']})",
                flush=True,
            )
    medians = {}
    for schedule, transport in variants:
        times = [
            r["step_time_s"]
            for r in rows
            if r["schedule"] == schedule and r["requested"] == transport
        ]
        medians[f"{schedule}/{transport}"] = statistics.median(times)
    ratios = {
        transport: [a["step_time_s"] / b["step_time_s"] for a, b in _pairs(rows, transport)]
        for transport in ("shm", "gloo")
    }
    speedups = {
        schedule: [g["step_time_s"] / s["step_time_s"] for s, g in _transport_pairs(rows, schedule)]
        for schedule in ("gpipe", "1f1b")
    }
    for key, value in medians.items():
        print(f"median {key}: {1e3 * value:.1f} ms")
    for transport, values in ratios.items():
        print(f"1f1b / gpipe over {transport} per repeat: {[round(v, 2) for v in values]}")
    for schedule, values in speedups.items():
        print(f"{schedule}: gloo / shm per repeat: {[round(v, 2) for v in values]}")
    return {
        "settings": vars(args),
        "medians_s": medians,
        "ratio_1f1b_over_gpipe": ratios,
        "speedup_shm_over_gloo": speedups,
        "rows": rows,
    }


def _pairs(rows: list[dict], transport: str) -> list[tuple[dict, dict]]:
    """(1f1b, gpipe) of the same repeat over ``transport``."""
    out = []
    for repeat in sorted({r["repeat"] for r in rows}):
        found = {
            r["schedule"]: r for r in rows if r["repeat"] == repeat and r["requested"] == transport
        }
        if {"gpipe", "1f1b"} <= set(found):
            out.append((found["1f1b"], found["gpipe"]))
    return out


def _transport_pairs(rows: list[dict], schedule: str) -> list[tuple[dict, dict]]:
    """(shm, gloo) of the same repeat for ``schedule``."""
    out = []
    for repeat in sorted({r["repeat"] for r in rows}):
        found = {
            r["requested"]: r for r in rows if r["repeat"] == repeat and r["schedule"] == schedule
        }
        if {"shm", "gloo"} <= set(found):
            out.append((found["shm"], found["gloo"]))
    return out


# --- 3. the simulator against the runtime ------------------------------------------------------


def simulator(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for transport in args.transports:
        for model in args.models:
            source = ProfileSource(
                ProfileConfig(
                    model=model,
                    input_shape=INPUTS[model],
                    num_classes=10,
                    cache_dir=args.cache_dir,
                    transport=transport,
                    quiet=True,
                )
            )
            comm = source.comm_model()
            assert comm is not None
            print(
                f"comm model over {transport}: latency {1e6 * comm.latency_s:.0f} us, "
                f"bandwidth {comm.bandwidth_bytes_per_s / 1e9:.2f} GB/s",
                flush=True,
            )
            for batch_size in args.batch_sizes:
                for m in args.microbatches:
                    for schedule in ("gpipe", "1f1b"):
                        plan = plan_pipeline(
                            "auto",
                            profile_for=source,
                            batch_size=batch_size,
                            num_stages=2,
                            schedule=schedule,
                            num_microbatches=m,
                        )
                        run = measure(
                            model=model,
                            partition=plan.partition,
                            batch_size=batch_size,
                            num_microbatches=m,
                            schedule=schedule,
                            transport=transport,
                            steps=args.steps,
                            warmup_steps=args.warmup_steps,
                        )
                        predicted = plan.chosen.step_time_s
                        error = (predicted - run["step_time_s"]) / run["step_time_s"]
                        rows.append(
                            {
                                "transport": transport,
                                "model": model,
                                "batch_size": batch_size,
                                "num_microbatches": m,
                                "schedule": schedule,
                                "partition": str(plan.partition),
                                "predicted_step_s": predicted,
                                "error": error,
                                **run,
                            }
                        )
                        print(
                            f"{transport} {model} b{batch_size} m{m} {schedule}: predicted "
                            f"{1e3 * predicted:.1f} ms, measured {1e3 * run['step_time_s']:.1f}"
                            f" ms ({error:+.0%}; load {run['load_1m']})",
                            flush=True,
                        )
    summary = {}
    for transport in args.transports:
        for schedule in ("gpipe", "1f1b", "all"):
            errors = [
                abs(r["error"])
                for r in rows
                if r["transport"] == transport and schedule in ("all", r["schedule"])
            ]
            if errors:
                summary[f"{transport}/{schedule}"] = statistics.median(errors)
                print(f"median |error| {transport} {schedule}: {statistics.median(errors):.1%}")
    return {"settings": vars(args), "median_abs_error": summary, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    ping = parts.add_parser("pingpong")
    ping.add_argument("--size", type=int, default=4096, help="bytes per message")
    ping.add_argument("--trips", type=int, default=200, help="round trips per block")
    ping.add_argument("--repeats", type=int, default=7, help="blocks per transport")
    net = parts.add_parser("lenet")
    net.add_argument("--repeats", type=int, default=3)
    net.add_argument("--steps", type=int, default=20)
    net.add_argument("--warmup-steps", type=int, default=3)
    net.add_argument("--batch-size", type=int, default=64)
    net.add_argument("--microbatches", type=int, default=4)
    net.add_argument("--partition", default="auto")
    sim = parts.add_parser("simulator")
    sim.add_argument("--models", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    sim.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    sim.add_argument("--microbatches", nargs="+", type=int, default=[2, 4])
    sim.add_argument("--transports", nargs="+", default=["shm"], choices=["shm", "gloo"])
    sim.add_argument("--steps", type=int, default=8)
    sim.add_argument("--warmup-steps", type=int, default=2)
    sim.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    for part in (ping, net, sim):
        part.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    facts = machine_facts()
    result = {"pingpong": pingpong, "lenet": lenet, "simulator": simulator}[args.part](args)
    result.update(
        benchmark=f"transport/{args.part}",
        command=" ".join(sys.argv),
        machine_before=facts,
        machine_after=machine_facts(),
        elapsed_s=time.perf_counter() - started,
    )
    result["settings"] = {k: str(v) for k, v in result["settings"].items()}
    write_json(args.out / f"{args.part}.json", result)
    print(f"wrote {args.out / (args.part + '.json')}")


if __name__ == "__main__":
    main()
