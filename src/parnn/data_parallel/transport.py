"""Which transport carries a run's collectives: gloo or MPI, and why.

``ddp`` and ``local-sgd`` run over either. gloo is torch.distributed's CPU backend; it
blocks its caller on a condition variable and hands every message between threads, which
on a small VM costs ~2 ms per all-reduce whatever the size. MPICH (under ``mpiexec``)
moves the bytes through shared memory and polls while it waits: ~0.1 ms for LeNet-5's
250 KB of gradients (``benchmarks/data_parallel/README.md``). ``auto`` takes MPI where it
can be used and says in one line why it did not otherwise; an explicit ``mpi`` that cannot
be used is an error naming the reason and the fix. This module imports no torch: a command
resolves the transport before it starts its ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from parnn.data_parallel import mpi
from parnn.data_parallel.config import COMMUNICATING_ENGINES, DataParallelConfig
from parnn.errors import ConfigError
from parnn.launch import torchrun_env

__all__ = [
    "ResolvedTransport",
    "mpi_unusable_reason",
    "resolve_transport",
    "starts_mpiexec",
]


@dataclass(frozen=True, slots=True)
class ResolvedTransport:
    """The transport a run uses: ``gloo``, ``mpi``, or None (serial, hogwild: no
    collectives); ``note`` says why auto did not pick MPI (empty otherwise)."""

    name: str | None
    note: str = ""


def mpi_unusable_reason() -> str | None:
    """Why MPI cannot carry this run's collectives (one line), or None when it can."""
    if torchrun_env() is not None:
        return "torchrun started this process, so its ranks are torch's, not MPI's"
    if not mpi.mpi_available():
        return f"MPI needs mpi4py, which is not installed ({mpi.INSTALL_HINT})"
    env = mpi.mpi_env()
    if env is not None and env.size > 1:
        return None  # an external mpirun started the ranks
    try:
        mpi.find_mpiexec()
    except ConfigError:
        return f"MPI needs a launcher (mpiexec), none was found ({mpi.INSTALL_HINT})"
    return None


def resolve_transport(config: DataParallelConfig) -> ResolvedTransport:
    """The transport ``config`` runs on here; raises :class:`ConfigError` when it names
    ``mpi`` (or the ``mpi`` engine) and MPI cannot be used."""
    if config.engine not in COMMUNICATING_ENGINES:
        return ResolvedTransport(None)
    if config.transport == "gloo":
        return ResolvedTransport("gloo")
    reason = mpi_unusable_reason()
    if reason is None:
        return ResolvedTransport("mpi")
    if config.transport == "auto" and config.engine != "mpi":
        return ResolvedTransport("gloo", f"auto chose gloo: {reason}")
    flag = "--engine mpi" if config.engine == "mpi" else "--transport mpi"
    fix = (
        "use --engine local-sgd --transport gloo"
        if config.engine == "mpi"
        else "use --transport gloo, or --transport auto to fall back"
    )
    raise ConfigError(f"{flag} cannot be used: {reason}; {fix}")


def starts_mpiexec(transport: ResolvedTransport) -> bool:
    """Whether parnn starts the run's MPI ranks itself (``mpiexec``), rather than run as
    one of the ranks an external ``mpirun`` started."""
    if transport.name != "mpi":
        return False
    env = mpi.mpi_env()
    return env is None or env.size <= 1
