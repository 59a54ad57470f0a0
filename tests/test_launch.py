"""parnn.launch: real gloo processes, pinning, failure propagation, torchrun environment.

The functions the ranks run are top-level here: spawned processes import this module.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
import torch.distributed as dist

from parnn.errors import ConfigError, ParnnWarning, RankFailedError
from parnn.launch import (
    DistEnv,
    LaunchConfig,
    launch,
    leftover_processes,
    plan_cores,
    run_distributed,
    torchrun_env,
    usable_cores,
)
from parnn.launch.supervisor import is_peer_symptom

REPO_ROOT = Path(__file__).resolve().parents[1]
TWO_CORES = usable_cores()[:2]
needs_two_cores = pytest.mark.skipif(len(TWO_CORES) < 2, reason="needs 2 usable cores")


# ── what the ranks run ───────────────────────────────────────────────────────────────────


def _whoami(rank: int, world_size: int, tag: str) -> tuple[int, int, str]:
    return rank, world_size, tag


def _all_reduce_sum(rank: int, world_size: int) -> float:
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    return value.item()


def _placement(rank: int, world_size: int) -> dict[str, object]:
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "threads": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "rank_env": os.environ.get("RANK"),
        "marker": os.environ.get("PARNN_TEST_MARKER"),
        "torchrun_env": torchrun_env(),
        "initialised": dist.is_initialized(),
    }


def _fail_at_rank_1(rank: int, world_size: int, how: str) -> int:
    if rank == 1:
        time.sleep(0.3)  # let rank 0 block in its recv first
        if how == "raise":
            raise ValueError("bad batch at step 7")
        if how == "exit":
            os._exit(3)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
    received = torch.zeros(1)
    dist.recv(received, src=1)  # never answered: rank 1 fails instead
    return rank


def _rank_1_hangs(rank: int, world_size: int) -> int:
    if rank == 1:
        time.sleep(300)
    dist.recv(torch.zeros(1), src=1)
    return rank


def _add_rank_in_place(rank: int, world_size: int, shared: torch.Tensor) -> None:
    shared[rank] += rank + 1  # each rank its own element: no race


def _tensor_result(rank: int, world_size: int, offset: torch.Tensor) -> torch.Tensor:
    return torch.full((100_000,), float(rank)) + offset  # ~400 KB: more than a pipe holds


def _hang_at_exit(rank: int, world_size: int) -> int:
    atexit.register(time.sleep, 300)  # runs after the result is sent
    return rank


def _unpicklable_result(rank: int, world_size: int) -> object:
    return (lambda: None) if rank == 0 else None


# ── helpers ──────────────────────────────────────────────────────────────────────────────


def _assert_no_leftovers() -> None:
    deadline = time.monotonic() + 5
    while (leftovers := leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers == []


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ── configuration and placement (no processes) ───────────────────────────────────────────


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"num_processes": 0}, "num_processes=0"),
        ({"threads_per_process": 0}, "threads_per_process=0"),
        ({"backend": "carrier-pigeon"}, "backend='carrier-pigeon'"),
        ({"cores": (10_000,)}, "cores=(10000,)"),
        ({"cores": (0, 0)}, "cores=(0, 0): must be distinct"),
        ({"master_port": 70_000}, "master_port=70000"),
        ({"failure_timeout_s": 0}, "failure_timeout_s=0"),
        ({"start_method": "fork"}, "start_method='fork'"),
    ],
)
def test_config_rejects_bad_values_in_one_line(changes: dict[str, object], words: str) -> None:
    settings: dict[str, object] = {"num_processes": 2, **changes}
    with pytest.raises(
        ConfigError, match="^" + words.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        LaunchConfig(**settings)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_plan_cores_blocks_then_round_robin() -> None:
    assert plan_cores(2, 1, (0, 1)) == [(0,), (1,)]
    assert plan_cores(3, 1, (0, 1)) == [(0,), (1,), (0,)]
    assert plan_cores(2, 2, (4, 5, 6, 7)) == [(4, 5), (6, 7)]
    assert plan_cores(1, 3, (0, 1)) == [(0, 1)]


def test_lambda_is_refused_before_any_process_starts() -> None:
    with pytest.raises(ConfigError, match="top-level function"):
        launch(lambda rank, world_size: rank, LaunchConfig(num_processes=2))


@pytest.mark.timeout(60)
def test_arguments_that_cannot_be_pickled_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="arguments of _whoami cannot be sent"):
        launch(_whoami, LaunchConfig(num_processes=2), threading.Lock())
    _assert_no_leftovers()


# ── real processes ───────────────────────────────────────────────────────────────────────


@pytest.mark.timeout(60)
def test_results_come_back_in_rank_order() -> None:
    results = launch(_whoami, LaunchConfig(num_processes=2), "hello")
    assert results == [(0, 2, "hello"), (1, 2, "hello")]
    _assert_no_leftovers()


@pytest.mark.timeout(60)
def test_tensor_arguments_and_results_cross_intact() -> None:
    results = launch(_tensor_result, LaunchConfig(num_processes=2), torch.tensor(0.5))
    assert [tuple(result.shape) for result in results] == [(100_000,), (100_000,)]
    assert [result[-1].item() for result in results] == [0.5, 1.5]


@pytest.mark.timeout(60)
def test_tensors_in_shared_memory_are_shared_with_the_ranks() -> None:
    shared = torch.zeros(2).share_memory_()  # as Hogwild shares a model
    launch(_add_rank_in_place, LaunchConfig(num_processes=2, init_process_group=False), shared)
    assert shared.tolist() == [1.0, 2.0]


def test_an_mpi_error_from_a_dead_peer_is_a_symptom_not_the_cause() -> None:
    # what MPICH raises in the survivor when its peer is killed mid-all-reduce
    assert is_peer_symptom(
        "Exception: Other MPI error, error stack: internal_Allreduce_c(342): "
        "MPI_Allreduce_c(sendbuf=MPI_IN_PLACE, count=567434, MPI_FLOAT) failed"
    )
    assert is_peer_symptom("RuntimeError: Connection closed by peer [127.0.0.1]:1234")
    assert not is_peer_symptom("RuntimeError: injected failure at step 3 (test hook)")


def _parameter_sum(rank: int, world_size: int, model: torch.nn.Module) -> float:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # shared: the launcher sees it
    return float(sum(p.sum() for p in model.parameters()))


@pytest.mark.timeout(60)
def test_a_model_with_more_tensors_than_the_fork_server_passes_reaches_the_ranks() -> None:
    # 2 x 150 tensors: more than the 256 file descriptors the fork server hands a child.
    model = torch.nn.Sequential(*[torch.nn.Linear(1, 1) for _ in range(150)])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.0)
    model.share_memory()
    config = LaunchConfig(num_processes=1, init_process_group=False)
    assert launch(_parameter_sum, config, model) == [300.0]
    assert all(p.item() == 1.0 for p in model.parameters())  # still shared (Hogwild)


@pytest.mark.timeout(60)
def test_a_rank_that_cannot_exit_after_returning_is_killed_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("parnn.launch.supervisor._EXIT_GRACE_S", 1.0)
    with pytest.warns(ParnnWarning, match=r"ranks \[0, 1\] returned .* did not exit within 1 s"):
        assert launch(_hang_at_exit, LaunchConfig(num_processes=2)) == [0, 1]
    _assert_no_leftovers()


@pytest.mark.timeout(60)
def test_all_reduce_across_two_ranks() -> None:
    assert launch(_all_reduce_sum, LaunchConfig(num_processes=2)) == [3.0, 3.0]


@needs_two_cores
@pytest.mark.timeout(60)
def test_three_ranks_on_two_cores_warn_and_still_all_reduce() -> None:
    config = LaunchConfig(num_processes=3, cores=TWO_CORES)
    with pytest.warns(ParnnWarning, match="oversubscribed: 3 processes x 1 thread on 2 usable"):
        assert launch(_all_reduce_sum, config) == [6.0, 6.0, 6.0]


@needs_two_cores
@pytest.mark.timeout(60)
def test_each_rank_is_pinned_with_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARNN_TEST_MARKER", "from-the-launcher")
    placements = launch(_placement, LaunchConfig(num_processes=2, cores=TWO_CORES))
    assert [p["affinity"] for p in placements] == [[TWO_CORES[0]], [TWO_CORES[1]]]
    assert [p["threads"] for p in placements] == [1, 1]
    assert [p["omp"] for p in placements] == ["1", "1"]
    assert [p["rank_env"] for p in placements] == ["0", "1"]
    assert {p["marker"] for p in placements} == {"from-the-launcher"}
    assert all(p["initialised"] for p in placements)
    assert [p["torchrun_env"] for p in placements] == [None, None]  # parnn's ranks, not torchrun's


@needs_two_cores
@pytest.mark.timeout(60)
def test_threads_per_process_gets_that_many_cores() -> None:
    config = LaunchConfig(num_processes=1, threads_per_process=2, cores=TWO_CORES)
    (placement,) = launch(_placement, config)
    assert placement["affinity"] == sorted(TWO_CORES)
    assert placement["threads"] == 2
    assert placement["omp"] == "2"


@pytest.mark.timeout(60)
def test_unpinned_ranks_keep_the_launchers_affinity_and_skip_the_process_group() -> None:
    config = LaunchConfig(num_processes=2, pin=False, init_process_group=False)
    placements = launch(_placement, config)
    assert [p["affinity"] for p in placements] == [list(usable_cores())] * 2
    assert not any(p["initialised"] for p in placements)


@pytest.mark.timeout(90)
def test_spawn_start_method_works_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARNN_TEST_MARKER", "spawned")
    config = LaunchConfig(num_processes=2, start_method="spawn")
    placements = launch(_placement, config)
    assert [p["marker"] for p in placements] == ["spawned", "spawned"]
    _assert_no_leftovers()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("raise", "ValueError: bad batch at step 7"),
        ("exit", "exited with code 3"),
        ("sigkill", "killed by SIGKILL"),
    ],
)
def test_a_failing_rank_stops_the_job_and_is_named(how: str, words: str) -> None:
    started = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        launch(_fail_at_rank_1, LaunchConfig(num_processes=2), how)
    assert time.monotonic() - started < 30  # rank 0 was blocked in recv: it was killed
    error = info.value
    assert error.rank == 1
    assert words in error.detail
    assert str(error).startswith("rank 1 failed: ") and "\n" not in str(error)
    if how == "raise":
        assert "_fail_at_rank_1" in error.traceback and "ValueError" in error.traceback
    _assert_no_leftovers()


@pytest.mark.timeout(60)
def test_a_hung_peer_ends_in_the_collective_timeout_not_a_hang() -> None:
    config = LaunchConfig(num_processes=2, failure_timeout_s=2)
    with pytest.raises(RankFailedError) as info:
        launch(_rank_1_hangs, config)
    assert info.value.rank == 0
    assert "timed out" in info.value.detail.lower()
    _assert_no_leftovers()


@pytest.mark.timeout(60)
def test_a_result_that_cannot_be_pickled_is_a_failure_of_that_rank() -> None:
    with pytest.raises(RankFailedError) as info:
        launch(_unpicklable_result, LaunchConfig(num_processes=2))
    assert info.value.rank == 0
    assert "pickle" in info.value.detail.lower()


_SCRIPT = """
import os, sys, time
from parnn.launch import LaunchConfig, launch

def sleep_forever(rank, world_size, pid_dir):
    open(os.path.join(pid_dir, str(rank)), "w").write(str(os.getpid()))
    time.sleep(300)

if __name__ == "__main__":
    launch(sleep_forever, LaunchConfig(num_processes=2, init_process_group=False), sys.argv[1])
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGKILL])
def test_ranks_do_not_outlive_their_launcher(tmp_path: Path, stop_with: signal.Signals) -> None:
    """Ctrl-C in the launcher kills the ranks; a launcher killed outright takes them along."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    launcher = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT at its default, as in a terminal: a suite started in the background by a
        # non-interactive shell inherits it ignored, and Ctrl-C would then test nothing.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("[0-9]"))) < 2:
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr
            time.sleep(0.1)
        rank_pids = [int(path.read_text()) for path in sorted(tmp_path.glob("[0-9]"))]
        launcher.send_signal(stop_with)
        _, stderr = launcher.communicate(timeout=30)
        if stop_with == signal.SIGINT:
            assert "KeyboardInterrupt" in stderr
        deadline = time.monotonic() + 15
        while any(map(_running, rank_pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [pid for pid in rank_pids if _running(pid)]
        assert alive == [], f"orphaned ranks {alive}"
    finally:
        launcher.kill()
        launcher.wait()


# ── torchrun ─────────────────────────────────────────────────────────────────────────────


def test_torchrun_env_reads_the_launchers_variables() -> None:
    environ = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
    }
    assert torchrun_env(environ) == DistEnv(
        rank=3,
        world_size=4,
        local_rank=1,
        local_world_size=2,
        master_addr="node0",
        master_port=29500,
    )
    assert torchrun_env({"PATH": "/bin"}) is None
    single = torchrun_env({"RANK": "0", "WORLD_SIZE": "1"})
    assert single is not None and (single.local_rank, single.local_world_size) == (0, 1)


@pytest.mark.parametrize(
    "environ",
    [
        {"RANK": "zero", "WORLD_SIZE": "2"},
        {"RANK": "0"},
        {"RANK": "2", "WORLD_SIZE": "2"},
        {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "3"},
    ],
)
def test_torchrun_env_rejects_inconsistent_variables(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="torchrun"):
        torchrun_env(environ)


def _in_process(rank: int, world_size: int, value: int) -> tuple[int, int, bool, int]:
    return rank, world_size, dist.is_initialized(), value * 2


@pytest.mark.timeout(60)
def test_run_distributed_under_torchrun_calls_fn_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    affinity, threads = os.sched_getaffinity(0), torch.get_num_threads()
    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    try:
        assert run_distributed(_in_process, LaunchConfig(num_processes=1), 21) == [(0, 1, True, 42)]
        assert not dist.is_initialized()
        assert os.sched_getaffinity(0) == {usable_cores()[0]}
        with pytest.raises(ConfigError, match="WORLD_SIZE=1"):
            run_distributed(_in_process, LaunchConfig(num_processes=2), 21)
    finally:
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)


_TORCHRUN_SCRIPT = """
import os, sys
import torch, torch.distributed as dist
from parnn.launch import LaunchConfig, run_distributed

def total(rank, world_size):
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    return value.item()

if __name__ == "__main__":
    (result,) = run_distributed(total, LaunchConfig(num_processes=2))
    with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"]), "w") as out:
        out.write(f"{dist.is_initialized()} {result} {sorted(os.sched_getaffinity(0))}")
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_run_distributed_under_real_torchrun(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(_TORCHRUN_SCRIPT))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)]
    if len(TWO_CORES) == 2:  # each local rank pinned to its own core
        assert reports == [f"False 3.0 [{TWO_CORES[0]}]", f"False 3.0 [{TWO_CORES[1]}]"]
    else:
        assert [report.split()[:2] for report in reports] == [["False", "3.0"]] * 2


@pytest.mark.timeout(120)
def test_a_warning_in_a_rank_is_one_parnn_line(tmp_path: Path) -> None:
    """A warning raised inside a rank prints as the CLI's do: one ``parnn: warning:`` line,
    not Python's two lines with a source path."""
    script = tmp_path / "warn.py"
    script.write_text(
        textwrap.dedent(
            """
            import warnings
            from parnn.launch import LaunchConfig, launch

            def fn(rank, world_size):
                warnings.warn(f"rank {rank} says\\nmind the gap", UserWarning, stacklevel=1)
                return rank

            if __name__ == "__main__":
                print(launch(fn, LaunchConfig(num_processes=2, init_process_group=False)))
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=100, check=False
    )
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert sorted(lines) == [
        "parnn: warning: rank 0 says mind the gap",
        "parnn: warning: rank 1 says mind the gap",
    ], completed.stderr
