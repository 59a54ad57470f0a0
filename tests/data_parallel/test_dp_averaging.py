"""Local SGD's averaging on one flat buffer: the replica's parameters and float buffers
become views of it (values unchanged, the optimizer steps them), and averaging it in place
gives what packing every tensor and unpacking the mean gives."""

from __future__ import annotations

import copy

import torch
from torch import nn

from parnn.data_parallel.averaging import average_replicas, flatten_replica_


class OtherRank:
    """A two-rank transport whose peer holds ``other`` (flat, packed like this replica)."""

    world_size = 2

    def __init__(self, other: torch.Tensor) -> None:
        self.other = other

    def allreduce_sum_(self, flat: torch.Tensor) -> None:
        flat += self.other

    def broadcast_(self, flat: torch.Tensor, root: int) -> None:
        raise AssertionError("not used")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in model.state_dict().items()}


def test_the_flat_buffer_holds_the_replica_and_averages_as_packing_does() -> None:
    packed_model, flat_model = _model(), _model()
    before = _state(flat_model)
    flat = flatten_replica_(flat_model)
    assert flat is not None
    after = _state(flat_model)
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    start, end = flat.data_ptr(), flat.data_ptr() + flat.numel() * 4
    for tensor in [*flat_model.parameters(), flat_model[1].running_mean]:
        assert start <= tensor.data_ptr() < end  # a view of the flat buffer

    # One SGD step on each, then an average with a peer that holds twice the values.
    inputs, targets = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 1, 0])
    for model in (packed_model, flat_model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    peer = 2 * copy.deepcopy(flat)
    average_replicas(packed_model, OtherRank(peer.clone()))
    average_replicas(flat_model, OtherRank(peer.clone()), flat)
    for name, tensor in _state(packed_model).items():
        torch.testing.assert_close(_state(flat_model)[name], tensor, rtol=0, atol=0)


def test_a_model_that_is_not_float32_keeps_its_tensors() -> None:
    model = _model().double()
    weight = model[0].weight
    assert flatten_replica_(model) is None
    assert model[0].weight is weight and weight.dtype == torch.float64
