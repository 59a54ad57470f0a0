"""Checkpoints of a pipeline run, one file per stage per saved step, written where the
pipeline is drained (an epoch's end): no micro-batch is in flight and no weight version is
stashed, so a stage's weights, optimizer state, LR schedule and position are the whole
state, and a resumed run ends where an uninterrupted one does.

Layout: ``DIR/stage-<rank>/step-00000123.pt`` (atomic writes; the last two kept). A run
resumes from the newest step every rank has saved, so a crash between two ranks' writes
costs one epoch, never a mixed model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist

from parnn.errors import CheckpointError
from parnn.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

__all__ = ["load_stage_checkpoint", "save_stage_checkpoint"]

_KEEP = 2


def _folder(directory: Path, rank: int) -> Path:
    return Path(directory) / f"stage-{rank}"


def _saved_steps(folder: Path) -> set[int]:
    if not folder.is_dir():
        return set()
    steps = set()
    for entry in folder.glob("step-*.pt"):
        try:
            steps.add(int(entry.stem.split("-")[1]))
        except ValueError:
            continue
    return steps


def save_stage_checkpoint(directory: Path, rank: int, step: int, state: dict[str, Any]) -> Path:
    """Write this rank's ``state`` at ``step`` and keep only the newest two."""
    folder = _folder(directory, rank)
    folder.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(checkpoint_path(folder, step), {"step": step, **state})
    for old in sorted(_saved_steps(folder))[:-_KEEP]:
        checkpoint_path(folder, old).unlink(missing_ok=True)
    return path


def load_stage_checkpoint(
    directory: Path,
    rank: int,
    *,
    settings: dict[str, Any],
    group: dist.ProcessGroup | None = None,
) -> dict[str, Any] | None:
    """This rank's state at the newest step every rank saved (None: nothing to resume; a
    collective, every rank calls it). Refuses a checkpoint of other ``settings``."""
    mine = _saved_steps(_folder(directory, rank))
    everyone: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, sorted(mine), group=group)
    common = set.intersection(*(set(steps) for steps in everyone))
    if not common:
        return None
    state = load_checkpoint(checkpoint_path(_folder(directory, rank), max(common)))
    if state.get("settings") != settings:
        raise CheckpointError(
            f"the checkpoint in {directory} is from other settings ({state.get('settings')}); "
            f"resume with the same ones ({settings}) or give another --checkpoint-dir"
        )
    return state
