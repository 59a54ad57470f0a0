"""Bad input to every command: exit code 2, exactly one ``parnn: error:`` line on stderr,
no traceback, and no file created or changed (table-driven, in process with CliRunner).

Each case is refused before any process starts; most before torch does any work.
Placeholders in the arguments: {file} an existing regular file, {full} a directory holding
an earlier run, {empty} an existing empty directory, {missing} a path that does not exist,
{wrong} a user model whose forward fails (a Linear of the wrong width), {mnist} a directory
of MNIST IDX files holding 100 images.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from parnn.cli import cli

WRONG_MODEL = """from torch import nn


def build(input_shape=(1, 28, 28), num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(5, num_classes))
"""

# (case id, arguments, a word the one error line must contain)
CASES: list[tuple[str, str, str]] = [
    # the program itself
    ("unknown-flag", "--bogus", "--bogus"),
    ("unknown-command", "nosuch", "choose one of"),
    # train
    ("train-unknown-flag", "train --bogus-flag", "--bogus-flag"),
    ("train-batch-not-int", "train --batch-size abc", "--batch-size"),
    ("train-batch-zero", "train --batch-size 0", "batch"),
    ("train-batch-too-big", "train --batch-size 100000 --steps 1", "largest valid value"),
    ("train-epochs-zero", "train --epochs 0", "epochs"),
    ("train-steps-negative", "train --steps -1", "steps"),
    ("train-lr-negative", "train --lr -1 --steps 1", "lr"),
    ("train-optimizer", "train --optimizer nosuch", "nosuch"),
    ("train-lr-schedule", "train --schedule nosuch", "nosuch"),
    ("train-model", "train --model nosuch", "lenet5"),
    ("train-data", "train --data nosuch", "digits"),
    ("train-mnist-no-dir", "train --data mnist", "--data-dir"),
    ("train-mnist-missing-dir", "train --data mnist --data-dir {missing}", "mnist"),
    ("train-input-text", "train --input abc", "abc"),
    ("train-input-zero", "train --input 0x28x28", "0x28x28"),
    ("train-model-forward", "train --model {wrong}:build --steps 1", "fails in forward"),
    ("train-model-file-missing", "train --model {missing}.py:build", "build"),
    ("train-out-file", "train --out {file} --steps 1", "not a directory"),
    ("train-out-unwritable", "train --out /proc/1/parnn-x --steps 1", "cannot"),
    ("train-out-earlier-run", "train --out {full} --steps 1", "--overwrite"),
    ("train-checkpoint-no-out", "train --checkpoint-every 5 --steps 1", "--out"),
    ("train-resume-no-out", "train --resume --steps 1", "--out"),
    ("train-threads-zero", "train --threads 0", "threads"),
    # pipeline
    ("pipeline-stages-no-value", "pipeline --stages", "--stages"),
    ("pipeline-stages-text", "pipeline --stages abc", "--stages"),
    ("pipeline-stages-zero", "pipeline --stages 0", "stages"),
    ("pipeline-stages-too-many", "pipeline --stages 99 --steps 1", "stages"),
    ("pipeline-schedule", "pipeline --schedule nosuch", "nosuch"),
    ("pipeline-optimizer", "pipeline --optimizer nosuch", "nosuch"),
    ("pipeline-interleaved-1", "pipeline --schedule interleaved-1f1b --stages-per-rank 1", "2"),
    ("pipeline-partition", "pipeline --partition nosuch", "nosuch"),
    ("pipeline-microbatches-zero", "pipeline --microbatches 0", "microbatches"),
    ("pipeline-1f1b-few-microbatches", "pipeline --schedule 1f1b --microbatches 1", "1f1b"),
    ("pipeline-lr-schedule", "pipeline --lr-schedule nosuch", "nosuch"),
    ("pipeline-out-file", "pipeline --out {file} --steps 1", "not a directory"),
    ("pipeline-out-earlier-run", "pipeline --out {full} --steps 1", "--overwrite"),
    ("pipeline-model-forward", "pipeline --model {wrong}:build --steps 1", "fails in forward"),
    # dp
    ("dp-engine", "dp --engine nosuch", "nosuch"),
    ("dp-engine-and-compare", "dp --engine ddp --compare serial,ddp", "--compare"),
    ("dp-compare", "dp --compare nosuch", "nosuch"),
    ("dp-processes-zero", "dp --processes 0", "0"),
    ("dp-batch-too-big", "dp --batch-size 100000 --steps 1", "largest valid value"),
    ("pipeline-batch-too-big", "pipeline --batch-size 100000 --steps 1", "largest valid value"),
    (
        "pipeline-mnist-batch-too-big",
        "pipeline --data mnist --data-dir {mnist} --batch-size 96 --steps 1",
        "80 training samples",
    ),
    ("dp-hogwild-batch-too-big", "dp --engine hogwild --batch-size 1000", "719"),
    ("dp-val-fraction", "dp --val-fraction 2", "2"),
    ("dp-processes-text", "dp --processes abc", "--processes"),
    ("dp-out-file", "dp --out {file} --steps 1", "not a directory"),
    ("dp-out-earlier-run", "dp --out {full} --steps 1", "--overwrite"),
    ("dp-model-forward", "dp --model {wrong}:build --steps 1", "fails in forward"),
    # kfold ({empty}: nothing new is created by a refused run)
    ("kfold-folds-one", "kfold --folds 1 --out {empty}", "folds"),
    ("kfold-models", "kfold --models nosuch --out {empty}", "nosuch"),
    ("kfold-schedulers", "kfold --schedulers nosuch --out {empty}", "nosuch"),
    ("kfold-workers-text", "kfold --workers abc --out {empty}", "abc"),
    ("kfold-resume-no-out", "kfold --resume", "--out"),
    ("kfold-resume-nothing", "kfold --resume --out {empty} --steps 1", "resume"),
    ("kfold-out-file", "kfold --out {file}", "not a directory"),
    ("kfold-out-earlier-run", "kfold --out {full}", "--resume"),
    ("kfold-batch-zero", "kfold --batch-size 0 --out {empty}", "batch"),
    ("kfold-batch-too-big", "kfold --batch-size 5000 --out {empty}", "largest valid value"),
    ("kfold-model-flag", "kfold --model lenet5", "--models"),
    # partition, profile, simulate
    ("partition-stages-zero", "partition --stages 0", "stages"),
    ("partition-method", "partition --method nosuch", "nosuch"),
    ("partition-comm", "partition --comm x", "measure"),
    ("partition-out-file", "partition --out {file}", "not a directory"),
    ("profile-batch-zero", "profile --batch-size 0", "batch"),
    ("profile-model", "profile --model nosuch", "lenet5"),
    ("profile-out-earlier-run", "profile --out {full}", "--overwrite"),
    ("profile-input", "profile --input 3xabc", "3xabc"),
    ("simulate-schedule", "simulate --schedule nosuch", "gpipe"),
    ("simulate-out-file", "simulate --out {file}", "not a directory"),
    # models, report
    ("models-name", "models nosuch", "nosuch"),
    ("models-input", "models lenet5 --input abc", "abc"),
    ("report-no-dir", "report", "RESULTS_DIR"),
    ("report-missing-dir", "report {missing}", "missing"),
    # study
    ("study-command", "study nosuch", "choose one of"),
    ("study-schemes-out-file", "study schemes --out {file}", "not a directory"),
    ("study-axes-out-earlier-run", "study axes --out {full}", "--overwrite"),
    ("study-batch-sizes", "study batch-scaling --batch-sizes abc", "abc"),
    ("study-microbatches-flag", "study microbatches --bogus", "--bogus"),
    ("study-scaling-out-file", "study scaling --out {file}", "not a directory"),
    ("study-pipedream-out-earlier-run", "study pipedream --out {full}", "--overwrite"),
    ("plan-unknown-flag", "plan --bogus", "--bogus"),
    ("plan-model", "plan --model nosuch", "lenet5"),
    # demo
    ("demo-out-file", "demo --out {file}", "not a directory"),
    ("demo-out-earlier-run", "demo --out {full}", "--overwrite"),
    ("demo-epochs-zero", "demo --epochs 0 --out {empty}", "epochs"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: a file with its size and modification time (ns), a
    directory with None (checking ``--out`` writes and deletes a probe file in it, which
    changes the directory's own time, not its contents)."""
    found: dict[str, tuple[int, int] | None] = {}
    for directory, names, files in os.walk(root):
        for name in names:
            found[str((Path(directory) / name).relative_to(root))] = None
        for name in files:
            path = Path(directory) / name
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # default output directories would land here
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "result.json").write_text("{}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "wrong.py").write_text(WRONG_MODEL)
    (tmp_path / "mnist").mkdir()  # IDX files: magic, count (and rows, columns), then bytes
    header = (2051).to_bytes(4, "big") + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(header + bytes(100 * 28 * 28))
    labels = (2049).to_bytes(4, "big") + (100).to_bytes(4, "big") + bytes(100)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(labels)
    return {
        "mnist": str(tmp_path / "mnist"),
        "file": str(tmp_path / "a-file"),
        "full": str(tmp_path / "full"),
        "empty": str(tmp_path / "empty"),
        "missing": str(tmp_path / "missing"),
        "wrong": str(tmp_path / "wrong.py"),
    }


def test_the_sweep_is_wide() -> None:
    commands = {args.split()[0] for _, args, _ in CASES}
    assert len(CASES) >= 60
    assert {"train", "pipeline", "dp", "kfold", "partition", "profile", "simulate"} <= commands
    assert {"models", "report", "study", "demo"} <= commands
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(
    args: str, word: str, workspace: dict[str, str], tmp_path: Path
) -> None:
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(cli, args.format(**workspace).split(), catch_exceptions=False)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("parnn: error: "), result.stderr
    assert "Traceback" not in result.output
    assert word.format(**workspace).lower() in lines[0].lower(), lines[0]
    assert _snapshot(tmp_path) == before
