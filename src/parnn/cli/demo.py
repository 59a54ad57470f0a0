"""``parnn demo``: the headline job on embedded data, in well under a minute on 2 cores.

Trains LeNet-5 on the digits bundled with scikit-learn (resized to 1x28x28) with the
reference trainer, then prints a results table and the path of a plot (training loss per
step, validation accuracy per epoch). Everything it reports is also written under --out:
``result.json``, ``metrics.jsonl`` and ``training.png``.

``--json`` prints one object with the keys of ``parnn train --json`` (``command`` is
``"demo"``) plus ``plot_path``.
"""

from __future__ import annotations

from pathlib import Path

import click

from parnn.cli._options import emit, json_option, quiet_option, seed_option
from parnn.cli.train import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_SCHEDULE,
    render_result,
    result_payload,
)
from parnn.progress import stdout_console
from parnn.train import OptimizerConfig, TrainConfig, train
from parnn.train.plot import plot_training
from parnn.train.setup import setup_training

__all__ = ["COMMANDS", "demo_command"]

DEMO_MODEL = "lenet5"
DEMO_DATA = "digits"
PLOT_FILE = "training.png"


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Directory for results (JSON), metrics and the plot.",
)
@seed_option
@json_option
@quiet_option
def demo_command(out: Path, seed: int, as_json: bool, quiet: bool) -> None:
    """Train LeNet-5 on the bundled digits; print the results and save a plot."""
    setup = setup_training(DEMO_MODEL, DEMO_DATA, seed=seed)
    config = TrainConfig(
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        optimizer=OptimizerConfig(name=DEFAULT_OPTIMIZER, lr=DEFAULT_LR[DEFAULT_OPTIMIZER]),
        schedule=DEFAULT_SCHEDULE,
        seed=seed,
        threads=1,
    )
    result = train(setup.model, setup.train_data, setup.val_data, config, out_dir=out, quiet=quiet)
    plot_path = plot_training(
        result,
        out / PLOT_FILE,
        title=f"{DEMO_MODEL} on {DEMO_DATA}: reference trainer, 1 process",
    )
    payload = {**result_payload(setup, result), "command": "demo", "plot_path": str(plot_path)}

    def render() -> None:
        render_result(payload, title="parnn demo: LeNet-5 on digits, reference trainer")
        stdout_console.print(f"plot: {plot_path}", soft_wrap=True)

    emit(payload, as_json=as_json, render=render)


COMMANDS = [demo_command]
