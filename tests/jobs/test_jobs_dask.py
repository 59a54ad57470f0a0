"""K-fold jobs on Dask's distributed scheduler: a real `dask scheduler` and `dask worker`
processes on 127.0.0.1 (and a LocalCluster) give the pool's numbers job for job; a worker
killed mid-job has its job run again from its checkpoint, or reported failed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from parnn.bench.kfold_plots import save_kfold_plots
from parnn.data import ArrayDataset, load_dataset
from parnn.errors import ConfigError
from parnn.jobs import AsyncKFold, KFoldResults
from parnn.launch import leftover_processes, usable_cores

distributed = pytest.importorskip(
    "distributed", reason="needs dask[distributed]: pip install 'parnn[cluster]'"
)

MODELS_FILE = Path(__file__).with_name("kfold_test_models.py")
SLOW = f"{MODELS_FILE}:build_slow"  # 20 ms per step: long enough to be killed mid-job
DROPOUT = f"{MODELS_FILE}:build_dropout"
MODELS = [SLOW, DROPOUT]
SCHEDULES = ["cosine", "warm"]
FOLDS = 3  # 2 models x 2 schedules x 3 folds = 12 jobs
PARAMS = {"steps": 30, "save_checkpoint_frequency": 5, "print_frequency": 5}
SRC = str(Path(__file__).resolve().parents[2] / "src")


class DaskProcesses:
    """`dask scheduler` and `dask worker` subprocesses bound to 127.0.0.1, each in its own
    process group, all killed on exit."""

    def __init__(self, folder: Path, *, allowed_failures: int | None = None) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [SRC, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        if allowed_failures is not None:
            self.env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        handle = open(self.folder / log, "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        handle.close()
        self.processes.append(process)
        return process

    def __enter__(self) -> DaskProcesses:
        self._start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
            log="scheduler.log",
        )
        deadline = time.monotonic() + 60
        while not self.scheduler_file.exists():
            assert time.monotonic() < deadline, (self.folder / "scheduler.log").read_text()
            time.sleep(0.1)
        for _ in range(50):  # the scheduler may still be writing it
            try:
                self.address = str(json.loads(self.scheduler_file.read_text())["address"])
                break
            except (ValueError, KeyError):
                time.sleep(0.1)
        return self

    def add_worker(self, name: str) -> None:
        self.workers[name] = self._start(
            "worker",
            "--scheduler-file",
            str(self.scheduler_file),
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--resources",
            "cores=1",
            "--no-nanny",  # one process per worker: a kill is a kill
            "--no-dashboard",
            "--name",
            name,
            log=f"worker-{name}.log",
        )

    def wait_for_workers(self, count: int) -> None:
        with distributed.Client(self.address, timeout="30s") as client:
            client.wait_for_workers(count, timeout=120)

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def data() -> ArrayDataset:
    return load_dataset("digits", input_shape=(1, 16, 16), num_samples=300)


@pytest.fixture(scope="module")
def pool_results(data: ArrayDataset, tmp_path_factory: pytest.TempPathFactory) -> KFoldResults:
    """The reference: the same 12 jobs on the pinned pool."""
    kfold = AsyncKFold(
        FOLDS, data, tmp_path_factory.mktemp("pool"), quiet=True, workers=2, cost_method="params"
    )
    return kfold(MODELS, SCHEDULES, None, PARAMS)


def assert_same_jobs(results: KFoldResults, reference: KFoldResults) -> None:
    mine = {job.job_id: job for job in results.jobs_of("parallel")}
    theirs = {job.job_id: job for job in reference.jobs_of("parallel")}
    assert sorted(mine) == sorted(theirs) and len(mine) == 12
    for job_id, job in mine.items():
        twin = theirs[job_id]
        assert job.ok and twin.ok, (job_id, job.error, twin.error)
        assert job.seed == twin.seed, job_id
        assert job.accuracy == twin.accuracy, job_id
        assert job.loss == twin.loss, job_id
        assert job.train_loss == twin.train_loss, job_id
        assert job.loss_history == twin.loss_history, job_id
        assert job.steps == 30, job_id


def kill_mid_job(processes: DaskProcesses, name: str, checkpoints: Path) -> threading.Thread:
    """Kill worker ``name`` (SIGKILL) once it runs a job that has written a checkpoint."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        with distributed.Client(processes.address, timeout="30s") as client:
            while time.monotonic() < deadline:
                info = client.scheduler_info(n_workers=-1)["workers"]
                address = next((a for a, w in info.items() if w.get("name") == name), None)
                busy = client.processing().get(address, []) if address else []
                if busy and len(list(checkpoints.glob("*.pt"))) >= 2:
                    processes.workers[name].kill()
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scheduler_and_two_workers_give_the_pools_results_per_job(
    data: ArrayDataset, pool_results: KFoldResults, tmp_path: Path
) -> None:
    with DaskProcesses(tmp_path) as processes:
        processes.add_worker("a")
        processes.add_worker("b")
        processes.wait_for_workers(2)
        kfold = AsyncKFold(
            FOLDS,
            data,
            tmp_path / "run",
            quiet=True,
            cost_method="params",
            cluster=str(processes.scheduler_file),  # as good as its address
        )
        results = kfold(MODELS, SCHEDULES, None, PARAMS)
    assert_same_jobs(results, pool_results)
    jobs = results.jobs_of("parallel")
    assert {job.worker for job in jobs} == {0, 1}  # both workers ran jobs
    assert all(job.host for job in jobs)
    if len(usable_cores()) >= 2:  # each worker's job held a core of its own
        assert not [w for job in jobs for w in job.warnings if "not pinned" in w]
    (session,) = results.sessions_of("parallel")
    assert session["executor"] == "dask" and session["scheduler"] == processes.address
    assert session["workers"] == 2
    assert {sample["address"] for sample in session["worker_cpu"]} == {
        worker["address"] for worker in session["dask_workers"]
    }
    for kind, path in save_kfold_plots(results).items():  # per worker host
        assert Path(path).stat().st_size > 0, kind
    assert not list((tmp_path / "run" / "checkpoints").rglob("*.pt"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_killed_mid_job_has_its_job_run_again_from_its_checkpoint(
    data: ArrayDataset, pool_results: KFoldResults, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with DaskProcesses(tmp_path) as processes:
        processes.add_worker("a")
        processes.add_worker("b")
        processes.wait_for_workers(2)
        killer = kill_mid_job(processes, "b", run / "checkpoints" / "parallel")
        kfold = AsyncKFold(
            FOLDS, data, run, quiet=True, cost_method="params", cluster=processes.address
        )
        results = kfold(MODELS, SCHEDULES, None, PARAMS)
        killer.join(timeout=10)
        assert processes.workers["b"].poll() is not None, "worker b was never killed"
    assert_same_jobs(results, pool_results)  # nothing dropped, the numbers unchanged
    again = [job for job in results.jobs_of("parallel") if any("again" in w for w in job.warnings)]
    assert len(again) == 1, [job.warnings for job in results.jobs_of("parallel")]
    assert again[0].resumed_from_step > 0  # from its checkpoint, not from scratch


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_without_retries_the_lost_job_is_reported_failed_and_resume_runs_it(
    data: ArrayDataset, pool_results: KFoldResults, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with DaskProcesses(tmp_path, allowed_failures=0) as processes:
        processes.add_worker("a")
        processes.add_worker("b")
        processes.wait_for_workers(2)
        killer = kill_mid_job(processes, "b", run / "checkpoints" / "parallel")
        options: dict[str, Any] = {"quiet": True, "cost_method": "params"}
        kfold = AsyncKFold(FOLDS, data, run, cluster=processes.address, **options)
        first = kfold(MODELS, SCHEDULES, None, PARAMS)
        killer.join(timeout=10)
        (failed,) = first.failed
        assert failed.error is not None and failed.error.startswith("WorkerDied"), failed.error
        assert len([job for job in first.jobs_of("parallel") if job.ok]) == 11

        processes.add_worker("c")
        again = AsyncKFold(FOLDS, data, run, cluster=processes.address, resume=True, **options)
        results = again(MODELS, SCHEDULES, None, PARAMS)
    assert_same_jobs(results, pool_results)
    (retried,) = [job for job in results.jobs_of("parallel") if job.session == 1]
    assert retried.job_id == failed.job_id and retried.resumed_from_step > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_local_cluster_gives_the_pools_results_and_pool_resumes_it(
    data: ArrayDataset, pool_results: KFoldResults, tmp_path: Path
) -> None:
    kfold = AsyncKFold(FOLDS, data, tmp_path, quiet=True, cost_method="params", cluster="local:2")
    results = kfold(MODELS, SCHEDULES, None, PARAMS)
    assert_same_jobs(results, pool_results)
    # --resume without --cluster: the pool finds every job done by the cluster.
    resumed = AsyncKFold(FOLDS, data, tmp_path, quiet=True, cost_method="params", resume=True)
    again = resumed(MODELS, SCHEDULES, None, PARAMS)
    assert_same_jobs(again, pool_results)
    assert len(again.sessions_of("parallel")) == 1  # nothing was left to run
    assert leftover_processes() == []  # the LocalCluster's workers are gone


def test_a_remote_cluster_refuses_a_relative_out_before_touching_it(
    data: ArrayDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kfold = AsyncKFold(2, data, "runs/kf", quiet=True, cluster="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="relative.*absolute path on storage every worker"):
        kfold(["mlp"], ["constant"], None, {"steps": 2})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("cluster", ["nowhere", "local:0", "local:x", 3])
def test_a_bad_cluster_is_refused(data: ArrayDataset, tmp_path: Path, cluster: Any) -> None:
    with pytest.raises(ConfigError, match="cluster"):
        AsyncKFold(2, data, tmp_path, cluster=cluster)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even under a batch shell


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_cancels_the_tasks_and_resume_finishes_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--models", SLOW, "--schedulers", "cosine,warm", "--folds", "3", "--input", "1x16x16"]
    args += ["--num-samples", "300", "--steps", "120", "--checkpoint-every", "5", "--quiet"]
    args += ["--cost", "params", "--out", str(out)]
    with DaskProcesses(tmp_path) as processes:
        processes.add_worker("a")
        processes.add_worker("b")
        processes.wait_for_workers(2)
        command = [sys.executable, "-m", "parnn.cli", "kfold", *args]
        command += ["--cluster", processes.address]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=processes.env, start_new_session=True, preexec_fn=_interruptible,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints" / "parallel").glob("*.pt")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no job ever checkpointed"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "--resume" in err
        with distributed.Client(processes.address, timeout="30s") as client:
            deadline = time.monotonic() + 30
            while True:  # the running tasks notice at their next progress report
                executing = client.run(lambda dask_worker: dask_worker.state.executing_count)
                if not any(executing.values()):
                    break
                assert time.monotonic() < deadline, f"tasks still running: {executing}"
                time.sleep(0.1)
            assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
        assert all(worker.poll() is None for worker in processes.workers.values())
        done = subprocess.run(
            [*command, "--resume", "--json"], capture_output=True, text=True,
            env=processes.env, timeout=240, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["jobs_ok"] == 6 and payload["jobs_failed"] == 0
    assert any(job["resumed_from_step"] > 0 for job in payload["jobs"])
