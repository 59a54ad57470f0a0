"""A partition: which consecutive units of a model each pipeline stage holds.

A partition of ``n`` units into ``k`` stages is the tuple of ``k + 1`` boundaries
``0 = b_0 < b_1 < ... < b_k = n``; stage ``i`` holds units ``b_i .. b_{i+1} - 1``.
It is a small immutable value: plan, print and compare it without starting a process.

    >>> Partition.from_counts((5, 4, 4, 3))
    Partition(boundaries=(0, 5, 9, 13, 16))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parnn.errors import PartitionError

__all__ = ["Partition", "parse_partition_spec"]


@dataclass(frozen=True, slots=True)
class Partition:
    """Stage boundaries over a sequence of cuttable units."""

    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        bounds = tuple(int(b) for b in self.boundaries)
        object.__setattr__(self, "boundaries", bounds)
        text = ", ".join(str(b) for b in bounds)
        if len(bounds) < 2:
            raise PartitionError(
                f"boundaries ({text}) name no stage: give at least two, e.g. (0, n) for one stage"
            )
        if bounds[0] != 0:
            raise PartitionError(
                f"boundaries ({text}) must start at 0, the first unit; e.g. (0, 5, 9, 16)"
            )
        for stage, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
            if stop <= start:
                raise PartitionError(
                    f"stage {stage} is empty: boundaries ({text}) must be strictly increasing; "
                    "try --partition equal-load or --partition auto"
                )

    @classmethod
    def from_counts(cls, counts: Sequence[int]) -> Partition:
        """Build from the number of units per stage, e.g. (5, 4, 4, 3)."""
        if any(int(c) <= 0 for c in counts):
            text = ", ".join(str(c) for c in counts)
            raise PartitionError(
                f"units per stage ({text}) must all be >= 1: every stage needs at least one unit"
            )
        bounds = [0]
        for count in counts:
            bounds.append(bounds[-1] + int(count))
        return cls(tuple(bounds))

    @property
    def num_stages(self) -> int:
        return len(self.boundaries) - 1

    @property
    def num_units(self) -> int:
        return self.boundaries[-1]

    @property
    def counts(self) -> tuple[int, ...]:
        """Units per stage."""
        return tuple(b - a for a, b in zip(self.boundaries, self.boundaries[1:], strict=False))

    @property
    def stage_ranges(self) -> tuple[range, ...]:
        """The unit indices of each stage."""
        return tuple(
            range(a, b) for a, b in zip(self.boundaries, self.boundaries[1:], strict=False)
        )

    def stage_of(self, unit: int) -> int:
        """The stage that holds unit ``unit``."""
        if not 0 <= unit < self.num_units:
            raise PartitionError(f"unit {unit} is out of range 0..{self.num_units - 1}")
        for stage, units in enumerate(self.stage_ranges):
            if unit in units:
                return stage
        raise AssertionError("unreachable: the ranges cover every unit")

    def check_units(self, num_units: int) -> Partition:
        """Check that this partition covers exactly ``num_units`` units; return it."""
        if self.num_units != num_units:
            text = ", ".join(str(b) for b in self.boundaries)
            raise PartitionError(
                f"boundaries ({text}) end at {self.num_units} but the model has {num_units} "
                f"units: the last boundary must be {num_units}"
            )
        return self

    def __str__(self) -> str:
        return "|".join(str(c) for c in self.counts)


def parse_partition_spec(text: str, num_units: int) -> Partition | None:
    """Parse explicit boundaries ('0,5,9,13,16') or per-stage unit counts ('5,4,4,3').

    Returns ``None`` when ``text`` is not a list of integers (it is then a method name).
    Boundaries start at 0 and end at ``num_units``; counts are all >= 1 and sum to it.
    """
    parts = [p.strip() for p in text.replace(" ", "").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return None
    if not values:
        return None
    if values[0] == 0:
        if len(values) < 2:
            raise PartitionError(f"partition {text!r} names no stage")
        partition = Partition(tuple(values))
        return partition.check_units(num_units)
    if sum(values) != num_units:
        raise PartitionError(
            f"partition {text!r}: as unit counts they sum to {sum(values)} but the model has "
            f"{num_units} units; as boundaries they must start at 0 and end at {num_units} "
            f"(e.g. 0,{num_units // 2},{num_units})"
        )
    return Partition.from_counts(values)
