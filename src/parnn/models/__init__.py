"""The model zoo: every model is an ``nn.Sequential`` of named cuttable units.

Any contiguous run of a model's direct children is a valid pipeline stage: each unit takes
one tensor and returns one. Get a model with :func:`build_model` (a zoo name from
:func:`model_names`, or a user model 'file.py:build' / 'pkg.module:build').
"""

from parnn.models.registry import ModelSpec, build_model, get_model_spec, model_names
from parnn.models.units import count_parameters, unit_names

__all__ = [
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_model_spec",
    "model_names",
    "unit_names",
]
