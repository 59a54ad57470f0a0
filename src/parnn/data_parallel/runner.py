"""Run one engine: start the workers (spawned here, or in place under torchrun/mpirun),
watch them, merge their logs, evaluate the final model on the master.

Rank 0 is the master: it owns the data it hands out, the progress bar, the CPU monitor,
the final evaluation and the result. Under an external launcher (torchrun, mpirun) every
process calls :func:`run_data_parallel`; rank 0 gets the result, the others ``None``.
"""

from __future__ import annotations

import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from parnn.clock import startup_s
from parnn.data_parallel.averaging import local_sgd_worker
from parnn.data_parallel.config import COMMUNICATING_ENGINES, RANK_PRELOAD, DataParallelConfig
from parnn.data_parallel.ddp import ddp_worker, serial_worker
from parnn.data_parallel.hogwild import hogwild_worker
from parnn.data_parallel.job import OptimizerFactory, ScheduleFactory, StepBoard, TrainJob
from parnn.data_parallel.loop import WorkerOutput, load_numpy_state
from parnn.data_parallel.mpi import MpiRanks, launch_mpi, mpi_env
from parnn.data_parallel.mpi_rank import run_mpi_rank
from parnn.data_parallel.result import DataParallelResult, merge_logs
from parnn.data_parallel.shards import check_num_samples, total_steps
from parnn.data_parallel.transport import ResolvedTransport, resolve_transport, starts_mpiexec
from parnn.errors import ConfigError
from parnn.launch import LaunchConfig, launch, run_distributed, torchrun_env
from parnn.launch.forkserver import start_forkserver
from parnn.monitor import CpuMonitor, CpuTrace
from parnn.progress import progress_bar
from parnn.results import machine_facts
from parnn.train import dataset_tensors, evaluate, make_criterion

__all__ = ["run_data_parallel"]

_WORKERS: dict[str, Callable[..., WorkerOutput]] = {
    "serial": serial_worker,
    "ddp": ddp_worker,
    "local-sgd": local_sgd_worker,
    "hogwild": hogwild_worker,
}


def _check_picklable(name: str, value: object) -> None:
    if value is None:
        return
    try:
        pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
        raise ConfigError(
            f"{name} cannot be sent to the worker processes ({type(exc).__name__}: {exc}): "
            "pass a top-level function, a functools.partial or a picklable object, not a "
            "lambda or a nested function"
        ) from None


@contextmanager
def _progress(board: StepBoard | None, total: int, label: str, quiet: bool) -> Iterator[None]:
    """A bar on the master fed by the workers' step counts (a poller thread)."""
    if board is None or quiet:
        yield
        return
    stop = threading.Event()
    with progress_bar(total, label, quiet=quiet) as bar:

        def poll() -> None:
            shown = 0
            while True:
                stopping = stop.wait(0.2)
                done = board.total()
                if done > shown:
                    bar.advance(done - shown)
                    shown = done
                if stopping:
                    return

        thread = threading.Thread(target=poll, name="parnn-dp-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)


def _launch_config(config: DataParallelConfig, *, process_group: bool) -> LaunchConfig:
    return LaunchConfig(
        num_processes=config.num_ranks,
        threads_per_process=config.threads,
        pin=config.pin,
        cores=config.cores,
        init_process_group=process_group,
        failure_timeout_s=config.failure_timeout_s,
    )


def _run_workers(
    job: TrainJob, transport: ResolvedTransport, mpi_ranks: MpiRanks | None
) -> WorkerOutput | None:
    """Start the engine's workers (or hand the job to ``mpi_ranks``, started already);
    rank 0's output (None on the other ranks of an external launcher)."""
    config = job.config
    engine = config.engine
    if starts_mpiexec(transport):
        if mpi_ranks is not None:
            return mpi_ranks.run(job)
        return launch_mpi(job, failure_timeout_s=config.failure_timeout_s)
    if transport.name == "mpi":
        env = mpi_env()
        assert env is not None  # an external mpirun started this process (starts_mpiexec)
        return run_mpi_rank(job, env)
    worker = _WORKERS[engine]
    launch_config = _launch_config(config, process_group=engine != "serial")
    if torchrun_env() is not None and engine in ("ddp", "local-sgd"):
        output = run_distributed(worker, launch_config, job)[0]
        return output if output.state is not None else None
    # Ranks fork from a server that has imported the engines once (no-op when running).
    start_forkserver([__name__, *RANK_PRELOAD.get(engine, ())], threads=config.threads)
    return launch(worker, launch_config, job)[0]


def _check_launcher(config: DataParallelConfig) -> None:
    engine = config.engine
    env = mpi_env()
    if env is not None and env.size > 1:
        if engine not in COMMUNICATING_ENGINES:
            raise ConfigError(
                f"started by mpirun with {env.size} ranks but --engine {engine}, which starts "
                "its own processes: start it without mpirun (mpirun suits ddp, local-sgd, mpi)"
            )
        if config.transport == "gloo":
            raise ConfigError(
                f"started by mpirun with {env.size} ranks but --transport gloo: use "
                "--transport mpi (or auto) under mpirun, or start gloo runs without mpirun"
            )
    if torchrun_env() is not None and engine in ("serial", "hogwild"):
        raise ConfigError(
            f"--engine {engine} runs on one machine and starts its own processes: start it "
            "without torchrun (torchrun suits ddp and local-sgd)"
        )


def run_data_parallel(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any] | None,
    config: DataParallelConfig,
    *,
    criterion: nn.Module | None = None,
    optimizer_factory: Callable[..., Any] | None = None,
    scheduler_factory: Callable[..., Any] | None = None,
    model_name: str | None = None,
    data_name: str | None = None,
    quiet: bool = False,
    mpi_ranks: MpiRanks | None = None,
) -> DataParallelResult | None:
    """Train ``model`` on ``train_data`` with ``config.engine``; the trained parameters are
    loaded back into ``model`` and it is evaluated on ``val_data``.

    ``optimizer_factory(params)`` and ``scheduler_factory(optimizer)`` default to the
    optimizer and LR schedule ``config`` names; they, the model and the criterion must
    pickle (workers are spawned). The training tensors are moved to shared memory.
    ``mpi_ranks``: the ranks of a run over MPI, started ahead of the job
    (:func:`~parnn.data_parallel.api.train_data_parallel` starts them before it loads the
    data); launched here when None.
    """
    wall_start = time.perf_counter()
    _check_launcher(config)
    transport = resolve_transport(config)
    inputs, targets = dataset_tensors(train_data)
    num_samples = int(targets.shape[0])
    check_num_samples(num_samples, config)
    steps = total_steps(num_samples, config)
    _check_picklable("optimizer_factory", optimizer_factory)
    _check_picklable("scheduler_factory", scheduler_factory)
    _check_picklable("criterion", criterion)
    env = mpi_env()
    external = torchrun_env() is not None or (env is not None and env.size > 1)
    model.zero_grad(set_to_none=True)
    if config.engine == "hogwild":
        model.share_memory()  # the workers update these very tensors
    if not external:
        inputs.share_memory_()
        targets.share_memory_()
    with tempfile.TemporaryDirectory(prefix="parnn-dp-") as tmp:
        board = None if external else StepBoard.create(Path(tmp) / "steps", config.num_ranks)
        job = TrainJob(
            config=config,
            model=model,
            inputs=inputs,
            targets=targets,
            criterion=criterion if criterion is not None else make_criterion(),
            optimizer_factory=optimizer_factory or OptimizerFactory(config.train.optimizer),
            scheduler_factory=scheduler_factory
            or ScheduleFactory(config.train.lr_schedule, steps, config.train.warmup_steps),
            board=board,
        )
        monitor = CpuMonitor(config.monitor_interval_s)
        label = f"{config.engine} x{config.num_ranks}"
        with monitor, _progress(board, steps * config.num_ranks, label, quiet):
            output = _run_workers(job, transport, mpi_ranks)
    if output is None:
        return None
    if output.state is not None:
        load_numpy_state(model, output.state)
    val = evaluate(model, val_data, batch_size=config.train.eval_batch_size) if val_data else None
    return _result(
        config, model, output, monitor.trace, val, transport,
        model_name=model_name or type(model).__name__,
        data_name=data_name or str(getattr(train_data, "name", type(train_data).__name__)),
        num_train=num_samples,
        num_val=len(val_data) if val_data is not None else 0,  # type: ignore[arg-type]
        wall_s=time.perf_counter() - wall_start,
    )  # fmt: skip


def _result(
    config: DataParallelConfig,
    model: nn.Module,
    output: WorkerOutput,
    trace: CpuTrace,
    val: Any,
    transport: ResolvedTransport,
    *,
    model_name: str,
    data_name: str,
    num_train: int,
    num_val: int,
    wall_s: float,
) -> DataParallelResult:
    logs = sorted(output.logs, key=lambda log: log.rank)
    curve, start, end = merge_logs(logs, synchronous=config.synchronous)
    ranks = [
        {
            "rank": log.rank,
            "pid": log.pid,
            "steps": len(log.step_end_s),
            "samples": sum(log.samples),
            "train_s": round(log.train_s, 4),
            "sync_s": round(log.sync_s, 4),
            "peak_rss_mib": round(log.peak_rss_mib, 1),
        }
        for log in logs
    ]
    steps = max(len(log.step_end_s) for log in logs)
    updates = sum(len(log.step_end_s) for log in logs) if config.engine == "hogwild" else steps
    return DataParallelResult(
        config=config,
        transport=transport.name,
        transport_note=transport.note,
        model=model_name,
        data=data_name,
        num_train=num_train,
        num_val=num_val,
        steps=steps,
        updates=updates,
        samples=sum(sum(log.samples) for log in logs),
        train_s=end - start,
        wall_s=wall_s,
        curve=curve,
        val=val,
        ranks=ranks,
        cpu=trace if trace.times_s else None,
        cpu_summary=trace.summary(start, end),
        machine=machine_facts(),
        startup_s=startup_s(start),
    )
