"""--out checks: another process's write probe in the directory (two launcher agents
checking one --out at once) is not an earlier run; a real earlier file is."""

from __future__ import annotations

from pathlib import Path

import pytest

from parnn.errors import ConfigError
from parnn.outdir import check_out_dir


def test_another_process_probe_is_not_an_earlier_run(tmp_path: Path) -> None:
    (tmp_path / ".parnn-write-probe-12345").write_text("")
    assert check_out_dir(tmp_path) == tmp_path


def test_an_earlier_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"already holds an earlier run \(result.json\)"):
        check_out_dir(tmp_path)
