"""The Partition value, the named schemes and the byte sizes the command line reads."""

from __future__ import annotations

import pytest

from parnn.errors import ConfigError, PartitionError
from parnn.partition import Partition, parse_partition_spec, scheme_partition
from parnn.partition.present.report import format_bytes, parse_bytes


def test_partition_value() -> None:
    partition = Partition.from_counts((5, 4, 4, 3))
    assert partition.boundaries == (0, 5, 9, 13, 16)
    assert partition.num_stages == 4 and partition.num_units == 16
    assert partition.stage_ranges[1] == range(5, 9)
    assert partition.stage_of(9) == 2
    assert str(partition) == "5|4|4|3"
    with pytest.raises(PartitionError, match="stage 1 is empty"):
        Partition((0, 4, 4, 9))
    with pytest.raises(PartitionError, match="must start at 0"):
        Partition((1, 4))
    with pytest.raises(PartitionError, match="last boundary must be 10"):
        Partition((0, 4, 9)).check_units(10)


def test_parse_partition_spec() -> None:
    assert parse_partition_spec("0,5,9,16", 16) == Partition((0, 5, 9, 16))
    assert parse_partition_spec("5,4,7", 16) == Partition((0, 5, 9, 16))
    assert parse_partition_spec("auto", 16) is None
    with pytest.raises(PartitionError, match="sum to 15"):
        parse_partition_spec("5,4,6", 16)


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("equal-load", (4, 4, 4, 4)),
        ("front-heavy", (9, 4, 2, 1)),
        ("front-load", (6, 5, 3, 2)),
        ("middle-load", (3, 5, 5, 3)),
        ("end-load", (2, 3, 5, 6)),
        ("end-heavy", (1, 2, 4, 9)),
        ("default", (4, 4, 4, 4)),
    ],
)
def test_schemes_of_the_nn_pipeline_study(name: str, counts: tuple[int, ...]) -> None:
    assert scheme_partition(name, num_units=16, num_stages=4).counts == counts


def test_every_scheme_keeps_a_unit_per_stage() -> None:
    for name in ("front-heavy", "end-heavy"):
        assert min(scheme_partition(name, num_units=8, num_stages=8).counts) == 1
    with pytest.raises(PartitionError, match="at most 5 stages"):
        scheme_partition("end-heavy", num_units=5, num_stages=6)


def test_byte_sizes() -> None:
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes("1.5g") == int(1.5 * 2**30)
    assert parse_bytes("4096") == 4096
    assert format_bytes(3 * 2**20) == "3.0 MiB"
    for bad in ("-1MB", "lots", "5TB"):
        with pytest.raises(ConfigError, match="bad memory size"):
            parse_bytes(bad)
