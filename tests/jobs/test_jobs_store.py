"""A run directory is resumed only with its own settings; anything else is refused with a
one-line message that names what differs, and nothing in the directory changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from parnn.errors import CheckpointError
from parnn.jobs.spec import JobResult
from parnn.jobs.store import RunStore, settings_differences

SETTINGS = {"folds": 5, "models": ["lenet5", "mlp"], "data": {"name": "digits", "sha1": "ab"}}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_differences_name_each_setting_old_and_new() -> None:
    wanted = {**SETTINGS, "folds": 3, "data": {"name": "mnist", "sha1": "ab"}}
    assert settings_differences(SETTINGS, wanted) == ["data.name digits -> mnist", "folds 5 -> 3"]
    assert settings_differences(SETTINGS, dict(SETTINGS)) == []


def test_fresh_run_then_resume_counts_sessions(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    assert store.open(SETTINGS, resume=False) == 0
    store.append(
        JobResult(
            job_id="mlp/cosine/fold0",
            model="mlp",
            lr_schedule="cosine",
            fold=0,
            mode="parallel",
            status="ok",
            seed=1,
            accuracy=0.5,
        )
    )
    store.append_session({"session": 0, "mode": "parallel", "wall_s": 1.0})
    assert store.open(SETTINGS, resume=True) == 1
    assert list(store.finished("parallel")) == ["mlp/cosine/fold0"]
    assert store.finished("serial") == {}


def test_existing_run_without_resume_is_refused_untouched(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open(SETTINGS, resume=False)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="already holds a k-fold run.*--resume"):
        store.open(SETTINGS, resume=False)
    assert _snapshot(tmp_path) == before


def test_resume_with_other_settings_names_them_and_changes_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open(SETTINGS, resume=False)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        store.open({**SETTINGS, "folds": 3, "models": ["mlp"]}, resume=True)
    message = str(caught.value)
    assert "folds 5 -> 3" in message and "models lenet5,mlp -> mlp" in message
    assert "\n" not in message
    assert _snapshot(tmp_path) == before


def test_resume_of_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        RunStore(tmp_path / "empty").open(SETTINGS, resume=True)
    assert not (tmp_path / "empty").exists()


def test_a_torn_last_record_is_skipped(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open(SETTINGS, resume=False)
    record = JobResult(
        job_id="a", model="m", lr_schedule="s", fold=0, mode="parallel", status="ok", seed=0
    )
    store.append(record)
    with open(tmp_path / "jobs.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"job_id": "b", "mod')  # killed mid-write
    assert [r.job_id for r in store.records()] == ["a"]
