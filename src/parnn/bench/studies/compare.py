"""Engines side by side on one model and data: the same seed, the same initial weights and
the same data for every run, then a speedup table against (a) one process with one thread
and (b) one process using every core through intra-op threads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.data_parallel.config import ENGINES, TRANSPORTS, DataParallelConfig
from parnn.errors import ConfigError

if TYPE_CHECKING:  # the names (COMPARE_NAMES, the --help text) import no torch
    from torch import nn
    from torch.utils.data import Dataset

    from parnn.data_parallel.result import DataParallelResult

__all__ = [
    "compare_data_parallel",
    "BASELINES",
    "COMPARE_NAMES",
    "Comparison",
    "comparison_configs",
    "write_comparison_files",
    "parse_compare_list",
    "run_comparison",
]

BASELINES = ("serial", "serial-threads")
"""One process with one thread; one process with one intra-op thread per usable core."""
INDEPENDENT = "independent"
"""N replicas that never talk until one average at the end (one-shot averaging: local SGD
whose period outlasts the run). Every engine's work minus all of its communication and
waiting: the throughput ceiling of N processes on this machine, measured beside them."""
COMPARE_NAMES = (*ENGINES, "serial-threads", INDEPENDENT)
TRANSPORT_NAMES = ("ddp", "local-sgd", INDEPENDENT)
"""Names that take a transport suffix in a comparison: ``ddp:mpi``, ``local-sgd:gloo``."""
_NEVER = 2**31 - 1  # an averaging period no run reaches: replicas average once, at the end


def _known(name: str) -> bool:
    engine, _, transport = name.partition(":")
    if not transport:
        return engine in COMPARE_NAMES
    return engine in TRANSPORT_NAMES and transport in TRANSPORTS


def parse_compare_list(text: str) -> list[str]:
    """'serial,ddp:mpi,ddp:gloo,hogwild' -> names, checked; the two baselines are always
    added first. ``NAME:TRANSPORT`` runs ddp, local-sgd or independent over that transport."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if not _known(name)]
    if not names or unknown:
        raise ConfigError(
            f"bad --compare list {text!r}: unknown {', '.join(unknown) or 'nothing given'}; "
            f"choose from {', '.join(COMPARE_NAMES)} ({', '.join(TRANSPORT_NAMES)} also as "
            "NAME:gloo or NAME:mpi), e.g. --compare serial,ddp:mpi,ddp:gloo,hogwild"
        )
    ordered = list(BASELINES) + [name for name in names if name not in BASELINES]
    return list(dict.fromkeys(ordered))


def comparison_configs(
    base: DataParallelConfig,
    names: Sequence[str],
    *,
    average_every: int | None = None,
    all_cores: int | None = None,
) -> list[DataParallelConfig]:
    """One config per compared name; the engines keep ``base``'s processes and threads,
    local-sgd and mpi average every ``average_every`` steps."""
    from parnn.launch import usable_cores

    cores = all_cores or len(base.cores or usable_cores())
    configs = []
    for entry in names:
        name, _, transport = entry.partition(":")
        changes: dict[str, Any] = {"engine": name, "average_every": None, "fail_at": None}
        if transport:
            changes["transport"] = transport
        elif name not in TRANSPORT_NAMES:
            changes["transport"] = "auto"  # serial, hogwild carry nothing; mpi is MPI
        if name == "serial":
            changes.update(engine="serial", num_ranks=1, threads=1)
        elif name == "serial-threads":
            changes.update(engine="serial", num_ranks=1, threads=cores)
        elif name in ("local-sgd", "mpi"):
            changes["average_every"] = average_every
        elif name == INDEPENDENT:
            changes.update(engine="local-sgd", average_every=_NEVER)
        configs.append(base.replace(**changes))
    return configs


@dataclass(slots=True)
class Comparison:
    """The runs of one comparison, baselines first."""

    runs: list[DataParallelResult]

    def _baseline(self, threads_all: bool) -> DataParallelResult | None:
        serial = [run for run in self.runs if run.config.engine == "serial"]
        if not serial:
            return None
        return (
            max(serial, key=lambda run: run.config.threads)
            if threads_all
            else min(serial, key=lambda run: run.config.threads)
        )

    def _independent(self) -> DataParallelResult | None:
        return next((run for run in self.runs if run.independent), None)

    def speedups(self) -> list[dict[str, Any]]:
        """One row per run: throughput, speedups over both baselines (and the share of the
        ``independent`` ceiling when it ran), accuracy and CPU."""
        one = self._baseline(threads_all=False)
        every = self._baseline(threads_all=True)
        ceiling = self._independent()
        one_accuracy = one.val.accuracy if one is not None and one.val is not None else None
        rows = []
        for run in self.runs:
            accuracy = run.val.accuracy if run.val is not None else None
            rows.append(
                {
                    "label": run.label,
                    "engine": run.config.engine,
                    "transport": run.transport,
                    "processes": run.config.num_ranks,
                    "threads_per_process": run.config.threads,
                    "samples_per_s": round(run.samples_per_s, 1),
                    "train_s": round(run.train_s, 3),
                    "speedup_vs_1_thread": _ratio(run, one),
                    "speedup_vs_all_cores": _ratio(run, every),
                    "share_of_independent": _ratio(run, ceiling),
                    "accuracy": accuracy,
                    "accuracy_delta_points": (
                        round(100 * (accuracy - one_accuracy), 2)
                        if accuracy is not None and one_accuracy is not None
                        else None
                    ),
                    "final_train_loss": run.curve.tail_loss(),
                    "cpu_total_percent": run.cpu_summary.get("mean_total_percent"),
                    "cpu_process_percent": run.cpu_summary.get("mean_process_percent"),
                    "peak_rss_mib": max(rank["peak_rss_mib"] for rank in run.ranks),
                }
            )
        return rows

    def to_dict(self, *, cpu_trace: bool = False) -> dict[str, Any]:
        return {
            "runs": [run.to_dict(cpu_trace=cpu_trace) for run in self.runs],
            "speedup": self.speedups(),
        }


def _ratio(run: DataParallelResult, baseline: DataParallelResult | None) -> float | None:
    if baseline is None or baseline.samples_per_s <= 0:
        return None
    return round(run.samples_per_s / baseline.samples_per_s, 3)


def run_comparison(
    model_factory: Callable[[], nn.Module],
    train_data: Dataset[Any],
    val_data: Dataset[Any] | None,
    configs: Sequence[DataParallelConfig],
    *,
    model_name: str | None = None,
    quiet: bool = False,
    on_run: Callable[[DataParallelResult], None] | None = None,
) -> Comparison:
    """Run each config on a fresh model from ``model_factory()`` (which seeds and builds)."""
    from parnn.data_parallel.runner import run_data_parallel

    runs = []
    for config in configs:
        result = run_data_parallel(
            model_factory(), train_data, val_data, config, model_name=model_name, quiet=quiet
        )
        if result is None:  # pragma: no cover - only under an external launcher
            raise ConfigError("--compare starts its own processes: run it without torchrun/mpirun")
        runs.append(result)
        if on_run is not None:
            on_run(result)
    return Comparison(runs)


def compare_data_parallel(
    base: DataParallelConfig,
    names: Sequence[str],
    *,
    out: Path,
    average_every: int | None = None,
    model: str = "lenet5",
    data: str = "digits",
    data_dir: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_samples: int | None = None,
    val_fraction: float = 0.2,
    overwrite: bool = False,
    quiet: bool = False,
    on_run: Callable[[DataParallelResult], None] | None = None,
) -> dict[str, Any]:
    """Run the engines ``names`` (see :func:`parse_compare_list`) on the same model and
    data, write compare.json and the loss, CPU and throughput plots to ``out``, and return
    the comparison's JSON object (``mode`` "compare", engines, speedup rows, runs, files)."""
    import copy

    from parnn.outdir import check_out_dir
    from parnn.results import machine_facts
    from parnn.train.setup import check_batch_size, setup_training

    configs = comparison_configs(base, names, average_every=average_every)
    setup = setup_training(
        model, data, data_dir=data_dir, input_shape=input_shape, seed=base.train.seed,
        val_fraction=val_fraction, num_samples=num_samples,
    )  # fmt: skip
    check_batch_size(base.train.batch_size, len(setup.train_data), copies=base.batch_copies)
    out = check_out_dir(out, overwrite=overwrite)
    initial = copy.deepcopy(setup.model)
    comparison = run_comparison(
        lambda: copy.deepcopy(initial), setup.train_data, setup.val_data, configs,
        model_name=setup.model_name, quiet=quiet, on_run=on_run,
    )  # fmt: skip
    payload: dict[str, Any] = {
        "mode": "compare",
        "engines": list(names),
        "model": setup.model_name,
        "data": setup.data_name,
        "input_shape": list(setup.input_shape),
        "parameters": setup.num_parameters,
        "speedup": comparison.speedups(),
        "machine": machine_facts(),
    }
    payload["files"] = write_comparison_files(comparison, payload, out)
    payload["runs"] = [run.to_dict() for run in comparison.runs]
    return payload


def write_comparison_files(
    comparison: Comparison, payload: dict[str, Any], out: Path
) -> dict[str, str]:
    """The loss, CPU and throughput plots and compare.json (``payload`` with every run and
    its CPU trace); returns their paths by name."""
    from parnn.bench.data_parallel_plots import plot_cpu, plot_loss, plot_throughput
    from parnn.results import write_json

    out.mkdir(parents=True, exist_ok=True)
    runs = comparison.runs
    files = {
        "loss_vs_time": str(plot_loss(runs, out / "loss_vs_time.png", x_axis="time")),
        "loss_vs_samples": str(plot_loss(runs, out / "loss_vs_samples.png", x_axis="samples")),
        "cpu": str(plot_cpu(runs, out / "cpu.png")),
        "throughput": str(plot_throughput(runs, out / "throughput.png")),
        "result": str(out / "compare.json"),
    }
    write_json(
        out / "compare.json", {**payload, "files": files, **comparison.to_dict(cpu_trace=True)}
    )
    return files
