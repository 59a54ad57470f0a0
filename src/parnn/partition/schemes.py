"""The named layer-distribution schemes of the nn_pipeline study.

For ``k`` stages over ``n`` units each scheme gives stage ``i`` (0-based) a weight
``w_i``; stage ``i`` gets ``n * w_i / sum(w)`` units rounded by largest remainder, with at
least one unit per stage:

    equal-load   w = 1              front-heavy  w = 2^(k-1-i)   front-load  w = k - i
    middle-load  w = min(i+1, k-i)  end-load     w = i + 1       end-heavy   w = 2^i

``default`` is the plain template split: ``n // k`` units per stage, the remainder on the
last stage (close to end-load).

    >>> scheme_partition("end-heavy", num_units=16, num_stages=4).counts
    (1, 2, 4, 9)
"""

from __future__ import annotations

from collections.abc import Callable

from parnn.errors import PartitionError
from parnn.partition.partition import Partition

__all__ = ["SCHEMES", "scheme_partition", "scheme_weights"]

_WEIGHTS: dict[str, Callable[[int, int], float]] = {
    "equal-load": lambda i, k: 1.0,
    "front-heavy": lambda i, k: 2.0 ** (k - 1 - i),
    "front-load": lambda i, k: float(k - i),
    "middle-load": lambda i, k: float(min(i + 1, k - i)),
    "end-load": lambda i, k: float(i + 1),
    "end-heavy": lambda i, k: 2.0**i,
}

SCHEMES: tuple[str, ...] = (*_WEIGHTS, "default")


def scheme_weights(name: str, num_stages: int) -> list[float]:
    """The weight of each stage under scheme ``name``."""
    if name not in _WEIGHTS:
        raise PartitionError(
            f"scheme {name!r} has no weights; weighted schemes: {', '.join(_WEIGHTS)}"
        )
    return [_WEIGHTS[name](i, num_stages) for i in range(num_stages)]


def _largest_remainder(num_units: int, weights: list[float]) -> list[int]:
    total = sum(weights)
    quotas = [num_units * w / total for w in weights]
    counts = [int(q) for q in quotas]
    # Hand out what flooring left over, largest fractional part first (earlier stage on ties).
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: num_units - sum(counts)]:
        counts[i] += 1
    # At least one unit per stage: take from the stage with the most units (later on ties).
    for i, count in enumerate(counts):
        if count == 0:
            donor = max(range(len(counts)), key=lambda j: (counts[j], j))
            counts[donor] -= 1
            counts[i] = 1
    return counts


def scheme_partition(name: str, *, num_units: int, num_stages: int) -> Partition:
    """The partition that scheme ``name`` gives ``num_units`` units over ``num_stages``."""
    if name not in SCHEMES:
        raise PartitionError(
            f"unknown partition scheme {name!r}; valid schemes: {', '.join(SCHEMES)}"
        )
    if num_stages < 1:
        raise PartitionError(f"num_stages must be >= 1, got {num_stages}")
    if num_stages > num_units:
        raise PartitionError(
            f"{num_stages} stages but the model has only {num_units} units: every stage "
            f"needs at least one unit; use at most {num_units} stages"
        )
    if name == "default":
        base = num_units // num_stages
        counts = [base] * num_stages
        counts[-1] += num_units - base * num_stages
    else:
        counts = _largest_remainder(num_units, scheme_weights(name, num_stages))
    return Partition.from_counts(counts)
