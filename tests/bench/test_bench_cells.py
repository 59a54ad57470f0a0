from __future__ import annotations

from pathlib import Path

import pytest

from parnn.bench.cells import Cell, StudyStore, cell_id
from parnn.errors import CheckpointError


def _cells() -> list[Cell]:
    return [Cell({"model": "lenet5", "batch_size": b}) for b in (1, 2, 4)]


def test_cell_id_is_stable_and_order_free() -> None:
    assert cell_id({"b": 1, "a": "x"}) == cell_id({"a": "x", "b": 1}) == "a=x|b=1"


def test_every_cell_is_measured_once_and_recorded(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.open("toy", {"repeats": 3})
    measured: list[int] = []

    def measure(cell: Cell) -> dict[str, float]:
        measured.append(cell.key["batch_size"])
        return {"time_s": 0.1 * cell.key["batch_size"]}

    records = store.run(_cells(), measure, quiet=True)
    assert measured == [1, 2, 4]
    assert [r["key"]["batch_size"] for r in records] == [1, 2, 4]
    assert [r["time_s"] for r in records] == pytest.approx([0.1, 0.2, 0.4])
    assert store.header()["machine"]["usable_cores"] >= 1


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.open("toy", {"repeats": 3})
    measured: list[int] = []

    def flaky(cell: Cell) -> dict[str, int]:
        if cell.key["batch_size"] == 4:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third cell
        measured.append(cell.key["batch_size"])
        return {"value": cell.key["batch_size"]}

    with pytest.raises(KeyboardInterrupt):
        store.run(_cells(), flaky, quiet=True)
    assert len(store.records()) == 2

    def steady(cell: Cell) -> dict[str, int]:
        measured.append(cell.key["batch_size"])
        return {"value": cell.key["batch_size"]}

    again = StudyStore(tmp_path)
    again.open("toy", {"repeats": 3})
    records = again.run(_cells(), steady, quiet=True)
    assert measured == [1, 2, 4]  # cells 1 and 2 were not measured twice
    assert [r["value"] for r in records] == [1, 2, 4]


def test_other_settings_in_the_same_directory_are_refused(tmp_path: Path) -> None:
    StudyStore(tmp_path).open("toy", {"repeats": 3, "models": ["a", "b"]})
    before = (tmp_path / "study.json").read_text()
    with pytest.raises(CheckpointError, match=r"repeats 3 -> 5"):
        StudyStore(tmp_path).open("toy", {"repeats": 5, "models": ("a", "b")})
    with pytest.raises(CheckpointError, match=r"kind toy -> other"):
        StudyStore(tmp_path).open("other", {"repeats": 3, "models": ["a", "b"]})
    assert (tmp_path / "study.json").read_text() == before


def test_a_directory_without_a_study_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no study"):
        StudyStore(tmp_path / "nothing").header()


def test_a_study_stored_under_an_old_setting_name_resumes(tmp_path: Path) -> None:
    # written before `study axes --processes` became --ranks (num_processes -> num_ranks)
    StudyStore(tmp_path).open("toy", {"num_processes": 2, "repeats": 3})
    assert StudyStore(tmp_path).header()["settings"] == {"num_ranks": 2, "repeats": 3}
    header = StudyStore(tmp_path).open("toy", {"num_ranks": 2, "repeats": 3})
    assert header["settings"]["num_ranks"] == 2
    with pytest.raises(CheckpointError, match="other settings"):
        StudyStore(tmp_path).open("toy", {"num_ranks": 4, "repeats": 3})
