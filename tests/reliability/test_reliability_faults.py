"""Fault injection for every engine: kill -9 of a rank, SIGINT and SIGTERM to the launcher.

Each case starts ``parnn ...`` as a real command in its own session, waits until its
worker processes run, injects the fault and checks: the command exits within 30 s with
the documented code and one line naming the rank (or the signal), and nothing is left:
no process of the session, no ``/tmp/parnn-mpi-<pid>-*`` directory, no new MPICH
shared-memory segment. Tiny models, endless ``--steps``: the fault always lands mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from parnn.data_parallel.mpi import mpi_available

EXIT_WITHIN_S = 30.0
START_WITHIN_S = 300.0  # at load 25 on 2 cores, starting torch in 3 processes took >120 s
SHM = Path("/dev/shm")
HELPERS = ("multiprocessing.forkserver", "resource_tracker", "hydra_pmi_proxy", "mpiexec")

needs_mpi = pytest.mark.skipif(not mpi_available(), reason="mpi4py is not installed")


def _default_sigint() -> None:  # a suite started in the background inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parnn.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its session id is its pid: what is left is easy to find
        preexec_fn=_default_sigint,
    )


def _session(sid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _workers(launcher: subprocess.Popen[str]) -> list[psutil.Process]:
    """The launcher's worker processes (ranks, pool workers; MPI: the ranks, not their
    supervisors), in start order."""
    members = {p.pid: p for p in _session(launcher.pid) if p.pid != launcher.pid}
    try:  # Hydra's proxy starts the MPI ranks in a session of their own
        members |= {p.pid: p for p in psutil.Process(launcher.pid).children(recursive=True)}
    except psutil.Error:
        pass
    members = list(members.values())
    # A rank forked from the fork server has the server's command line, not its parent.
    ranks = [
        p
        for p in members
        if not (any(name in _cmdline(p) for name in HELPERS) and p.ppid() == launcher.pid)
        and "hydra_pmi_proxy" not in _cmdline(p)
    ]
    mpi = [p for p in ranks if "mpi_rank" in _cmdline(p)]
    if mpi:  # a supervisor forks its rank first, then an idle watcher
        pids = {p.pid for p in mpi}
        children: dict[int, list[psutil.Process]] = {}
        for process in mpi:
            if process.ppid() in pids:
                children.setdefault(process.ppid(), []).append(process)
        ranks = [min(group, key=lambda p: p.pid) for group in children.values()]
    return sorted(ranks, key=lambda p: p.pid)


def _mpi_rank_of(process: psutil.Process) -> int:
    environ = psutil.Process(process.ppid()).environ()  # the supervisor's, set by mpiexec
    return int(environ["PMI_RANK"])


def _wait_for_workers(launcher: subprocess.Popen[str], count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()
        workers = _workers(launcher)
        if len(workers) >= count:
            time.sleep(1.0)  # let them reach their training loop
            return _workers(launcher)
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} workers after {START_WITHIN_S} s")


def _unused_new_shm(before: set[Path]) -> set[Path]:
    """MPICH segments created since ``before`` that no live process maps."""
    new = set(SHM.glob("mpich_shm_*")) - before
    if not new:
        return set()
    mapped: set[str] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                mapped |= {
                    line.split()[-1]
                    for line in (entry / "maps").read_text().splitlines()
                    if "mpich_shm_" in line
                }
            except OSError:
                continue
    return {path for path in new if str(path) not in mapped}


@dataclass(frozen=True)
class Fault:
    args: list[str]
    workers: int
    inject: Callable[[subprocess.Popen[str], list[psutil.Process]], str]
    """Sends the fault; returns the rank it hit ("" for a signal to the launcher)."""
    exit_code: int
    message: str  # in the last stderr line; {rank} filled in


def _kill_rank(index: int) -> Callable[[subprocess.Popen[str], list[psutil.Process]], str]:
    def inject(launcher: subprocess.Popen[str], workers: list[psutil.Process]) -> str:
        victim = workers[index]
        rank = _mpi_rank_of(victim) if "mpi_rank" in _cmdline(victim) else index
        victim.kill()
        return str(rank)

    return inject


def _kill_supervisor(launcher: subprocess.Popen[str], workers: list[psutil.Process]) -> str:
    victim = workers[1]
    rank = _mpi_rank_of(victim)
    psutil.Process(victim.ppid()).kill()
    return str(rank)


def _signal(number: int) -> Callable[[subprocess.Popen[str], list[psutil.Process]], str]:
    def inject(launcher: subprocess.Popen[str], workers: list[psutil.Process]) -> str:
        launcher.send_signal(number)
        return ""

    return inject


ENDLESS = ["--steps", "100000", "--quiet", "--data", "digits"]
PIPELINE = ["pipeline", "--model", "lenet5", "--stages", "2", "--no-eval", *ENDLESS]


def _dp(engine: str) -> list[str]:
    return ["dp", "--engine", engine, "--model", "mlp", "--processes", "2", *ENDLESS]


FAULTS = {
    "pipeline-kill-rank1": Fault(PIPELINE, 2, _kill_rank(1), 1, "rank {rank} failed"),
    "pipeline-sigterm": Fault(PIPELINE, 2, _signal(signal.SIGTERM), 143, "parnn: terminated"),
    "ddp-kill-rank0": Fault(_dp("ddp"), 2, _kill_rank(0), 1, "rank {rank} failed"),
    "ddp-sigint": Fault(_dp("ddp"), 2, _signal(signal.SIGINT), 130, "parnn: interrupted"),
    "ddp-sigterm": Fault(_dp("ddp"), 2, _signal(signal.SIGTERM), 143, "parnn: terminated"),
    "hogwild-kill-rank1": Fault(_dp("hogwild"), 2, _kill_rank(1), 1, "rank {rank} failed"),
    "local-sgd-kill-rank1": Fault(_dp("local-sgd"), 2, _kill_rank(1), 1, "rank {rank} failed"),
    "mpi-kill-rank": Fault(_dp("mpi"), 2, _kill_rank(1), 1, "rank {rank} failed"),
    "mpi-kill-supervisor": Fault(_dp("mpi"), 2, _kill_supervisor, 1, "rank {rank} failed"),
    "mpi-sigterm": Fault(_dp("mpi"), 2, _signal(signal.SIGTERM), 143, "parnn: terminated"),
}


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=needs_mpi) if "mpi" in name else name for name in FAULTS],
)
def test_fault_stops_everything_and_names_the_rank(name: str, tmp_path: Path) -> None:
    fault = FAULTS[name]
    shm_before = set(SHM.glob("mpich_shm_*"))
    launcher = _start(fault.args, tmp_path)
    try:
        workers = _wait_for_workers(launcher, fault.workers)
        rank = fault.inject(launcher, workers)
        hit = time.monotonic()
        _, stderr = launcher.communicate(timeout=EXIT_WITHIN_S)
        took = time.monotonic() - hit
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    lines = stderr.strip().splitlines()
    assert took < EXIT_WITHIN_S
    assert launcher.returncode == fault.exit_code, stderr
    assert lines and fault.message.format(rank=rank) in lines[-1], stderr
    assert lines[-1].startswith("parnn: "), stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10  # helpers (the fork server) exit when they notice
    while _session(launcher.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session(launcher.pid), [_cmdline(p) for p in _session(launcher.pid)]
    assert not list(Path(tempfile.gettempdir()).glob(f"parnn-mpi-{launcher.pid}-*"))
    assert not _unused_new_shm(shm_before)


KFOLD = [
    "kfold", "--models", "lenet5", "--lr-schedules", "constant", "--folds", "2",
    "--workers", "2", "--checkpoint-every", "5", *ENDLESS,
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_kfold_kill_of_a_worker_fails_its_job_and_sigterm_keeps_the_session(
    tmp_path: Path,
) -> None:
    """kill -9 of a pool worker: that job is recorded as failed, naming the worker; then
    SIGTERM: every process stops, the session is recorded, the --resume hint is printed."""
    out = tmp_path / "kf"
    launcher = _start([*KFOLD, "--out", str(out)], tmp_path)
    try:
        workers = _wait_for_workers(launcher, 2)
        time.sleep(2.0)  # both jobs started
        workers[1].kill()
        deadline = time.monotonic() + EXIT_WITHIN_S
        jobs = out / "jobs.jsonl"
        while not (jobs.exists() and jobs.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=EXIT_WITHIN_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("parnn: terminated:") and "--resume" in last, stderr
    failed = [json.loads(line) for line in jobs.read_text().splitlines()]
    assert failed and failed[0]["status"] == "failed", failed
    assert "WorkerDied: worker" in failed[0]["error"] and "SIGKILL" in failed[0]["error"]
    sessions = [json.loads(line) for line in (out / "sessions.jsonl").read_text().splitlines()]
    assert sessions and sessions[-1]["interrupted"] is True
    time.sleep(1.0)
    assert not _session(launcher.pid), [_cmdline(p) for p in _session(launcher.pid)]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_kfold_sigint_keeps_the_session_and_prints_the_resume_hint(tmp_path: Path) -> None:
    out = tmp_path / "kf"
    launcher = _start([*KFOLD, "--out", str(out)], tmp_path)
    try:
        _wait_for_workers(launcher, 2)
        launcher.send_signal(signal.SIGINT)
        _, stderr = launcher.communicate(timeout=EXIT_WITHIN_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("parnn: interrupted:") and "--resume" in last, stderr
    assert (out / "sessions.jsonl").exists()
    time.sleep(1.0)
    assert not _session(launcher.pid), [_cmdline(p) for p in _session(launcher.pid)]
