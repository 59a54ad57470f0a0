"""``parnn kfold`` end to end: JSON keys, exit codes, bad input, and an interrupted run
(Ctrl-C, then kill -9) resumed to the results of an uninterrupted one, without re-running
finished jobs and without leaving a process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from parnn.cli import cli
from parnn.jobs.spec import JobSpec
from parnn.results import read_jsonl

MODELS_FILE = Path(__file__).with_name("kfold_test_models.py")
KEYS = {
    "command",
    "out_dir",
    "settings",
    "summary",
    "timing",
    "per_model",
    "jobs_total",
    "jobs_ok",
    "jobs_failed",
    "failed",
    "cost",
    "jobs",
    "machine",
    "files",
}
TINY = ["--models", "mlp", "--folds", "2", "--steps", "2", "--cost", "params", "--quiet"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["kfold", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.timeout(120)
def test_json_has_the_documented_keys(tmp_path: Path) -> None:
    code, out, _ = run(*TINY, "--json", "--out", str(tmp_path))
    assert code == 0
    payload = json.loads(out)
    assert set(payload) == KEYS
    assert payload["command"] == "kfold" and payload["jobs_ok"] == 4
    assert payload["settings"]["folds"] == 2 and payload["settings"]["lr_schedules"] == [
        "cosine",
        "warm",
    ]
    assert set(payload["timing"]) == {"parallel", "serial", "speedup"}
    assert payload["timing"]["serial"] is None


@pytest.mark.timeout(120)
def test_failed_jobs_give_exit_code_1_after_the_results(tmp_path: Path) -> None:
    broken = f"{MODELS_FILE}:build_broken"
    args = ["--models", f"mlp,{broken}", "--lr-schedules", "constant", "--folds", "2"]
    code, out, err = run(
        *args, "--steps", "3", "--cost", "params", "--json", "--quiet", "--out", str(tmp_path)
    )
    assert code == 1
    payload = json.loads(out)
    assert payload["jobs_failed"] == 2 and payload["jobs_ok"] == 2
    assert "2 of 4 jobs failed" in err and "broken on purpose" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--folds", "1"], "k-fold needs k >= 2 folds, got 1"),
        (["--folds", "2000"], "k <= the number of samples (1797), got k=2000"),
        (["--lr-schedules", "cosine,often"], "unknown LR schedule 'often'"),
        (["--models", "lenet5,nope"], "unknown model 'nope'"),
        (["--workers", "many"], "--workers 'many'"),
        (["--resume"], "--resume needs --out DIR"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: list[str], words: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    extra = [] if "--resume" in args else ["--out", str(out)]
    code, stdout, err = run(*args, *extra, "--quiet")
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("parnn: error: ")
    assert words in err
    assert not out.exists()


@pytest.mark.timeout(120)
def test_resume_with_other_settings_says_what_differs_and_touches_nothing(tmp_path: Path) -> None:
    code, _, _ = run(*TINY, "--out", str(tmp_path))
    assert code == 0
    before = _snapshot(tmp_path)
    code, _, err = run(*TINY, "--folds", "3", "--lr", "0.01", "--resume", "--out", str(tmp_path))
    assert code == 2
    assert "folds 2 -> 3" in err and "optimizer" in err and "0.01" in err
    code, _, err = run(*TINY, "--out", str(tmp_path))  # no --resume: refused too
    assert code == 2 and "already holds a k-fold run" in err
    assert _snapshot(tmp_path) == before


def _interruptible() -> None:
    """SIGINT at its default in the child, as in a terminal's job: a suite started in the
    background by a non-interactive shell inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _records(out: Path) -> dict[str, dict]:
    return {r["job_id"]: r for r in read_jsonl(out / "jobs.jsonl") if r["status"] == "ok"}


def _stem(record: dict) -> str:
    job = JobSpec(
        model=record["model"],
        lr_schedule=record["lr_schedule"],
        fold=record["fold"],
        seed=0,
        total_steps=1,
        cost_s=0.0,
    )
    return job.file_stem


def _checkpointed(out: Path) -> set[str]:
    return {path.name for path in (out / "checkpoints" / "parallel").glob("*.pt")}


def _assert_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=15)
    assert not alive, f"left running: {[p.pid for p in alive]}"


@pytest.mark.timeout(300)
def test_interrupted_run_resumes_to_the_uninterrupted_results(tmp_path: Path) -> None:
    slow = f"{MODELS_FILE}:build_slow"  # 20 ms per step: 30 steps take ~0.6 s
    args = ["--models", slow, "--lr-schedules", "cosine,warm", "--folds", "3"]
    args += ["--input", "1x16x16", "--num-samples", "300", "--steps", "30", "--batch-size", "16"]
    args += ["--checkpoint-every", "4", "--print-every", "2", "--cost", "params", "--workers", "2"]
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "parnn.cli", "kfold", *args, "--quiet", "--out", str(out)]

    def start(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, as a terminal's job
            preexec_fn=_interruptible,
        )  # fmt: skip

    def mid_job(done: int) -> Callable[[], bool]:
        # at least `done` jobs recorded, and an unfinished job has a checkpoint
        def ready() -> bool:
            records = _records(out)
            finished = {f"{_stem(record)}.pt" for record in records.values()}
            return len(records) >= done and bool(_checkpointed(out) - finished)

        return ready

    # Session 0: Ctrl-C (SIGINT to the whole process group) in the middle of a job.
    process = start()
    _wait_for(mid_job(1), process, "a job finished and another checkpointed")
    family = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in err
    _assert_gone(family)
    first = _records(out)
    assert 1 <= len(first) < 6

    # Session 1: kill -9 of the main process; its workers must die with it.
    process = start("--resume")
    _wait_for(mid_job(len(first) + 1), process, "one more job and a checkpoint")
    family = psutil.Process(process.pid).children(recursive=True)
    assert family, "the workers are children of the run"
    process.kill()
    process.communicate(timeout=60)
    _assert_gone(family)
    second = _records(out)
    assert len(second) > len(first)

    # Session 2 finishes.
    process = start("--resume", "--json")
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    payload = json.loads(stdout)
    assert payload["jobs_ok"] == 6 and payload["timing"]["parallel"]["sessions"] >= 2
    final = _records(out)
    for job_id, record in second.items():  # finished jobs were never run again
        assert final[job_id] == record
    assert any(r["resumed_from_step"] > 0 for r in final.values())

    # The same run, uninterrupted, gives the same numbers for every job.
    code, _, _ = run(*args, "--quiet", "--out", str(tmp_path / "straight"))
    assert code == 0
    straight = _records(tmp_path / "straight")
    assert sorted(straight) == sorted(final)
    keys = ("accuracy", "loss", "train_loss", "per_class_accuracy", "loss_history", "samples")
    for job_id, record in final.items():
        for key in keys:
            assert record[key] == straight[job_id][key], (job_id, key)
        assert len(record["loss_history"]) == 15  # every 2 steps of 30, across sessions
