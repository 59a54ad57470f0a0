"""Replay PipeDream's asynchronous schedule on per-stage costs: the steady state of a
pipeline that never flushes.

The stream of :func:`~.async_schedule.async_actions` is replayed with the rules of
:func:`~.simulate.simulate` (an action starts when its stage is free and its input has
arrived; inputs from another rank arrive ``link_latency_s`` after their producer ended
and then cost the receiver ``recv_*_s``), plus the optimizer update, which occupies its
stage after every mini-batch's last backward. A "step" is one mini-batch: the predicted step
time is the period of the steady state, measured on the first stage between the updates
of two mini-batches far from both ends of a long stream, so the warm-up and the drain, which
a real run pays once per epoch, are not in it. With equal stages and no communication the
period is ``m (f + b) + update``: no bubble at all.
"""

from __future__ import annotations

from parnn.errors import ScheduleError
from parnn.partition.async_schedule import async_actions, held_versions
from parnn.partition.timeline import SimEvent, Simulation, StageTimes

__all__ = ["simulate_async"]


def simulate_async(
    times: StageTimes,
    *,
    schedule: str,
    num_microbatches: int,
    vertical_sync: bool = False,
    num_minibatches: int | None = None,
) -> Simulation:
    """Predict one steady-state mini-batch of ``schedule`` (pipedream, pipedream-2bw) with
    ``num_microbatches`` micro-batches per mini-batch, one stage per rank."""
    k, m = times.num_stages, num_microbatches
    minibatches = num_minibatches if num_minibatches is not None else 4 * k + 8
    if minibatches < 4:
        raise ScheduleError(f"the steady state needs >= 4 mini-batches, got {minibatches}")
    plans = async_actions(k, minibatches, m, vertical_sync=vertical_sync)
    done: dict[tuple[str, int, int], float] = {}
    free = [0.0] * k
    cursor = [0] * k
    events: list[SimEvent] = []
    update_end: list[list[float]] = [[] for _ in range(k)]
    remaining = sum(len(p) for p in plans)
    while remaining:
        progressed = False
        for s in range(k):
            while cursor[s] < len(plans[s]):
                action = plans[s][cursor[s]]
                j = action.microbatch
                receive, ready = 0.0, [free[s]]
                if action.kind == "F":
                    key = ("F", s - 1, j)
                    if s > 0:
                        if key not in done:
                            break
                        ready.append(done[key] + times.link_latency_s)
                        receive = times.recv_forward_s[s]
                    work, label = times.forward_s[s], "forward"
                elif action.kind == "B":
                    key = ("B", s + 1, j)
                    if s < k - 1:
                        if key not in done:
                            break
                        ready.append(done[key] + times.link_latency_s)
                        receive = times.recv_backward_s[s]
                    work, label = times.backward_s[s], "backward"
                else:
                    work, label = times.update_s[s], "update"
                start = max(ready)
                if receive > 0:
                    events.append(SimEvent(s, s, j, f"recv-{label}", start, start + receive))
                end = start + receive + work
                events.append(SimEvent(s, s, j, label, start + receive, end))
                if action.kind == "U":
                    update_end[s].append(end)
                else:
                    done[(action.kind, s, j)] = end
                free[s] = end
                cursor[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # pragma: no cover - the 1F1B stream cannot deadlock
            raise ScheduleError(f"schedule {schedule!r} deadlocks with m={m}")
    # The period between two updates of the first stage, away from the warm-up and drain.
    first, last = minibatches // 4, minibatches - minibatches // 4
    step = (update_end[0][last] - update_end[0][first]) / (last - first)
    peaks = []
    for actions in plans:
        count = best = 0
        for action in actions:
            if action.kind in "FB":
                count += 1 if action.kind == "F" else -1
                best = max(best, count)
        peaks.append(best)
    return Simulation(
        schedule=schedule,
        num_microbatches=m,
        num_ranks=k,
        num_stages=k,
        step_time_s=step,
        compute_s=tuple(m * (times.forward_s[s] + times.backward_s[s]) for s in range(k)),
        comm_s=tuple(
            m
            * (
                (times.recv_forward_s[s] if s > 0 else 0.0)
                + (times.recv_backward_s[s] if s < k - 1 else 0.0)
            )
            for s in range(k)
        ),
        update_s=tuple(times.update_s),
        peak_in_flight=tuple(peaks),
        peak_activation_bytes=tuple(p * times.saved_bytes[s] for s, p in enumerate(peaks)),
        events=tuple(
            e
            for e in sorted(events, key=lambda e: (e.rank, e.start_s))
            if update_end[0][first] <= e.start_s < update_end[0][first] + step
        ),
        stashed_versions=tuple(held_versions(actions)[0] for actions in plans),
    )
