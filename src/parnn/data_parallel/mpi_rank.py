"""One rank under MPI (mpi4py): ``--transport mpi`` of ddp and local-sgd, and the ``mpi``
engine (local SGD over MPI). ``python -m parnn.data_parallel.mpi_rank DIR [MODULE...]`` is
one rank that parnn started with ``mpiexec`` (:class:`parnn.data_parallel.mpi.MpiRanks`);
:func:`run_mpi_rank` is one rank of a job that an external ``mpirun`` started.

local SGD: the flat parameter buffer goes through a buffer-based ``Allreduce`` on a numpy
view of the tensor (no copy, no pickling). ddp: a gloo process group is set up beside MPI
(rank 0 hosts its store on loopback, or on ``MASTER_ADDR`` across machines, and tells the
others the port over MPI) for DDP's set-up broadcast; the gradients go over MPI through a
DDP communication hook (:func:`parnn.data_parallel.ddp.mpi_allreduce_hook`). Only the
small step logs are gathered as objects.

A rank that parnn started comes up before its job exists: it imports torch, the engine
and the ``MODULE``s it is given (what the engine imports late, e.g. ``torch._dynamo``
for DDP), starts MPI, then waits for ``DIR/job.pt``, which the command writes once it
has loaded the data.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from parnn.data_parallel.averaging import train_replica
from parnn.data_parallel.ddp import train_ddp
from parnn.data_parallel.job import TrainJob
from parnn.data_parallel.loop import WorkerOutput, numpy_state
from parnn.data_parallel.mpi import (
    MpiEnv,
    import_parent_main,
    mpi_env,
    record_rank_error,
    require_mpi,
    supervise_rank,
    wait_for_job,
    write_rank_output,
)
from parnn.errors import ConfigError, show_warning_line
from parnn.launch import pin_current_process, plan_cores, usable_cores
from parnn.launch.environment import is_loopback, loopback_interface
from parnn.launch.supervisor import listening_store

__all__ = ["MpiTransport", "main", "run_mpi_rank"]


class MpiTransport:
    """Collectives over an mpi4py communicator on numpy views of float32 tensors."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.world_size: int = comm.Get_size()

    def allreduce_sum_(self, flat: torch.Tensor) -> None:
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)  # buffer, not pickle

    def broadcast_(self, flat: torch.Tensor, root: int) -> None:
        self.comm.Bcast(flat.numpy(), root=root)


def _pin(job: TrainJob, local_rank: int, local_size: int) -> None:
    config = job.config
    plan = plan_cores(local_size, config.threads, config.cores or usable_cores())
    pin_current_process(plan[local_rank] if config.pin else None, config.threads)


@contextlib.contextmanager
def _gloo_group(comm: Any, local_size: int, timeout_s: float) -> Any:
    """A gloo process group over the MPI ranks, for DDP's set-up broadcast and metadata:
    rank 0 hosts the store on a free port and broadcasts it over MPI."""
    rank, size = comm.Get_rank(), comm.Get_size()
    address = os.environ.get("MASTER_ADDR")
    if address is None:
        if local_size != size:
            raise ConfigError(
                f"ddp over MPI across machines ({size} ranks, {local_size} on this one) needs "
                "MASTER_ADDR: set it to rank 0's address for the gloo set-up group"
            )
        address = "127.0.0.1"
    timeout = datetime.timedelta(seconds=timeout_s)
    if "GLOO_SOCKET_IFNAME" not in os.environ and is_loopback(address):
        interface = loopback_interface()
        if interface is not None:  # gloo's pairs listen on loopback too
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    store = None
    if rank == 0:  # bound to ``address`` only, not every interface
        store = listening_store(address, 0, timeout_s=timeout_s, world_size=size)
    port = comm.bcast(store.port if store is not None else None, root=0)
    if store is None:
        store = dist.TCPStore(address, port, size, False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=size, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _train(job: TrainJob, comm: Any, local_rank: int, local_size: int) -> WorkerOutput | None:
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != job.config.num_ranks:
        raise ConfigError(
            f"--ranks {job.config.num_ranks} but mpirun started {size} ranks: "
            "make them equal or drop --ranks"
        )
    _pin(job, local_rank, local_size)
    if job.config.engine == "ddp":
        with _gloo_group(comm, local_size, job.config.failure_timeout_s):
            comm.Barrier()
            log, model = train_ddp(rank, size, job, mpi_comm=comm)
    else:
        comm.Barrier()
        log, model = train_replica(rank, job, MpiTransport(comm))
    logs = comm.gather(log, root=0)  # the step logs: small metadata, pickled
    if rank != 0:
        return None
    return WorkerOutput(logs=list(logs), state=numpy_state(model))


def _abort(comm: Any, rank: int, exc: BaseException) -> None:
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    sys.stderr.write(f"parnn: error: rank {rank} failed: {detail}\n")
    sys.stderr.flush()
    comm.Abort(1)  # ends every rank: the others may be waiting in an Allreduce


def run_mpi_rank(job: TrainJob, env: MpiEnv) -> WorkerOutput | None:
    """Train in this MPI process (started by an external mpirun); rank 0 returns every
    rank's logs and the final parameters, the other ranks None. A failure on any rank
    prints it and aborts the whole job."""
    require_mpi()
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        return _train(job, comm, env.local_rank, env.local_size)
    except BaseException as exc:
        _abort(comm, comm.Get_rank(), exc)
        raise


def main(argv: Sequence[str]) -> int:
    """Each rank started by :class:`~parnn.data_parallel.mpi.MpiRanks`: ``argv`` is the
    job's directory and the modules to import while the job is on its way."""
    warnings.showwarning = show_warning_line  # one line, as in the CLI
    directory, preload = Path(argv[0]), argv[1:]
    env = mpi_env()
    if env is not None:
        supervise_rank(directory, env.rank)  # returns in the child, which runs the rank
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    try:
        import_parent_main()
        for module in preload:
            importlib.import_module(module)
        job: TrainJob = torch.load(wait_for_job(directory), weights_only=False)
        local_rank, local_size = (env.local_rank, env.local_size) if env else (rank, 1)
        output = _train(job, comm, local_rank, local_size)
        if output is not None:
            write_rank_output(directory, output)
    except BaseException as exc:
        record_rank_error(directory, rank, exc)
        _abort(comm, rank, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
