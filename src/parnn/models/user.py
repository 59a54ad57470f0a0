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

from torch import nn

from parnn.errors import ModelError

__all__ = ["build_user_model", "is_user_spec", "load_user_callable"]


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
