"""The picture of a run: training loss per step and validation accuracy per epoch (PNG)."""

from __future__ import annotations

import os
from pathlib import Path

from parnn.train.records import TrainResult

__all__ = ["plot_training"]


def plot_training(result: TrainResult, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Save a two-panel PNG of ``result`` to ``path`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    try:
        steps = [record.step for record in result.step_log]
        loss_axes.plot(steps, [record.loss for record in result.step_log], lw=1, label="mini-batch")
        epochs = list(result.history)
        loss_axes.plot(
            [record.step for record in epochs],
            [record.train_loss for record in epochs],
            "o-",
            label="epoch mean",
        )
        loss_axes.set(xlabel="optimizer step", ylabel="training loss (cross-entropy)")
        loss_axes.set_yscale("log")
        loss_axes.legend()
        loss_axes.grid(alpha=0.3)

        validated = [record for record in epochs if record.val is not None]
        accuracy_axes.plot(
            [record.step / max(1, _steps_per_epoch(result)) for record in validated],
            [100 * record.val.accuracy for record in validated if record.val is not None],
            "o-",
            color="tab:green",
        )
        accuracy_axes.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(0, 100))
        accuracy_axes.grid(alpha=0.3)
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(target, format="png")
    finally:
        plt.close(figure)
    return target


def _steps_per_epoch(result: TrainResult) -> int:
    complete = [record for record in result.history if record.complete]
    return complete[0].step if complete else result.steps
