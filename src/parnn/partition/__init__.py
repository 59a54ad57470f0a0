"""Partitions of a model into pipeline stages: the value, the named schemes, and (in the
modules beside these) the profiler, cost model, balancers, optimal solver and simulator."""

from parnn.partition.partition import Partition, parse_partition_spec
from parnn.partition.schemes import SCHEMES, scheme_partition

__all__ = ["SCHEMES", "Partition", "parse_partition_spec", "scheme_partition"]
