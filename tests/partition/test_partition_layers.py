"""The partition package split by kind: the pure values and solvers import neither torch
nor the measurement (``partition.measure``) nor the presentation (``partition.present``);
the package's public names stay importable from ``parnn.partition``."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import parnn.partition

PURE = (
    "async_schedule",
    "balancers",
    "comm",
    "cost",
    "methods",
    "partition",
    "plan",
    "profile",
    "schedules",
    "schemes",
    "simulate",
    "simulate_async",
    "solver",
    "timeline",
)


def test_the_pure_modules_import_no_torch_no_measurement_no_presentation() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import parnn.partition.{name}\n" for name in PURE)
        + "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or "
        "m.startswith(('parnn.partition.measure', 'parnn.partition.present')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_every_public_name_is_still_importable_from_the_package() -> None:
    for name in parnn.partition.__all__:
        assert getattr(parnn.partition, name) is not None, name
    # Importing the submodule parnn.partition.simulate must not shadow the function.
    importlib.import_module("parnn.partition.simulate")
    from parnn.partition import simulate

    assert callable(simulate)
    assert simulate.__module__ == "parnn.partition.simulate"
