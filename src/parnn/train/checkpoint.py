"""Checkpoints: one file per saved step, written atomically (temp file + rename).

A checkpoint holds the model, optimizer and scheduler states, the position in the data
order (epoch and batch index; the order itself is derived from seed and epoch), the global
RNG state (for dropout), and the history so far. A reader never sees half a file.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from parnn.errors import CheckpointError
from parnn.results import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint_path",
    "latest_checkpoint",
    "prune_checkpoints",
    "load_checkpoint",
    "restore_training_state",
    "save_checkpoint",
    "training_state",
]

CHECKPOINT_FORMAT = "parnn-checkpoint-1"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """``directory/step-00000123.pt``."""
    return Path(directory) / f"step-{step:08d}.pt"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises CheckpointError when the file is missing, truncated, corrupt or not a parnn
    checkpoint. Loads with ``weights_only=True``: a checkpoint cannot run code.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist: check the path or --out")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        detail = " ".join(str(error).split())[:160]
        raise CheckpointError(
            f"checkpoint {source} is corrupt or truncated ({type(error).__name__}: {detail}); "
            "delete it to resume from an earlier one, or start again without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{source} is not a parnn checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    return state


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint of the highest step in ``directory``, or None when there is none."""
    folder = Path(directory)
    if not folder.is_dir():
        return None
    steps = [
        (int(match.group(1)), entry)
        for entry in folder.iterdir()
        if (match := _NAME.match(entry.name)) is not None
    ]
    return max(steps)[1] if steps else None


def prune_checkpoints(directory: str | os.PathLike[str], *, keep: int) -> None:
    """Delete all but the ``keep`` latest checkpoints in ``directory``."""
    folder = Path(directory)
    steps = sorted(
        (int(match.group(1)), entry)
        for entry in folder.iterdir()
        if (match := _NAME.match(entry.name)) is not None
    )
    for _, entry in steps[:-keep] if keep > 0 else steps:
        entry.unlink(missing_ok=True)


def training_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """What a run resumes from besides its position: the model, optimizer and LR schedule
    states and the global RNG state (dropout)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng_state": torch.get_rng_state(),
    }


def restore_training_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """Load what :func:`training_state` saved (raises KeyError, RuntimeError, ValueError or
    TypeError when it does not fit)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng_state"])
