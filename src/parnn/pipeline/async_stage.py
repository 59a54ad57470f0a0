"""One stage of PipeDream's asynchronous pipeline at work: its weight versions (the stash),
the stage module run on a version through :func:`torch.func.functional_call`, and the walk
over a stream's actions (:func:`~parnn.partition.async_schedule.async_actions`) with the
stage's own p2p ops, timing each forward, backward, wait and update.

The stage's ``fwd_cache`` and receive buffers are a ring of ``k + 1`` chunk slots, more than
the ``k - s`` micro-batches stage ``s`` ever holds; a slot's buffer gradient is cleared after
its backward so that the next micro-batch in it does not accumulate into it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.distributed.pipelining import schedules as torch_schedules
from torch.func import functional_call

from parnn.partition.async_schedule import async_actions, copied_versions
from parnn.pipeline.stage import StageMeter, TimedPipelineStage

__all__ = ["StageStream", "VersionedModule", "WeightStash", "init_stage_infra"]

TARGET_TAG = 7  # p2p tag of the targets rank 0 sends to the last stage's rank


class VersionedModule(nn.Module):
    """The stage module run on the weight version in ``weights`` (functional_call), or on
    its own live weights when ``weights`` is None."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.weights: dict[str, torch.Tensor] | None = None

    def forward(self, *args: Any) -> Any:
        if self.weights is None:  # the version is the live weights
            return self.module(*args)
        return functional_call(self.module, self.weights, args)


@dataclass(slots=True)
class WeightStash:
    """Weight versions of one stage, each a dict of leaves that require grad.

    A version that is dropped before the next update needs no copy: until that update the
    live weights *are* that version, so the stage runs on them directly (None in
    ``versions``; the last stage's only version, every version of a one-stage stream). A version still in use after the
    next update is a copy, made into a buffer of an earlier dropped copy when there is one,
    so a long stream allocates its copies once. Every version's leaves share the live
    parameters' gradient buffers: each backward accumulates into them in place, in the
    order the backwards run, and the update applies the sum (the optimizer zeroes them
    without freeing them).
    """

    module: nn.Module
    versions: dict[int, dict[str, torch.Tensor] | None] = field(default_factory=dict)
    """Version -> its copy, or None where the live weights are that version."""
    copies: set[int] = field(default_factory=set)
    """Versions held as copies."""
    pool: list[dict[str, torch.Tensor]] = field(default_factory=list)
    peak: int = 0
    """Most versions held at once."""
    peak_copies: int = 0
    """Most copies held at once: what the stash costs in memory."""

    def live_grads(self) -> None:
        """Give every trained live parameter a gradient buffer that the versions share (a
        frozen one keeps none, so the optimizer leaves it alone)."""
        for parameter in self.module.parameters():
            if parameter.requires_grad and parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)

    def make(self, version: int, *, copy: bool) -> None:
        if not copy:
            self.versions[version] = None
        else:
            weights: dict[str, torch.Tensor] = {}
            buffers = self.pool.pop() if self.pool else None
            with torch.no_grad():
                for name, parameter in self.module.named_parameters():
                    if buffers is not None:
                        leaf = buffers[name].copy_(parameter)
                    else:
                        leaf = parameter.detach().clone()
                        leaf.requires_grad_(parameter.requires_grad)
                    leaf.grad = parameter.grad
                    weights[name] = leaf
            self.versions[version] = weights
            self.copies.add(version)
        self.peak = max(self.peak, len(self.versions))
        self.peak_copies = max(self.peak_copies, len(self.copies))

    def drop(self, version: int) -> None:
        weights = self.versions.pop(version, None)
        if weights is not None:
            self.copies.discard(version)
            self.pool.append(weights)

    def clear(self) -> None:
        for version in list(self.versions):
            self.drop(version)


def init_stage_infra(stage: TimedPipelineStage, ring: int, loss: Any) -> None:
    """Let torch set up the stage's p2p buffers for ``ring`` chunk slots (static shapes)."""
    stage.has_backward = True
    schedule = torch_schedules.ScheduleGPipe(stage, n_microbatches=ring, loss_fn=loss)
    schedule._initialize_stage((), None)  # torch 2.13: the vote, buffers and send infos


class StageStream:
    """Walks one stage's actions over streams of mini-batches, timing what it does."""

    def __init__(
        self,
        *,
        rank: int,
        num_stages: int,
        num_microbatches: int,
        microbatch_size: int,
        stage: TimedPipelineStage,
        versioned: VersionedModule,
        stash: WeightStash,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loss_fn: Any,
        meter: StageMeter,
        group: dist.ProcessGroup | None,
        vertical_sync: bool,
    ) -> None:
        self.rank, self.num_stages, self.m = rank, num_stages, num_microbatches
        self.microbatch_size = microbatch_size
        self.stage, self.versioned, self.stash = stage, versioned, stash
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, loss_fn
        self.meter, self.group, self.vertical_sync = meter, group, vertical_sync
        self.ring = num_stages + 1
        self.is_first, self.is_last = rank == 0, rank == num_stages - 1
        self.waits: list[tuple[int, float, float]] = []
        self.step_times: list[float] = []
        self.step_starts: list[float] = []
        self.optimizer_times: list[float] = []
        self.losses: list[float] = []
        self.peak_in_flight = 0
        self.activation_bytes = 0
        self._sends: deque[Any] = deque()

    def _wait(self, works: list[Any], step: int) -> None:
        start = time.perf_counter()
        for work in works:
            work.wait()
        self.waits.append((step, start, time.perf_counter() - start))

    def _send(self, ops: list[dist.P2POp]) -> None:
        if ops:
            self._sends.append((dist.batch_isend_irecv(ops), ops))
        while len(self._sends) > 2 * self.ring:  # keep a bounded number of sends open
            works, _ = self._sends.popleft()
            for work in works:
                work.wait()

    def _flush_sends(self) -> None:
        while self._sends:
            works, _ = self._sends.popleft()
            for work in works:
                work.wait()

    def stream(
        self,
        num_minibatches: int,
        *,
        first_step: int,
        resumed_at: int,
        inputs: torch.Tensor | None,
        targets: torch.Tensor | None,
        fail_at_step: int | None,
        on_update: Any,
    ) -> None:
        """Run ``num_minibatches`` mini-batches through the pipeline, ending drained."""
        m, b = self.m, self.microbatch_size
        total = num_minibatches * m
        actions = async_actions(
            self.num_stages, num_minibatches, m, vertical_sync=self.vertical_sync
        )[self.rank]
        last_use = {a.version: i for i, a in enumerate(actions) if a.kind in "FB"}
        copies = copied_versions(actions)

        labels = targets
        if self.is_first and not self.is_last:
            assert targets is not None
            dist.send(targets, dst=self.num_stages - 1, tag=TARGET_TAG, group=self.group)
        elif self.is_last and not self.is_first:
            labels = torch.empty(total * b, dtype=torch.int64)
            dist.recv(labels, src=0, tag=TARGET_TAG, group=self.group)
        stage = self.stage
        stage.clear_runtime_states()
        self.stash.clear()
        self.stash.live_grads()
        if 0 in last_use:
            self.stash.make(0, copy=0 in copies)
        losses: dict[int, torch.Tensor] = {}
        minibatch_loss = 0.0
        in_flight = 0
        started = time.perf_counter()
        for index, action in enumerate(actions):
            j, slot = action.microbatch, action.microbatch % self.ring
            step = first_step + (j // m if action.kind != "U" else j)
            self.meter.step = step - resumed_at
            if action.kind == "F":
                if fail_at_step == step and j % m == 0:
                    raise RuntimeError(f"injected failure at step {step} (test hook)")
                if not self.is_first:
                    self._wait(
                        dist.batch_isend_irecv(stage.get_fwd_recv_ops(slot)), self.meter.step
                    )
                self.versioned.weights = self.stash.versions[action.version]
                args = (
                    (inputs[j * b : (j + 1) * b],) if self.is_first and inputs is not None else ()
                )
                output = self._forward(slot, args)
                if self.is_last:
                    assert labels is not None
                    losses[j] = self.loss_fn(output, labels[j * b : (j + 1) * b])
                else:
                    self._send(stage.get_fwd_send_ops(slot))
                in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, in_flight)
            elif action.kind == "B":
                if not self.is_last:
                    self._wait(
                        dist.batch_isend_irecv(stage.get_bwd_recv_ops(slot)), self.meter.step
                    )
                loss = losses.pop(j, None)
                stage.backward_one_chunk(slot, loss=loss, full_backward=True)
                if loss is not None:
                    minibatch_loss += float(loss.detach())
                if not self.is_first:
                    self._send(stage.get_bwd_send_ops(slot))
                    for info in stage.args_recv_info[slot]:
                        if info.buffer is not None:
                            info.buffer.grad = None  # the slot is reused: no accumulation
                in_flight -= 1
            else:  # U: the update that makes version action.version
                now = time.perf_counter()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=False)  # the versions share them
                self.scheduler.step()
                done = time.perf_counter()
                self.optimizer_times.append(done - now)
                self.step_starts.append(started)
                self.step_times.append(done - started)
                started = done
                if self.is_last:
                    self.losses.append(minibatch_loss)
                minibatch_loss = 0.0
                if action.version in last_use:
                    self.stash.make(action.version, copy=action.version in copies)
                on_update()
            for version in [v for v in self.stash.versions if last_use[v] <= index]:
                self.stash.drop(version)
        self._flush_sends()
        self.stash.clear()

    def _forward(self, slot: int, args: tuple[torch.Tensor, ...]) -> Any:
        if self.activation_bytes:
            return self.stage.forward_one_chunk(slot, args, save_forward_output=False)
        # The first forward also measures what it saves for backward (weights excluded).
        version = self.versioned.weights or dict(self.versioned.module.named_parameters())
        weights = {t.data_ptr() for t in version.values()}
        saved = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            if tensor.data_ptr() not in weights:
                saved += tensor.numel() * tensor.element_size()
            return tensor

        with saved_tensors_hooks(pack, lambda tensor: tensor):
            output = self.stage.forward_one_chunk(slot, args, save_forward_output=False)
        self.activation_bytes = max(saved, 1)
        return output
