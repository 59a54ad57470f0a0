"""Profiles and communication models on disk, so that a model is measured once.

A profile file is named by everything that changes the numbers: the model, the input
shape, the batch size, the thread count and the torch version, e.g.
``profile-vgg16-3x64x64-b32-t1-torch2.13.0+cpu.json``. The communication model of the
machine sits beside it (``comm-gloo-t1-torch2.13.0+cpu.json``) and is copied into every
profile it prices. ``refresh=True`` measures again and overwrites.

    >>> profile_file_name("vgg16", (3, 64, 64), batch_size=32, threads=1, torch_version="2.13.0")
    'profile-vgg16-3x64x64-b32-t1-torch2.13.0.json'
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from parnn.errors import ConfigError
from parnn.partition.comm import CommModel
from parnn.partition.measure.comm import measure_comm_model
from parnn.partition.measure.profiler import PROFILE_MIN_SECONDS, make_batch, measure_units
from parnn.partition.profile import PROFILE_FORMAT, ModelProfile
from parnn.progress import progress_bar
from parnn.results import machine_facts, read_json, write_json

__all__ = [
    "comm_file_name",
    "default_cache_dir",
    "load_or_measure_comm",
    "load_or_profile",
    "model_fingerprint",
    "profile_file_name",
    "profile_model",
]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/parnn`` (``~/.cache/parnn`` when unset): where the CLI caches."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parnn"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", text).strip("_") or "model"


def model_fingerprint(model: nn.Module) -> str:
    """A stable name for an unnamed model: its structure and parameter shapes, hashed."""
    digest = hashlib.sha1(repr(model).encode())
    for name, parameter in model.named_parameters():
        digest.update(f"{name}:{tuple(parameter.shape)}".encode())
    return f"module-{digest.hexdigest()[:12]}"


def profile_file_name(
    model: str,
    input_shape: Sequence[int],
    *,
    batch_size: int,
    threads: int,
    torch_version: str | None = None,
    num_classes: int | None = None,
) -> str:
    version = torch_version if torch_version is not None else str(torch.__version__)
    shape = "x".join(str(s) for s in input_shape)
    classes = "" if num_classes is None else f"-c{num_classes}"
    return (
        f"profile-{_slug(model)}-{shape}{classes}-b{batch_size}-t{threads}"
        f"-torch{_slug(version)}.json"
    )


def comm_file_name(
    *, backend: str, threads: int, torch_version: str | None = None, transport: str = "gloo"
) -> str:
    version = torch_version if torch_version is not None else str(torch.__version__)
    path = "" if transport == "gloo" else f"-{_slug(transport)}"  # gloo: the old name
    return f"comm-{_slug(backend)}{path}-t{threads}-torch{_slug(version)}.json"


def profile_model(
    model: nn.Sequential,
    *,
    name: str,
    input_shape: Sequence[int],
    batch_size: int,
    threads: int = 1,
    warmup: int = 2,
    repeats: int = 7,
    seed: int = 0,
    comm: CommModel | None = None,
    quiet: bool = True,
    min_seconds: float = PROFILE_MIN_SECONDS,
) -> ModelProfile:
    """Measure every unit of ``model`` at ``batch_size`` with ``threads`` intra-op threads
    (at least ``repeats`` timed passes lasting ``min_seconds`` together)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    shape = tuple(int(s) for s in input_shape)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        probe, _ = make_batch(shape, 2, 1, seed=seed)
        model.eval()  # batch norm in training mode refuses a single value per channel
        with torch.no_grad():
            num_classes = int(model(probe).shape[-1])  # (2, classes)
        inputs, targets = make_batch(shape, batch_size, num_classes, seed=seed)
        description = f"profile {name} b={batch_size}"
        with progress_bar(warmup + repeats, description, quiet=quiet) as bar:
            passes = 0

            def on_pass() -> None:
                nonlocal passes
                passes += 1
                bar.advance(1)

            units = measure_units(
                model,
                inputs,
                targets,
                warmup=warmup,
                repeats=repeats,
                min_seconds=min_seconds,
                on_pass=on_pass,
            )
        facts = machine_facts()
    finally:
        torch.set_num_threads(previous_threads)
    return ModelProfile(
        model=name,
        input_shape=shape,
        batch_size=batch_size,
        units=units,
        threads=threads,
        comm=comm,
        input_bytes=inputs.numel() * inputs.element_size(),
        warmup=warmup,
        repeats=passes - warmup,  # the timed passes taken (at least ``repeats``)
        machine=facts,
    )


def _read_profile(path: Path) -> ModelProfile | None:
    try:
        payload = read_json(path)
        if payload.get("format") != PROFILE_FORMAT:
            return None
        return ModelProfile.from_dict(payload)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another layout: measure again


def load_or_measure_comm(
    cache_dir: str | Path | None,
    *,
    backend: str = "gloo",
    transport: str = "gloo",
    threads: int = 1,
    refresh: bool = False,
) -> CommModel:
    """The cached communication model of this machine over ``transport`` ('gloo', 'shm',
    'auto'), measured when absent or refreshed."""
    from parnn.transport import local_transport

    transport = local_transport(transport)
    path = (
        None
        if cache_dir is None
        else Path(cache_dir) / comm_file_name(backend=backend, threads=threads, transport=transport)
    )
    if path is not None and path.exists() and not refresh:
        try:
            return CommModel.from_dict(read_json(path))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    comm = measure_comm_model(backend=backend, transport=transport, threads=threads)
    if path is not None:
        write_json(path, comm.to_dict())
    return comm


def load_or_profile(
    model: str | nn.Sequential,
    *,
    input_shape: Sequence[int] | None,
    batch_size: int,
    num_classes: int | None = None,
    threads: int = 1,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    comm: CommModel | None = None,
    warmup: int = 2,
    repeats: int = 7,
    seed: int = 0,
    quiet: bool = True,
) -> ModelProfile:
    """The profile of ``model`` at ``batch_size``: from ``cache_dir`` when there, else measured
    (and stored there). ``model`` is a zoo name / user spec (built with ``seed``) or a built
    nn.Sequential (then ``input_shape`` is required; a copy is profiled). ``num_classes``
    sizes a zoo model's head (default: the model's reference head); it is part of the key. ``comm`` replaces the profile's
    communication model (it is not part of the cache key)."""
    if isinstance(model, str):
        from parnn.models import build_model, get_model_spec
        from parnn.models.user import is_user_spec

        name = model
        if input_shape is None and not is_user_spec(model):
            input_shape = get_model_spec(model).default_input_shape
        module: nn.Sequential | None = None
    else:
        name = model_fingerprint(model)
        module = copy.deepcopy(model)  # profiling trains it: leave the caller's model alone
    if input_shape is None:
        raise ConfigError(f"profiling {name!r} needs an input shape, e.g. --input 3x32x32")
    shape = tuple(int(s) for s in input_shape)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / profile_file_name(
            name, shape, batch_size=batch_size, threads=threads, num_classes=num_classes
        )
    if path is not None and path.exists() and not refresh:
        cached = _read_profile(path)
        if cached is not None and cached.model == name and cached.input_shape == shape:
            return cached if comm is None else replace(cached, comm=comm)
    if module is None:
        from parnn.models import build_model

        torch.manual_seed(seed)
        module = build_model(name, input_shape=shape, num_classes=num_classes)
    profile = profile_model(
        module,
        name=name,
        input_shape=shape,
        batch_size=batch_size,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        seed=seed,
        comm=comm,
        quiet=quiet,
    )
    if path is not None:
        write_json(path, profile.to_dict())
    return profile
