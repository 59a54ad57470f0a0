"""``parnn demo``: the headline job on embedded data, in about a minute on 2 cores.

Trains LeNet-5 on the digits bundled with scikit-learn (resized to 1x28x28) as a 2-stage
pipeline (1F1B, batch 256 in 4 micro-batches of 64), one pinned process per stage, under every named layer-distribution scheme and
the cost-aware ``auto`` partition, side by side with the single-process reference trainer.
Schemes that give the same partition share one run. It prints one table (throughput, step
time, bubble fraction and accuracy per scheme) and saves a plot; everything is also
written under --out as ``demo.json``, with each run's ``result.json`` and Chrome trace.

``--json`` prints one object: ``command`` ("demo"), ``model``, ``data``, ``stages``,
``batch_size``, ``microbatches``, ``epochs``, ``reference`` (samples_per_s,
val_accuracy), ``runs`` (one per scheme: scheme, partition, units_per_stage,
samples_per_s, step_time_s, bubble_fraction, val_accuracy, speedup_vs_reference),
``best_scheme``, ``plot_path``, ``results_path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from parnn.cli._options import emit, json_option, quiet_option, seed_option
from parnn.outdir import check_out_dir
from parnn.progress import progress_bar, stdout_console
from parnn.results import machine_facts, write_json

if TYPE_CHECKING:
    from parnn.partition import Partition

__all__ = ["COMMANDS", "demo_command"]

DEMO_MODEL = "lenet5"
DEMO_DATA = "digits"
STAGES = 2
BATCH_SIZE = 256
MICROBATCHES = 4
SCHEDULE = "1f1b"
LR = 0.01
EPOCHS = 8
PLOT_FILE = "demo.png"


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Directory for results (JSON), traces and the plot.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=EPOCHS,
    show_default=True,
    help="Epochs per run.",
)
@click.option("--overwrite", is_flag=True, help="Write over an earlier demo in --out.")
@seed_option
@json_option
@quiet_option
def demo_command(
    out: Path, epochs: int, overwrite: bool, seed: int, as_json: bool, quiet: bool
) -> None:
    """LeNet-5 on the bundled digits as a 2-stage pipeline: every scheme and `auto`."""
    check_out_dir(out, overwrite=overwrite)
    from parnn.launch.forkserver import start_forkserver

    # The ranks' fork server imports torch, the pipeline and the digits loader while this
    # process plans and trains the reference; every run's ranks fork with all that loaded.
    start_forkserver(["parnn.pipeline.worker", "sklearn.datasets"])
    from parnn.partition import SCHEMES
    from parnn.partition.measure.cache import default_cache_dir
    from parnn.partition.measure.resolve import resolve_partition
    from parnn.pipeline import PipelineConfig, run_pipeline
    from parnn.train import OptimizerConfig, TrainConfig, train
    from parnn.train.setup import setup_training

    optimizer = OptimizerConfig(name="adam", lr=LR)
    methods = [*SCHEMES, "auto"]
    partitions: dict[str, Partition] = {
        method: resolve_partition(
            method,
            model=DEMO_MODEL,
            num_stages=STAGES,
            batch_size=BATCH_SIZE,
            num_microbatches=MICROBATCHES,
            input_shape=(1, 28, 28),
            num_classes=10,
            cache_dir=default_cache_dir(),
        )
        for method in methods
    }
    distinct = list(dict.fromkeys(partitions.values()))
    measured: dict[Partition, Any] = {}
    started = time.perf_counter()
    with progress_bar(len(distinct) + 1, "demo runs", quiet=quiet or as_json) as bar:
        setup = setup_training(DEMO_MODEL, DEMO_DATA, seed=seed)
        reference = train(
            setup.model,
            setup.train_data,
            setup.val_data,
            TrainConfig(
                epochs=EPOCHS,
                batch_size=BATCH_SIZE,
                optimizer=optimizer,
                schedule="constant",
                seed=seed,
                threads=1,
                drop_last=True,
            ),
            quiet=True,
        )
        bar.advance()
        for partition in distinct:
            bar.set_postfix(f"partition {partition}")
            measured[partition] = run_pipeline(
                PipelineConfig(
                    model=DEMO_MODEL,
                    data=DEMO_DATA,
                    num_stages=STAGES,
                    partition=partition,
                    schedule=SCHEDULE,
                    num_microbatches=MICROBATCHES,
                    batch_size=BATCH_SIZE,
                    epochs=epochs,
                    optimizer=optimizer,
                    seed=seed,
                    out_dir=out / f"partition-{'-'.join(map(str, partition.counts))}",
                ),
                quiet=True,
            )
            bar.advance()
    reference_rate = _reference_rate(reference)
    runs = []
    for method in methods:
        partition = partitions[method]
        result = measured[partition]
        runs.append(
            {
                "scheme": method,
                "partition": list(partition.boundaries),
                "units_per_stage": list(partition.counts),
                "samples_per_s": result.samples_per_s,
                "step_time_s": result.step_time_s,
                "bubble_fraction": result.bubble_fraction,
                "val_accuracy": result.val_accuracy,
                "speedup_vs_reference": result.samples_per_s / reference_rate,
                "stage_compute_s": [s.compute_s for s in result.stages],
            }
        )
    best = max(runs, key=lambda run: run["samples_per_s"])
    out.mkdir(parents=True, exist_ok=True)
    plot_path = _plot(runs, reference_rate, out / PLOT_FILE)
    payload = {
        "command": "demo",
        "model": DEMO_MODEL,
        "data": DEMO_DATA,
        "stages": STAGES,
        "batch_size": BATCH_SIZE,
        "microbatches": MICROBATCHES,
        "epochs": epochs,
        "reference": {
            "samples_per_s": reference_rate,
            "val_accuracy": reference.final.accuracy if reference.final else None,
        },
        "runs": runs,
        "best_scheme": best["scheme"],
        "wall_s": time.perf_counter() - started,
        "plot_path": str(plot_path),
        "results_path": str(out / "demo.json"),
    }
    write_json(out / "demo.json", {**payload, "machine": machine_facts()})
    emit(payload, as_json=as_json, render=lambda: _render(payload))


def _reference_rate(result: Any) -> float:
    """Median samples/s of the reference trainer's steps after the first two, the way the
    pipeline measures itself (so start-up is left out of both)."""
    times = [record.wall_s for record in result.step_log]
    durations = sorted(b - a for a, b in zip(times[2:], times[3:], strict=False))
    if not durations:
        return float(result.samples_per_s)
    return BATCH_SIZE / durations[len(durations) // 2]


def _render(payload: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"parnn demo: LeNet-5 on digits, {STAGES}-stage pipeline ({SCHEDULE}, "
            f"{MICROBATCHES} micro-batches of {BATCH_SIZE // MICROBATCHES}), "
            f"{payload['epochs']} epochs"
        )
    )
    for column in (
        "scheme",
        "units",
        "samples/s",
        "speedup",
        "step ms",
        "bubble",
        "val acc",
    ):
        table.add_column(column, justify="left" if column == "scheme" else "right")
    reference = payload["reference"]
    table.add_row(
        "1 process",
        "5",
        f"{reference['samples_per_s']:,.0f}",
        "1.00x",
        "",
        "",
        f"{100 * reference['val_accuracy']:.1f}%" if reference["val_accuracy"] else "-",
    )
    for run in payload["runs"]:
        best = run["scheme"] == payload["best_scheme"]
        table.add_row(
            f"[bold]{run['scheme']}[/]" if best else run["scheme"],
            "|".join(map(str, run["units_per_stage"])),
            f"{run['samples_per_s']:,.0f}",
            f"{run['speedup_vs_reference']:.2f}x",
            f"{1000 * run['step_time_s']:.1f}",
            f"{100 * run['bubble_fraction']:.0f}%",
            f"{100 * run['val_accuracy']:.1f}%" if run["val_accuracy"] is not None else "-",
        )
    stdout_console.print(table)
    stdout_console.print(f"fastest: {payload['best_scheme']}; results: {payload['results_path']}")
    stdout_console.print(f"plot: {payload['plot_path']}", soft_wrap=True)


def _plot(runs: list[dict[str, Any]], reference_rate: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [run["scheme"] for run in runs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.bar(names, [run["samples_per_s"] for run in runs], color="#1f77b4")
    left.axhline(reference_rate, color="#d62728", linestyle="--", label="1 process (reference)")
    left.set_ylabel("samples/s (median step)")
    left.set_title("throughput per partition scheme")
    left.tick_params(axis="x", rotation=35)
    left.legend()
    bottom = [0.0] * len(runs)
    for stage in range(STAGES):
        heights = [1000 * run["stage_compute_s"][stage] for run in runs]
        right.bar(names, heights, bottom=bottom, label=f"stage {stage}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    right.set_ylabel("compute per step (ms)")
    right.set_title("per-stage compute: the slowest stage sets the pace")
    right.tick_params(axis="x", rotation=35)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


COMMANDS = [demo_command]
