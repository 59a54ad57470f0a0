"""The seed project's Python API, on parnn's engines::

    trainer = DistributedTrainer(num_processes=2, criterion=nn.CrossEntropyLoss(),
                                 root_dir="runs/mnist", batch_size=64)
    result = trainer(model, train_dataset, optimizer_factory, scheduler_factory, epochs=2)

    tester = DistributedTester(test_dataset, root_dir="runs/mnist", num_processes=2)
    evaluation = tester(model)

``optimizer_factory(params) -> Optimizer`` and ``scheduler_factory(optimizer) -> scheduler``
must be top-level functions (or ``functools.partial`` of them): the workers are spawned.

:func:`train_data_parallel` is what ``parnn dp --engine`` runs: it loads a named model and
dataset, trains, writes the run's files and returns its JSON object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parnn.data_parallel.config import DataParallelConfig
from parnn.errors import ConfigError
from parnn.results import write_json

if TYPE_CHECKING:  # torch is imported when a run starts: train_data_parallel starts its
    # MPI ranks first, so that they import torch while this process does
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from parnn.data_parallel.result import DataParallelResult
    from parnn.train import EvalResult, OptimizerConfig

__all__ = ["DistributedTester", "DistributedTrainer", "train_data_parallel", "write_run_files"]


def train_data_parallel(
    config: DataParallelConfig,
    *,
    model: str = "lenet5",
    data: str = "digits",
    data_dir: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_samples: int | None = None,
    val_fraction: float = 0.2,
    out: Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    plot: Callable[[DataParallelResult, Path], Mapping[str, str]] | None = None,
) -> dict[str, Any] | None:
    """Train the zoo (or user) ``model`` on the dataset ``data`` as ``config`` says; write
    result.json and model.pt to ``out`` (when given), and the figures ``plot(result, out)``
    draws there (the CLI passes :func:`parnn.bench.data_parallel_plots.plot_run`); return the
    run's JSON object (``mode`` "run", ``input_shape``, ``parameters``, ``files`` and the
    keys of :meth:`DataParallelResult.to_dict`). None on a rank other than 0 under
    torchrun/mpirun: rank 0 reports."""
    from parnn.data_parallel.mpi import MpiRanks
    from parnn.data_parallel.transport import resolve_transport, starts_mpiexec
    from parnn.outdir import check_out_dir

    transport = resolve_transport(config)  # MPI asked for but unusable: say so first
    if out is not None:
        check_out_dir(out, overwrite=overwrite)
    # Over MPI, mpiexec starts fresh interpreters: start them now, before this process
    # imports torch and loads the data, so that both happen at once (stopped on any error).
    mpi_ranks = MpiRanks.start(config) if starts_mpiexec(transport) else None
    with mpi_ranks if mpi_ranks is not None else contextlib.nullcontext():
        from parnn.data_parallel.runner import run_data_parallel
        from parnn.train.setup import check_batch_size, setup_training

        setup = setup_training(
            model, data, data_dir=data_dir, input_shape=input_shape, seed=config.train.seed,
            val_fraction=val_fraction, num_samples=num_samples,
        )  # fmt: skip
        check_batch_size(config.train.batch_size, len(setup.train_data), copies=config.batch_copies)
        result = run_data_parallel(
            setup.model, setup.train_data, setup.val_data, config,
            model_name=setup.model_name, data_name=setup.data_name, quiet=quiet,
            mpi_ranks=mpi_ranks,
        )  # fmt: skip
    if result is None:
        return None
    files = {}
    if out is not None:
        files = write_run_files(result, setup.model, out)
        if plot is not None:
            files |= plot(result, out)
    return {
        "mode": "run",
        "input_shape": list(setup.input_shape),
        "parameters": setup.num_parameters,
        "files": files,
        **result.to_dict(),
    }


def write_run_files(result: DataParallelResult, model: nn.Module, out: Path) -> dict[str, str]:
    """result.json (with the CPU trace) and model.pt; returns their paths by name."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "result": str(write_json(out / "result.json", result.to_dict(cpu_trace=True))),
        "model": str(out / "model.pt"),
    }
    torch.save(model.state_dict(), out / "model.pt")
    return files


class DistributedTrainer:
    """Train a model data-parallel on ``num_processes`` pinned processes.

    ``batch_size`` is the batch of one optimizer step, split over the ranks (ddp,
    local-sgd, mpi) or taken by each Hogwild worker per update; ``per_process_batch=True``
    makes it each rank's batch. ``transport`` (ddp, local-sgd): ``auto``, ``gloo`` or ``mpi``
    (see :class:`~parnn.data_parallel.DataParallelConfig`). Results (``result.json``, ``model.pt``) go to ``root_dir``.
    """

    def __init__(
        self,
        num_processes: int = 2,
        criterion: nn.Module | None = None,
        root_dir: str | Path | None = None,
        batch_size: int = 64,
        *,
        engine: str = "ddp",
        transport: str = "auto",
        threads_per_process: int = 1,
        per_process_batch: bool = False,
        accumulate_steps: int = 1,
        average_every: int | None = None,
        seed: int = 0,
        quiet: bool = True,
    ) -> None:
        self.criterion = criterion
        self.root_dir = Path(root_dir) if root_dir is not None else None
        self.quiet = quiet
        self.settings: dict[str, Any] = {
            "engine": engine,
            "transport": transport,
            "num_ranks": 1 if engine == "serial" else num_processes,
            "threads": threads_per_process,
            "batch_size": batch_size,
            "per_process_batch": per_process_batch,
            "accumulate_steps": accumulate_steps,
            "average_every": average_every,
            "seed": seed,
        }
        DataParallelConfig.of(**self.settings)  # bad settings fail here, not in __call__

    def __call__(
        self,
        model: nn.Module,
        train_dataset: Dataset[Any],
        optimizer_factory: Callable[..., torch.optim.Optimizer] | OptimizerConfig | None = None,
        scheduler_factory: Callable[[torch.optim.Optimizer], Any] | None = None,
        *,
        epochs: int = 1,
        steps: int | None = None,
        val_dataset: Dataset[Any] | None = None,
    ) -> DataParallelResult:
        """Train ``model`` in place; returns the run's result (loss curve, throughput...)."""
        import torch

        from parnn.data_parallel.runner import run_data_parallel
        from parnn.train import OptimizerConfig

        optimizer: OptimizerConfig | None = None
        factory: Callable[..., torch.optim.Optimizer] | None = None
        if isinstance(optimizer_factory, OptimizerConfig):
            optimizer = optimizer_factory
        else:
            factory = optimizer_factory
        config = DataParallelConfig.of(
            **self.settings, epochs=epochs, steps=steps, optimizer=optimizer
        )
        result = run_data_parallel(
            model,
            train_dataset,
            val_dataset,
            config,
            criterion=self.criterion,
            optimizer_factory=factory,
            scheduler_factory=scheduler_factory,
            quiet=self.quiet,
        )
        if result is None:
            raise ConfigError(
                "DistributedTrainer starts its own processes: call run_data_parallel under "
                "torchrun/mpirun instead"
            )
        if self.root_dir is not None:
            write_json(self.root_dir / "result.json", result.to_dict(cpu_trace=True))
            torch.save(model.state_dict(), self.root_dir / "model.pt")
        return result


def _evaluate_shard(
    rank: int, world_size: int, model: nn.Module, dataset: Dataset[Any], batch_size: int
) -> tuple[EvalResult, list[int]]:
    import torch

    from parnn.train import dataset_tensors, evaluate

    inputs, targets = dataset_tensors(dataset)
    index = torch.tensor_split(torch.arange(targets.shape[0]), world_size)[rank]
    shard: Dataset[Any] = torch.utils.data.TensorDataset(inputs[index], targets[index])
    result = evaluate(model, shard, batch_size=batch_size)
    num_classes = len(result.per_class_accuracy)
    return result, torch.bincount(targets[index], minlength=num_classes).tolist()


def _combine(parts: list[tuple[EvalResult, list[int]]]) -> EvalResult:
    from parnn.train import EvalResult

    total = sum(result.num_samples for result, _ in parts)
    num_classes = max(len(counts) for _, counts in parts)
    correct = [0.0] * num_classes
    counts = [0] * num_classes
    for result, shard_counts in parts:
        for label, (accuracy, count) in enumerate(
            zip(result.per_class_accuracy, shard_counts, strict=False)
        ):
            counts[label] += count
            correct[label] += round((accuracy or 0.0) * count)
    return EvalResult(
        loss=sum(result.loss * result.num_samples for result, _ in parts) / total,
        accuracy=sum(correct) / total,
        per_class_accuracy=tuple(
            correct[label] / counts[label] if counts[label] else None
            for label in range(num_classes)
        ),
        num_samples=total,
    )


class DistributedTester:
    """Evaluate a model on ``dataset`` split over ``num_processes`` pinned processes; the
    shards' sums are combined into one :class:`~parnn.train.EvalResult` (``eval.json`` in
    ``root_dir``)."""

    def __init__(
        self,
        dataset: Dataset[Any],
        root_dir: str | Path | None = None,
        *,
        num_processes: int = 2,
        batch_size: int = 256,
    ) -> None:
        if num_processes < 1 or batch_size < 1:
            raise ConfigError(
                f"num_processes {num_processes} and batch_size {batch_size} must be >= 1"
            )
        if len(dataset) < num_processes:  # type: ignore[arg-type]
            raise ConfigError(
                f"{len(dataset)} samples cannot be split over {num_processes} processes: "  # type: ignore[arg-type]
                "use fewer processes"
            )
        self.dataset = dataset
        self.root_dir = Path(root_dir) if root_dir is not None else None
        self.num_processes = num_processes
        self.batch_size = batch_size

    def __call__(self, model: nn.Module) -> EvalResult:
        from parnn.launch import LaunchConfig, launch

        config = LaunchConfig(num_processes=self.num_processes, init_process_group=False)
        parts = launch(_evaluate_shard, config, model, self.dataset, self.batch_size)
        result = _combine(parts)
        if self.root_dir is not None:
            write_json(self.root_dir / "eval.json", result.to_dict())
        return result
