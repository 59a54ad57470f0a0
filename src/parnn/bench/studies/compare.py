"""Engines side by side on one model and data (``parnn dp --compare``): the same seed, the
same initial weights and the same data for every run, then a speedup table against (a) one
process with one thread and (b) one process using every core through intra-op threads.

A study on the one store (:class:`parnn.bench.cells.StudyStore`): each engine is a cell
(keyed by its ``--compare`` name), recorded as soon as its run finishes; re-running the
same command into the same ``--out`` skips the engines already run, and other settings
there are refused, naming the differences. The report, the plots and the speedup rows are
:mod:`parnn.bench.studies.compare_report`'s, rendered from the store alone
(``parnn report DIR``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.bench.studies.compare_report import (
    KIND,
    PLOT_FILES,
    ComparedRun,
    Comparison,
    build_compare_report,
    comparison_of,
)
from parnn.data_parallel.config import ENGINES, TRANSPORTS, DataParallelConfig
from parnn.errors import ConfigError

if TYPE_CHECKING:  # the names (COMPARE_NAMES, the --help text) import no torch
    from torch import nn
    from torch.utils.data import Dataset

__all__ = [
    "BASELINES",
    "COMPARE_NAMES",
    "RESULT_FILE",
    "compare_data_parallel",
    "comparison_configs",
    "parse_compare_list",
    "run_comparison",
]

RESULT_FILE = "compare.json"

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


def run_comparison(
    model_factory: Callable[[], nn.Module],
    train_data: Dataset[Any],
    val_data: Dataset[Any] | None,
    configs: Sequence[DataParallelConfig],
    *,
    model_name: str | None = None,
    quiet: bool = False,
    on_run: Callable[[ComparedRun], None] | None = None,
) -> Comparison:
    """Run each config on a fresh model from ``model_factory()`` (which seeds and builds),
    one after the other, without a store (the benchmark's repeats)."""
    from parnn.data_parallel.runner import run_data_parallel

    runs = []
    for config in configs:
        result = run_data_parallel(
            model_factory(), train_data, val_data, config, model_name=model_name, quiet=quiet
        )
        if result is None:  # pragma: no cover - only under an external launcher
            raise ConfigError("--compare starts its own processes: run it without torchrun/mpirun")
        run = ComparedRun.of(result)
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return Comparison(runs)


def compare_data_parallel(
    base: DataParallelConfig,
    names: Sequence[str],
    *,
    out: str | Path,
    average_every: int | None = None,
    model: str = "lenet5",
    data: str = "digits",
    data_dir: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_samples: int | None = None,
    val_fraction: float = 0.2,
    overwrite: bool = False,
    quiet: bool = False,
    on_run: Callable[[ComparedRun], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the comparison of the engines ``names`` (see
    :func:`parse_compare_list`) on the same model and data in the study directory ``out``;
    render its report and plots, write compare.json, and return the comparison's JSON
    object (``mode`` "compare", engines, speedup rows, runs, files).

    ``on_run`` hears of each engine as its run finishes (not of those run before);
    ``overwrite`` discards an earlier comparison in ``out``."""
    import copy

    from parnn.bench.cells import STUDY_FILE, Cell, StudyStore
    from parnn.bench.report import render_study
    from parnn.outdir import Resumes, check_out_dir
    from parnn.results import machine_facts, write_json
    from parnn.train.setup import check_batch_size, setup_training

    configs = dict(zip(names, comparison_configs(base, names, average_every=average_every),
                       strict=True))  # fmt: skip
    setup = setup_training(
        model, data, data_dir=data_dir, input_shape=input_shape, seed=base.train.seed,
        val_fraction=val_fraction, num_samples=num_samples,
    )  # fmt: skip
    check_batch_size(base.train.batch_size, len(setup.train_data), copies=base.batch_copies)
    resumes = Resumes.RERUN if (Path(out) / STUDY_FILE).exists() else Resumes.NEVER
    directory = check_out_dir(out, resumes=resumes, overwrite=overwrite)
    store = StudyStore(directory)
    if overwrite:
        store.clear()
    store.open(
        KIND,
        {
            "engines": list(names),
            "average_every": average_every,
            "config": base.to_dict(),
            "model": model,
            "data": data,
            "data_dir": None if data_dir is None else str(data_dir),
            "input_shape": None if input_shape is None else list(input_shape),
            "num_samples": num_samples,
            "val_fraction": val_fraction,
            "facts": {
                "model": setup.model_name,
                "data": setup.data_name,
                "input_shape": list(setup.input_shape),
                "parameters": setup.num_parameters,
            },
        },
    )
    initial = copy.deepcopy(setup.model)

    def measure(cell: Cell) -> dict[str, Any]:
        (run,) = run_comparison(
            lambda: copy.deepcopy(initial), setup.train_data, setup.val_data,
            [configs[cell.key["engine"]]], model_name=setup.model_name, quiet=quiet,
            on_run=on_run,
        ).runs  # fmt: skip
        return run.to_record()

    # quiet: the engines draw their own progress bars, and rich shows one at a time
    store.run([Cell({"engine": name}) for name in names], measure, quiet=True)
    markdown, page = render_study(directory, build_compare_report)  # draws the plots too
    comparison = comparison_of(names, store.records())
    files = {name: str(directory / file) for name, file in PLOT_FILES.items()}
    files.update(result=str(directory / RESULT_FILE), report=str(markdown), page=str(page))
    payload: dict[str, Any] = {
        "mode": "compare",
        "engines": list(names),
        "model": setup.model_name,
        "data": setup.data_name,
        "input_shape": list(setup.input_shape),
        "parameters": setup.num_parameters,
        "speedup": comparison.speedups(),
        "machine": machine_facts(),
        "files": files,
    }
    write_json(directory / RESULT_FILE, {**payload, **comparison.to_dict(cpu_trace=True)})
    payload["runs"] = [run.to_dict() for run in comparison.runs]
    return payload
