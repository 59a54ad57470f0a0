"""Per-unit profiles at any (batch size, thread count), measured where this machine can and
extrapolated honestly where it cannot.

A profile at ``t`` threads is measured (and cached) when ``t`` is at most the cores this
process may use. Beyond that (planning for a bigger node) each unit's times follow
Amdahl's law fitted to that unit at 1 and at ``T`` threads (``T`` = the largest measured):
``time(t) = time(1) (1 - f + f / t)`` with ``f`` chosen so that ``time(T)`` is as measured,
clipped to ``0 <= f <= 1`` (a unit that did not speed up stays as it was).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from parnn.partition.comm import CommModel
from parnn.partition.profile import ModelProfile

__all__ = ["ProfileSource", "amdahl_fraction", "extrapolate_profile"]


def amdahl_fraction(time_1: float, time_t: float, threads: int) -> float:
    """The parallel fraction ``f`` with ``time_t = time_1 (1 - f + f / threads)``, in [0, 1]."""
    if threads <= 1 or time_1 <= 0:
        return 0.0
    fraction = (1.0 - time_t / time_1) / (1.0 - 1.0 / threads)
    return min(max(fraction, 0.0), 1.0)


def _scaled(one: float, measured: float, measured_threads: int, threads: int) -> float:
    fraction = amdahl_fraction(one, measured, measured_threads)
    return one * (1.0 - fraction + fraction / threads)


def extrapolate_profile(
    one_thread: ModelProfile, measured: ModelProfile, threads: int
) -> ModelProfile:
    """``one_thread``'s units at ``threads`` threads, each time scaled by the Amdahl fit
    between ``one_thread`` and ``measured`` (the same units at ``measured.threads``)."""
    units = []
    for one, many in zip(one_thread.units, measured.units, strict=True):
        t = measured.threads
        units.append(
            replace(
                one,
                forward_s=_scaled(one.forward_s, many.forward_s, t, threads),
                backward_s=_scaled(one.backward_s, many.backward_s, t, threads),
                update_s=_scaled(one.update_s, many.update_s, t, threads),
            )
        )
    extra = {"extrapolated_from_threads": [one_thread.threads, measured.threads]}
    return replace(
        one_thread,
        units=tuple(units),
        threads=threads,
        machine={**one_thread.machine, **extra},
    )


class ProfileSource:
    """``profile(batch_size, threads)`` for one model, memoised; ``measure(batch_size,
    threads)`` does the measuring (or reads the cache) for ``threads <= max_threads``."""

    def __init__(
        self,
        measure: Callable[[int, int], ModelProfile],
        *,
        max_threads: int,
        comm: CommModel | None = None,
    ) -> None:
        self._measure = measure
        self.max_threads = max(1, max_threads)
        self.comm = comm
        self._memo: dict[tuple[int, int], ModelProfile] = {}
        self.extrapolated_threads: set[int] = set()

    def profile(self, batch_size: int, threads: int) -> ModelProfile:
        key = (batch_size, threads)
        if key not in self._memo:
            if threads <= self.max_threads:
                profile = self._measure(batch_size, threads)
            else:
                self.extrapolated_threads.add(threads)
                profile = extrapolate_profile(
                    self.profile(batch_size, 1),
                    self.profile(batch_size, self.max_threads),
                    threads,
                )
            self._memo[key] = profile.with_comm(self.comm)
        return self._memo[key]

    @classmethod
    def cached(
        cls,
        model: str,
        *,
        input_shape: tuple[int, ...],
        max_threads: int,
        cache_dir: Path | None,
        comm: CommModel | None,
        warmup: int,
        repeats: int,
        seed: int = 0,
    ) -> ProfileSource:
        """Profiles of zoo/user model ``model`` through :func:`parnn.partition.load_or_profile`."""
        from parnn.partition.measure.cache import load_or_profile

        def measure(batch_size: int, threads: int) -> ModelProfile:
            return load_or_profile(
                model,
                input_shape=input_shape,
                batch_size=batch_size,
                threads=threads,
                cache_dir=cache_dir,
                warmup=warmup,
                repeats=repeats,
                seed=seed,
            )

        return cls(measure, max_threads=max_threads, comm=comm)
