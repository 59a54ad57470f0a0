"""The asynchronous pipeline emulated in one process: the reference the PipeDream engine is
proved against, and the plainest statement of what it computes.

For every micro-batch ``j`` (in order), the model is run as the composition of its stages,
stage ``s`` on the weight version the asynchronous schedule gives it
(:func:`~parnn.partition.async_schedule.weight_version`: stale by the updates still in the
pipeline, the same version in forward and backward, i.e. weight stashing)::

    loss_j = L(f_{k-1}(W_{k-1}^{v_{k-1}(j)}, ... f_0(W_0^{v_0(j)}, x_j)), y_j)

and ``d loss_j / d W_s^{v_s(j)}`` is added to stage ``s``'s gradient. After the ``m``
micro-batches of a mini-batch every stage applies its optimizer to its newest weights with
that gradient, which makes the next version. A stream ends (the pipeline drains) every
``drain_every`` mini-batches, after which versions count from the newest weights again.

The multi-process engine reproduces this loop's parameters (same seed, same data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from parnn.errors import ConfigError
from parnn.partition import Partition
from parnn.partition.async_schedule import weight_version
from parnn.pipeline.stage import stage_module
from parnn.train import OptimizerConfig, make_optimizer, make_scheduler

__all__ = ["emulate_async_pipeline", "minibatch_mean_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def minibatch_mean_loss(batch_size: int) -> LossFn:
    """Cross-entropy summed over a micro-batch and divided by the mini-batch size, so that
    a mini-batch's micro-batch losses add up to its mean loss (the pipeline's loss)."""
    criterion = nn.CrossEntropyLoss(reduction="sum")

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return criterion(output, target) / batch_size

    return loss


def emulate_async_pipeline(
    model: nn.Sequential,
    partition: Partition,
    minibatches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_microbatches: int,
    optimizer: OptimizerConfig,
    lr_schedule: str = "constant",
    total_steps: int | None = None,
    vertical_sync: bool = False,
    drain_every: int | None = None,
    loss_fn: LossFn | None = None,
) -> list[float]:
    """Train ``model`` in place on ``minibatches`` as the asynchronous pipeline does; return
    the loss of every mini-batch (summed over its micro-batches).

    ``total_steps`` sizes the LR schedule (default: the number of mini-batches);
    ``drain_every`` is the stream length in mini-batches (default: one stream).
    """
    if not minibatches:
        raise ConfigError("emulate_async_pipeline needs at least one mini-batch")
    if drain_every is not None and drain_every < 1:
        raise ConfigError(f"drain_every must be >= 1 mini-batch, got {drain_every}")
    num_stages, m = partition.num_stages, num_microbatches
    batch_size = len(minibatches[0][0])
    if batch_size % m:
        raise ConfigError(f"mini-batch of {batch_size} samples is not divisible by m={m}")
    loss_of = loss_fn if loss_fn is not None else minibatch_mean_loss(batch_size)
    stages = [stage_module(model, partition, s) for s in range(num_stages)]
    optimizers = [make_optimizer(stage.parameters(), optimizer) for stage in stages]
    steps = total_steps if total_steps is not None else len(minibatches)
    schedulers = [make_scheduler(o, lr_schedule, total_steps=steps) for o in optimizers]
    stream = drain_every if drain_every is not None else len(minibatches)
    losses: list[float] = []
    model.train()
    for start in range(0, len(minibatches), stream):
        # versions[s][v]: stage s's weights after v updates of this stream (detached copies)
        versions = [{0: _snapshot(stage)} for stage in stages]
        for u, (inputs, targets) in enumerate(minibatches[start : start + stream]):
            total = 0.0
            for i, (x, y) in enumerate(zip(inputs.chunk(m), targets.chunk(m), strict=True)):
                j = u * m + i
                used = [
                    versions[s][
                        weight_version(
                            s,
                            j,
                            num_stages=num_stages,
                            num_microbatches=m,
                            vertical_sync=vertical_sync,
                        )
                    ]
                    for s in range(num_stages)
                ]
                leaves = [
                    {name: t.detach().requires_grad_(True) for name, t in weights.items()}
                    for weights in used
                ]
                activation = x
                for stage, weights in zip(stages, leaves, strict=True):
                    activation = functional_call(stage, weights, (activation,))
                loss = loss_of(activation, y)
                loss.backward()
                total += float(loss.detach())
                for stage, weights in zip(stages, leaves, strict=True):
                    _accumulate(stage, weights)
            losses.append(total)
            for s, stage in enumerate(stages):
                optimizers[s].step()
                optimizers[s].zero_grad(set_to_none=True)
                schedulers[s].step()
                versions[s][u + 1] = _snapshot(stage)
    return losses


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _accumulate(module: nn.Module, leaves: dict[str, torch.Tensor]) -> None:
    """Add the gradients computed on a weight version to the live parameters' gradients."""
    for name, parameter in module.named_parameters():
        grad = leaves[name].grad
        if grad is None:
            continue
        if parameter.grad is None:
            parameter.grad = grad.clone()
        else:
            parameter.grad.add_(grad)
