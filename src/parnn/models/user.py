"""User models: 'path/to/file.py:build' or 'package.module:build' -> an nn.Sequential.

The callable gets ``input_shape`` and ``num_classes`` as keywords when its signature takes
them, and must return an ``nn.Sequential`` (or an instance of a subclass): parnn cuts a
model between its direct children, which is only sound when they run one after another.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from parnn.errors import ModelError

__all__ = ["build_user_model", "check_forward", "is_user_spec", "load_user_callable"]


def is_user_spec(name: str) -> bool:
    """True for 'file.py:build' or 'pkg.module:build', False for a zoo name."""
    return ":" in name


def _split(spec: str) -> tuple[str, str]:
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute.isidentifier():
        raise ModelError(
            f"bad user model {spec!r}: write 'path/to/file.py:build' or 'package.module:build', "
            "where build is a function returning an nn.Sequential"
        )
    return where, attribute


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _load_file(spec: str, where: str) -> ModuleType:
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ModelError(
            f"user model {spec!r}: file {where} does not exist; give the path of a Python file, "
            "e.g. models/mine.py:build"
        )
    # A stable module name per file, registered in sys.modules so that classes defined in the
    # file can be pickled within this process. Other processes must rebuild from the spec.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"parnn_user_model_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError(f"user model {spec!r}: cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ModelError(
            f"user model {spec!r}: importing {path} failed: {type(error).__name__}: {error}"
        ) from error
    return module


def _load_module(spec: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        raise ModelError(
            f"user model {spec!r}: no module named {error.name!r}; install the package or "
            "give a file path such as path/to/file.py:build"
        ) from error
    except Exception as error:
        raise ModelError(
            f"user model {spec!r}: importing {where} failed: {type(error).__name__}: {error}"
        ) from error


def load_user_callable(spec: str) -> Callable[..., Any]:
    """The callable named by 'file.py:build' or 'pkg.module:build' (ModelError otherwise)."""
    where, attribute = _split(spec)
    module = _load_file(spec, where) if _is_file(where) else _load_module(spec, where)
    try:
        function = getattr(module, attribute)
    except AttributeError:
        raise ModelError(
            f"user model {spec!r}: {where} has no attribute {attribute!r}; define "
            f"`def {attribute}(input_shape, num_classes): return nn.Sequential(...)` there"
        ) from None
    if not callable(function):
        raise ModelError(
            f"user model {spec!r}: {where}:{attribute} is a {type(function).__name__}, "
            "not a function; it must be a callable that returns an nn.Sequential"
        )
    return function


def _keywords(
    spec: str,
    function: Callable[..., Any],
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
) -> dict[str, Any]:
    """The keywords among input_shape/num_classes that ``function`` accepts (None = not given)."""
    given = {"input_shape": input_shape, "num_classes": num_classes}
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        parameters = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [
        key
        for key in given
        if takes_any
        or (
            key in parameters
            and parameters[key].kind
            in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        )
    ]
    missing = [
        key
        for key in accepted
        if given[key] is None
        and key in parameters
        and parameters[key].default is inspect.Parameter.empty
    ]
    if missing:
        flags = {"input_shape": "--input CxHxW", "num_classes": "--classes N"}
        raise ModelError(
            f"user model {spec!r} needs {' and '.join(missing)} but none was given; pass "
            f"{' and '.join(flags[key] for key in missing)} (the data usually sets them), or "
            "give the parameter a default"
        )
    ignored = [key for key, value in given.items() if value is not None and key not in accepted]
    if ignored:
        warnings.warn(
            f"user model {spec!r} does not take {' or '.join(ignored)}; building it without "
            "them (add the parameters to the function to adapt the model to the data)",
            stacklevel=3,
        )
    return {key: value for key, value in given.items() if key in accepted and value is not None}


def build_user_model(
    spec: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
) -> nn.Sequential:
    """Call the user's builder and check that it returned a usable nn.Sequential."""
    function = load_user_callable(spec)
    kwargs = _keywords(spec, function, input_shape, num_classes)
    try:
        model = function(**kwargs)
    except Exception as error:
        raise ModelError(f"user model {spec!r} raised {type(error).__name__}: {error}") from error
    if isinstance(model, nn.Sequential):
        if len(model) == 0:
            raise ModelError(
                f"user model {spec!r} returned an empty nn.Sequential; it needs at least one unit"
            )
        if input_shape is not None:
            check_forward(spec, model, input_shape, num_classes)
        return model
    if isinstance(model, nn.Module):
        raise ModelError(
            f"user model {spec!r} returned {type(model).__name__} (an nn.Module with its own "
            "forward); parnn needs an nn.Sequential whose children run in order, so that any "
            "contiguous cut is a pipeline stage: return nn.Sequential(...) of its layers"
        )
    raise ModelError(
        f"user model {spec!r} returned {type(model).__name__}, not a model; return an "
        "nn.Sequential whose children run in order"
    )


PROBE_BATCH = 2
"""Samples in the forward pass that checks a user model before any process starts."""


def check_forward(
    spec: str,
    model: nn.Sequential,
    input_shape: tuple[int, ...],
    num_classes: int | None = None,
) -> None:
    """Run ``model`` unit by unit on a batch of :data:`PROBE_BATCH` zeros of ``input_shape``
    (eval mode, no grad; buffers untouched) and raise a one-line :class:`ModelError` naming
    the unit that fails, its input shape and torch's message, or an output that is not
    ``(batch, num_classes)`` logits. Cheap: one tiny forward, before any process starts."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    modes = {module: module.training for module in model.modules()}
    x = torch.zeros((PROBE_BATCH, *input_shape), device=device, dtype=dtype)
    try:
        model.eval()
        with torch.no_grad():
            for index, (name, unit) in enumerate(model.named_children()):
                shape = tuple(x.shape)
                try:
                    x = unit(x)
                except Exception as error:  # noqa: BLE001 - any failure is the model's
                    text = " ".join(str(error).split()) or type(error).__name__
                    raise ModelError(
                        f"user model {spec!r} fails in forward at unit {index} {name!r} "
                        f"({type(unit).__name__}) on input of shape {shape} (batch "
                        f"{PROBE_BATCH}, input {tuple(input_shape)}): {type(error).__name__}: "
                        f"{text}; fix that unit, or give the input shape with --input CxHxW"
                    ) from None
                if not isinstance(x, torch.Tensor):
                    raise ModelError(
                        f"user model {spec!r}: unit {index} {name!r} ({type(unit).__name__}) "
                        f"returned {type(x).__name__}, not a tensor; every unit must map one "
                        "tensor to one tensor"
                    )
    finally:
        for module, training in modes.items():
            module.training = training
    expected = (PROBE_BATCH, num_classes) if num_classes is not None else None
    if expected is not None and tuple(x.shape) != expected:
        raise ModelError(
            f"user model {spec!r} outputs shape {tuple(x.shape)} for a batch of {PROBE_BATCH} "
            f"inputs of shape {tuple(input_shape)}, but training needs logits of shape "
            f"{expected} ({num_classes} classes); make the last unit output {num_classes} "
            "values per sample"
        )
