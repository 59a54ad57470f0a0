"""MPI for the data-parallel engines: whether it can be used, where this process sits in
an MPI job, and parnn starting its own ``mpiexec`` (the ranks themselves are
:mod:`parnn.data_parallel.mpi_rank`).

Two ways to run over MPI:

- ``mpirun -n 4 parnn dp --engine ddp --transport mpi ...``: every MPI process runs the
  command; rank 0 evaluates, prints and writes the results
  (:func:`parnn.data_parallel.mpi_rank.run_mpi_rank`).
- ``parnn dp --engine ddp --transport mpi --ranks 4``: parnn starts ``mpiexec -n 4``
  (:class:`MpiRanks`), found next to the Python interpreter or on ``PATH``, hands the job
  over and reads the result back through a temporary directory. ``parnn dp`` starts it
  before it loads the data, so that the fresh interpreters import torch and the engine
  while the command does its own work::

      before   command: import torch, load data │ mpiexec: ranks import torch + engine │ step
      after    command: import torch, load data │ ranks load the job │ step
               ranks:   import torch + engine, start MPI, wait for the job

mpi4py is an optional extra: ``pip install 'parnn[mpi]' mpich`` (MPICH from PyPI) or
Debian's ``apt-get install openmpi-bin libopenmpi-dev`` then ``pip install 'parnn[mpi]'``.
This module imports neither torch nor mpi4py (which would initialise MPI): a command
starts its ranks before it imports torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil

from parnn.data_parallel.config import RANK_PRELOAD, DataParallelConfig
from parnn.errors import ConfigError, RankFailedError
from parnn.launch.environment import loopback_interface
from parnn.results import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # torch: imported by the time a job is handed over, not before
    from parnn.data_parallel.job import TrainJob
    from parnn.data_parallel.loop import WorkerOutput

__all__ = [
    "INSTALL_HINT",
    "MpiEnv",
    "MpiRanks",
    "find_mpiexec",
    "import_parent_main",
    "launch_mpi",
    "loopback_environ",
    "mpi_available",
    "mpi_env",
    "record_rank_error",
    "remove_stale_mpi_files",
    "require_mpi",
    "supervise_rank",
    "wait_for_job",
    "write_rank_output",
]

INSTALL_HINT = (
    "install the MPI extra: pip install 'parnn[mpi]' mpich (MPICH from PyPI), or "
    "apt-get install openmpi-bin libopenmpi-dev and then pip install 'parnn[mpi]'"
)
_JOB_FILE = "job.pt"
_JOB_POLL_S = 0.01  # how often a waiting rank looks for its job
_OUTPUT_FILE = "output.pkl"
_LOG_FILE = "mpiexec.log"
_TMP_PREFIX = "parnn-mpi-"
_FAILURE_GRACE_S = 3.0  # after a failure: seconds mpiexec gets to end the job itself
_SHM_DIR = Path("/dev/shm")
_SHM_PATTERN = "mpich_shm_*"


def mpi_available() -> bool:
    """Whether mpi4py can be imported (without importing it)."""
    return importlib.util.find_spec("mpi4py") is not None


def require_mpi() -> None:
    if not mpi_available():
        raise ConfigError(
            f"--engine mpi and --transport mpi need mpi4py, which is not installed: {INSTALL_HINT}"
        )


MPIEXEC_ENV = "PARNN_MPIEXEC"
"""The launcher parnn starts its MPI ranks with, when set (a path or a name on PATH)."""


def find_mpiexec() -> str:
    """The launcher for the ranks parnn starts on this machine: ``$PARNN_MPIEXEC`` when
    set; else MPICH's ``mpiexec.gforker`` beside this Python (a venv with PyPI's mpich),
    which forks the ranks and opens no port (Hydra's ``mpiexec`` listens on a control port
    on every interface, and no option binds it to loopback); else ``mpiexec`` or
    ``mpirun`` beside this Python or on PATH (see docs/failure-model.md)."""
    chosen = os.environ.get(MPIEXEC_ENV, "").strip()
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise ConfigError(
                f"{MPIEXEC_ENV}={chosen} is not an executable launcher: unset it or name one "
                "(e.g. mpiexec)"
            )
        return found
    beside = Path(sys.executable).parent
    for name in ("mpiexec.gforker", "mpiexec", "mpirun"):
        candidate = beside / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        f"--engine mpi and --transport mpi need an MPI launcher (mpiexec), none found: "
        f"{INSTALL_HINT}"
    )


class MpiEnv:
    """Where this process sits in a job started by mpirun/mpiexec (from its variables)."""

    __slots__ = ("local_rank", "local_size", "rank", "size")

    def __init__(self, rank: int, size: int, local_rank: int, local_size: int) -> None:
        self.rank = rank
        self.size = size
        self.local_rank = local_rank
        self.local_size = local_size


def mpi_env(environ: Mapping[str, str] | None = None) -> MpiEnv | None:
    """The MPI launcher's rank variables (MPICH/Hydra: PMI_*, MPI_LOCAL*; Open MPI:
    OMPI_COMM_WORLD_*), or None when this process was not started by an MPI launcher."""
    env = os.environ if environ is None else environ
    for prefix_rank, prefix_size, local_rank, local_size in (
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
         "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    ):  # fmt: skip
        if prefix_rank in env and prefix_size in env:
            try:
                rank, size = int(env[prefix_rank]), int(env[prefix_size])
                return MpiEnv(
                    rank, size, int(env.get(local_rank, rank)), int(env.get(local_size, size))
                )
            except ValueError:
                return None
    return None


# ── parnn starts mpiexec itself ──────────────────────────────────────────────────────────


def _die_with_parent(how: int = signal.SIGTERM) -> None:  # the mpiexec child, a rank
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(1, how, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _stop_tree(process: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.Error:
        tree = []
    for member in tree:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _stop_group(pgid: int, grace_s: float = 2.0) -> None:
    """Stop whatever of the job's process group outlived its launcher (a launcher that
    exits on a rank's abort may leave the other ranks, their supervisors and watchers
    behind, reparented to init): SIGTERM, then SIGKILL after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    how = signal.SIGTERM
    while True:
        try:
            os.killpg(pgid, how)
        except (ProcessLookupError, PermissionError):
            return
        if how == signal.SIGKILL:
            return
        time.sleep(0.02)
        if not _group_alive(pgid):
            return
        if time.monotonic() > deadline:
            how = signal.SIGKILL


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of this user is in process group ``pgid``."""
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
    return False


def loopback_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the variables that keep the MPI transports of a one-machine run on
    the loopback interface (UCX, libfabric, Open MPI), where the user has not set them."""
    interface = loopback_interface() or "lo"
    defaults = {
        "UCX_NET_DEVICES": interface,
        "FI_TCP_IFACE": interface,
        "FI_SOCKETS_IFACE": interface,
        "OMPI_MCA_btl_tcp_if_include": interface,
        "OMPI_MCA_oob_tcp_if_include": interface,
    }
    return {**defaults, **environ}


def _failed(directory: Path) -> bool:
    """Whether a rank has reported an error or its supervisor a failed exit."""
    if any(directory.glob("error-rank*.json")):
        return True
    for path in directory.glob("exit-rank*.json"):
        with contextlib.suppress(OSError, ValueError):
            if int(json.loads(path.read_text(encoding="utf-8")).get("code", 0)) != 0:
                return True
    return False


def _read_failures(directory: Path) -> list[dict[str, Any]]:
    failures = []
    for path in directory.glob("error-rank*.json"):
        with contextlib.suppress(OSError, ValueError):
            failures.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(failures, key=lambda failure: float(failure.get("time", 0.0)))


def _first_silent_exit(
    directory: Path, *, raised: frozenset[int] = frozenset()
) -> RankFailedError | None:
    """The rank whose process ended first with a failure but without a word (``os._exit``,
    a signal), from the records that each rank's supervisor writes (:func:`supervise_rank`);
    ``raised``: the ranks that recorded an error (their exit is not silent)."""
    records = []
    for path in directory.glob("exit-rank*.json"):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(path.read_text(encoding="utf-8")))
    failed = sorted(
        (
            record
            for record in records
            if int(record.get("code", 0)) != 0 and int(record.get("rank", -1)) not in raised
        ),
        key=lambda record: float(record.get("time", 0.0)),
    )
    if not failed:
        return None
    code = int(failed[0]["code"])
    if "supervisor" in failed[0]:
        return RankFailedError(
            int(failed[0]["rank"]),
            f"its supervisor process (pid {failed[0]['supervisor']}) died (killed?); the rank "
            "was stopped with it",
        )
    if code > 0:
        how = f"exit code {code}"
    else:
        how = (
            f"killed by {signal.Signals(-code).name}"
            if -code in signal.valid_signals()
            else f"killed by signal {-code}"
        )
    return RankFailedError(
        int(failed[0]["rank"]),
        f"process exited without raising ({how}: os._exit, a signal or a crash in native code)",
    )


def _launcher_failure(log_text: str, returncode: int) -> RankFailedError:
    # Hydra (MPICH) may name the rank that died: "RANK 1 PID 123 RUNNING AT vm EXIT CODE: 17"
    match = re.search(r"RANK\s+(\d+)\s+PID\s+\d+.*?EXIT CODE:\s*(-?\d+)", log_text, re.S)
    if match:
        return RankFailedError(
            int(match.group(1)),
            f"process exited with code {match.group(2)} without raising (reported by mpiexec)",
        )
    tail = " ".join(log_text.strip().splitlines()[-3:])[-300:]
    return RankFailedError(None, f"mpiexec exited with code {returncode}: {tail or 'no output'}")


def _mapped_or_open(prefix: str) -> set[str]:
    """Paths starting with ``prefix`` that some process maps or holds open (from /proc)."""
    used: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "maps").read_text(errors="replace").splitlines():
                if prefix in line:
                    used.add(line[line.index(prefix) :].removesuffix(" (deleted)"))
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(prefix):
                        used.add(target.removesuffix(" (deleted)"))
    return used


def _remove_unused(paths: set[Path], *, min_age_s: float = 0.0) -> None:
    """Delete the MPICH shared-memory files among ``paths`` that are ours (same user), at
    least ``min_age_s`` old, and that no process maps or holds open."""
    if not paths:
        return
    used = _mapped_or_open(str(_SHM_DIR / "mpich_shm_"))
    now = time.time()
    for path in paths:
        with contextlib.suppress(OSError):
            info = path.stat()
            if str(path) in used or info.st_uid != os.getuid() or now - info.st_mtime < min_age_s:
                continue
            path.unlink()


def remove_stale_mpi_files(*, min_age_s: float = 10.0) -> None:
    """What a killed ``mpi`` run left behind (SIGKILL cannot be caught): the temporary
    directories ``parnn-mpi-<pid>-*`` whose launcher pid is gone, and MPICH's
    ``/dev/shm/mpich_shm_*`` segments of this user that no process maps or holds open and
    that are older than ``min_age_s``. Called when an ``mpi`` run starts."""
    for path in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*"):
        pid = path.name.removeprefix(_TMP_PREFIX).partition("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    _remove_unused(set(_SHM_DIR.glob(_SHM_PATTERN)), min_age_s=min_age_s)


def launch_mpi(job: TrainJob, *, failure_timeout_s: float = 30.0) -> WorkerOutput:
    """Run ``job`` under ``mpiexec -n N`` started here; returns rank 0's output or raises
    :class:`RankFailedError` naming the failed rank (the others are stopped)."""
    ranks = MpiRanks(
        job.config.num_ranks,
        preload=RANK_PRELOAD.get(job.config.engine, ()),
        failure_timeout_s=failure_timeout_s,
    )
    return ranks.run(job)


_MAIN_ENV = "PARNN_MPI_MAIN"


def _rank_environ() -> dict[str, str]:
    """The ranks' environment: loopback only, this process's ``sys.path`` (so that a test
    module or a script's folder imports there too), and the path of a ``__main__``
    script, so that what it defines (an optimizer factory, a model class) unpickles in the
    ranks, as multiprocessing's spawn does."""
    environ = loopback_environ(os.environ)
    paths = [path for path in sys.path if path and Path(path).is_dir()]
    environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file and main_file.endswith(".py") and getattr(main, "__spec__", None) is None:
        environ[_MAIN_ENV] = str(Path(main_file).resolve())
    else:
        environ.pop(_MAIN_ENV, None)
    return environ


class MpiRanks:
    """``mpiexec -n num_ranks`` started now, ahead of its job: the ranks import torch, the
    engine and ``preload`` and start MPI while this process prepares the job; :meth:`run`
    hands it over and waits for the result.

    The job travels in a temporary directory ``parnn-mpi-<pid>-*``. It is removed, with
    the MPICH shared-memory segments the run created, on every exit Python sees (an error,
    Ctrl-C, SIGTERM), and ranks that never got their job are stopped: use it as a context
    manager, or :meth:`run` it. What a SIGKILL left is removed by the next run
    (:func:`remove_stale_mpi_files`). Use it for one job."""

    def __init__(
        self, num_ranks: int, *, preload: Sequence[str] = (), failure_timeout_s: float = 30.0
    ) -> None:
        require_mpi()
        mpiexec = find_mpiexec()
        remove_stale_mpi_files()
        self.num_ranks = num_ranks
        self.failure_timeout_s = failure_timeout_s
        self._shm_before = set(_SHM_DIR.glob(_SHM_PATTERN))
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
        self.directory = Path(self._tmp.name)
        self._closed = False
        command: Sequence[str] = [
            mpiexec, "-n", str(num_ranks),
            sys.executable, "-m", "parnn.data_parallel.mpi_rank", str(self.directory), *preload,
        ]  # fmt: skip
        try:
            with open(self.directory / _LOG_FILE, "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                    env=_rank_environ(),
                    start_new_session=True,  # the job's own process group: see _stop_group
                )
        except BaseException:
            self.close()
            raise

    @classmethod
    def start(cls, config: DataParallelConfig) -> MpiRanks:
        """The ranks of a run of ``config`` (which must go over MPI, launched here)."""
        return cls(
            config.num_ranks,
            preload=RANK_PRELOAD.get(config.engine, ()),
            failure_timeout_s=config.failure_timeout_s,
        )

    def __enter__(self) -> MpiRanks:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, job: TrainJob) -> WorkerOutput:
        """Hand ``job`` to the ranks and wait for them; returns rank 0's output or raises
        :class:`RankFailedError` naming the failed rank (the others are stopped)."""
        import torch

        if self._closed:
            raise RuntimeError("these MPI ranks have ended: start new ones for a new job")
        if job.config.num_ranks != self.num_ranks:
            raise ConfigError(
                f"the job needs {job.config.num_ranks} ranks but mpiexec was started with "
                f"{self.num_ranks}"
            )
        try:
            staged = self.directory / f".{_JOB_FILE}.tmp"
            torch.save(job, staged)
            os.replace(staged, self.directory / _JOB_FILE)  # a rank never reads half a job
            self._watch()
            return self._outcome()
        finally:
            self.close()

    def close(self) -> None:
        """Stop whatever of the job still runs (ranks still waiting for a job that will
        not come, after a failure here), then remove its directory and the segments it
        left. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            process = getattr(self, "_process", None)
            if process is not None:
                if process.poll() is None:
                    _stop_tree(process)
                _stop_group(process.pid)
            self._tmp.cleanup()
        finally:  # MPICH leaves its segments when its ranks are killed
            _remove_unused(set(_SHM_DIR.glob(_SHM_PATTERN)) - self._shm_before)

    def _watch(self) -> None:
        process, directory = self._process, self.directory
        try:
            first_failure: float | None = None
            while process.poll() is None:
                time.sleep(0.05)
                if first_failure is None and _failed(directory):
                    first_failure = time.monotonic()
                # A rank that failed aborts the job itself; one that died silently may
                # leave its peers waiting in a collective: stop them after a grace.
                grace_s = min(self.failure_timeout_s, _FAILURE_GRACE_S)
                if first_failure and time.monotonic() - first_failure > grace_s:
                    break
        finally:
            if process.poll() is None:
                _stop_tree(process)
            _stop_group(process.pid)

    def _outcome(self) -> WorkerOutput:
        """Rank 0's output, or the failure that ended the job."""
        from parnn.launch.supervisor import is_peer_symptom

        process, directory = self._process, self.directory
        failures = _read_failures(directory)
        causes = [failure for failure in failures if not is_peer_symptom(str(failure["detail"]))]
        if failures and not causes:
            # every error only says a peer went away: the peer that died silently is the cause
            silent = _first_silent_exit(
                directory, raised=frozenset(int(failure["rank"]) for failure in failures)
            )
            if silent is not None:
                raise silent
        if failures:
            cause = (causes or failures)[0]
            raise RankFailedError(
                int(cause["rank"]), str(cause["detail"]), traceback=str(cause["traceback"])
            )
        output_path = directory / _OUTPUT_FILE
        if process.returncode != 0 or not output_path.exists():
            silent = _first_silent_exit(directory)
            if silent is not None:
                raise silent
            log_text = (directory / _LOG_FILE).read_text(encoding="utf-8", errors="replace")
            raise _launcher_failure(log_text, process.returncode or 0)
        with open(output_path, "rb") as handle:
            output: WorkerOutput = pickle.load(handle)
        return output


def supervise_rank(directory: Path, rank: int) -> None:
    """Fork before MPI starts: the child returns and runs the rank; this process waits for
    it, records how it ended (``exit-rankN.json``: code, time) and exits the same way.

    A rank that dies without a word makes mpiexec kill the others within a millisecond,
    too fast for anyone watching from outside to tell who went first; the record is
    written before mpiexec learns of the death, so the first failed record is the cause.
    A second child, idle, writes the record when this supervisor itself is killed (the
    rank, maybe stuck in native code, just dies with it: PDEATHSIG SIGKILL)."""
    # The supervisor goes when its launcher does (mpiexec killed, say), and its rank with
    # it: no rank is left spinning in a collective, reparented to init.
    launcher = os.getppid()
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != launcher:
        os._exit(1)
    supervisor = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent(signal.SIGKILL)
        if os.getppid() != supervisor:
            os._exit(1)
        return
    if os.fork() == 0:
        _watch_supervisor(directory, rank, supervisor)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    record = {"rank": rank, "code": code, "time": time.time()}
    with contextlib.suppress(OSError):
        atomic_write_text(directory / f"exit-rank{rank}.json", json.dumps(record))
    os._exit(code if code >= 0 else 128 - code)


def _watch_supervisor(directory: Path, rank: int, supervisor: int) -> None:
    """An idle child of the supervisor: when the supervisor dies without its exit record
    (killed), write the record for it, naming this rank; then exit. Never returns."""
    path = directory / f"exit-rank{rank}.json"

    def on_parent_death(signum: int, frame: Any) -> None:
        if not path.exists():  # a supervisor that ended normally wrote it before exiting
            record = {"rank": rank, "code": -signal.SIGKILL, "time": time.time(),
                      "supervisor": supervisor}  # fmt: skip
            with contextlib.suppress(OSError):
                atomic_write_text(path, json.dumps(record))
        os._exit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, on_parent_death)
    _die_with_parent(signal.SIGUSR1)
    if os.getppid() != supervisor:
        on_parent_death(0, None)
    while True:
        signal.pause()


# ── what a rank started by MpiRanks does with the job's directory ────────────────────────


def import_parent_main() -> None:
    """Run the parent's ``__main__`` script as ``__mp_main__`` (its ``if __name__ ==
    "__main__"`` block does not run) and let it answer for ``__main__`` when unpickling."""
    path = os.environ.get(_MAIN_ENV)
    if not path:
        return
    import runpy
    import types

    module = types.ModuleType("__mp_main__")
    module.__file__ = path
    sys.modules["__mp_main__"] = module
    module.__dict__.update(runpy.run_path(path, run_name="__mp_main__"))
    sys.modules["__main__"] = module


def wait_for_job(directory: Path) -> Path:
    """The job's file, once the command has written it (whole: it is renamed into place).
    A rank whose command fails before that is stopped by it (:meth:`MpiRanks.close`), or
    dies with it."""
    path = directory / _JOB_FILE
    while not path.exists():
        time.sleep(_JOB_POLL_S)
    return path


def write_rank_output(directory: Path, output: WorkerOutput) -> None:
    """Rank 0's output, for :meth:`MpiRanks.run` to read back."""
    atomic_write_bytes(directory / _OUTPUT_FILE, pickle.dumps(output))


def record_rank_error(directory: Path, rank: int, exc: BaseException) -> None:
    """``error-rankN.json``: the error that ended ``rank`` (call it in an ``except``)."""
    record = {
        "rank": rank,
        "detail": " ".join(f"{type(exc).__name__}: {exc}".split())[:500],
        "traceback": traceback.format_exc(),
        "time": time.time(),
    }
    with contextlib.suppress(Exception):
        atomic_write_text(directory / f"error-rank{rank}.json", json.dumps(record))
