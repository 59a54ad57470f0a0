"""Replay a pipeline schedule on per-stage costs and predict what a training step does.

Each rank is one process that runs its actions (:mod:`.schedules`) in order. An action
starts when the rank is free and its input exists: the forward of micro-batch ``j`` on
stage ``s`` needs the forward of ``j`` on ``s - 1``; the backward needs its own forward
and the backward of ``j`` on ``s + 1``. An input from another rank travels first: it
arrives ``link_latency_s`` after its producer finished (the sends are asynchronous, so
this overlaps whatever the receiver is doing meanwhile), and then the receiver is busy
taking it in for ``recv_forward_s`` (not on the first stage) or ``recv_backward_s`` (not on
the last stage). Stages on the same rank exchange nothing. After its last action a
rank runs the optimizer update of its stages; the step ends when the last update does.

With ``messages="posted"`` (what :meth:`StageTimes.from_cost` gives the planner) the
messages follow torch's schedules instead: a receive is posted only when its action is
next on the rank, so a message's latency starts when both the send and the receive are
posted (``max(producer end, receiver free) + link_latency_s``) and is paid on the
receiver's critical path even when the bytes were sent long before; 1F1B also waits for
each of its sends (``link_latency_s`` after the producing action) before the rank's next
action, GPipe and the others once at the end of the step. Over gloo (~2 ms a message here)
this is what makes 1F1B slower than GPipe on a small model; over shared memory (~tens of
µs) the two models agree.

This reproduces the closed forms: with stage costs ``t_i`` (the busy part of the receive
included) and a latency ``L`` per link, a forward pass takes
``sum(t_i) + (p - 1) L + (m - 1) max(t_i)`` (the study's ``sum(t_i + c_i) + t_max (m - 1)``),
and with equal stages GPipe and 1F1B leave a bubble of ``(p - 1) / (m + p - 1)`` of every
rank's time when ``L = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

from parnn.errors import ScheduleError
from parnn.partition.async_schedule import check_async_schedule, is_async_schedule
from parnn.partition.schedules import get_schedule, rank_of_stage, schedule_actions
from parnn.partition.timeline import MESSAGE_MODELS, SimEvent, Simulation, StageTimes

__all__ = [
    "MESSAGE_MODELS",
    "SimEvent",
    "Simulation",
    "StageTimes",
    "closed_form_bubble",
    "closed_form_forward_s",
    "schedule_bubble",
    "simulate",
]


def closed_form_forward_s(stage_costs_s: Sequence[float], num_microbatches: int) -> float:
    """The GPipe study's formula: sum(t_i + c_i) + (m - 1) * t_max."""
    return sum(stage_costs_s) + (num_microbatches - 1) * max(stage_costs_s)


def closed_form_bubble(num_stages: int, num_microbatches: int, num_chunks: int = 1) -> float:
    """The bubble with equal stages on ``p = num_stages`` ranks: (p - 1) / (m + p - 1) for
    GPipe and 1F1B; (p - 1) / (m v + p - 1) for interleaved 1F1B with ``v`` chunks each."""
    return (num_stages - 1) / (num_microbatches * num_chunks + num_stages - 1)


def schedule_bubble(
    schedule: str, num_ranks: int, num_microbatches: int, num_chunks: int = 1
) -> float | None:
    """The closed-form bubble of ``schedule`` with equal stages and free messages: 0 for
    the asynchronous schedules (no flush), :func:`closed_form_bubble` for GPipe, 1F1B,
    interleaved 1F1B and looped BFS, None for the split-backward schedules (zero-bubble,
    zbv, dualpipev), whose bubble depends on how the backward splits: simulate them."""
    spec = get_schedule(schedule)
    if spec.asynchronous:
        return 0.0
    if spec.split_backward:
        return None
    return closed_form_bubble(num_ranks, num_microbatches, num_chunks)


def simulate(
    times: StageTimes,
    *,
    schedule: str,
    num_microbatches: int,
    num_ranks: int | None = None,
) -> Simulation:
    """Replay ``schedule`` with ``num_microbatches`` micro-batches on ``times``.

    ``num_ranks`` defaults to the number of stages; for the multi-stage schedules
    (interleaved-1f1b, looped-bfs, zero-bubble, zbv, dualpipev) it may be a divisor of it
    (each rank then holds ``num_stages / num_ranks`` stages, placed as the runtime
    places them). The asynchronous schedules (pipedream, pipedream-2bw) predict their
    steady state (:mod:`.simulate_async`).
    """
    num_stages = times.num_stages
    spec = get_schedule(schedule)
    schedule = spec.name
    if is_async_schedule(schedule):
        from parnn.partition.simulate_async import simulate_async

        if num_ranks not in (None, num_stages):
            raise ScheduleError(f"{schedule} puts one stage on each rank")
        check_async_schedule(schedule, num_stages=num_stages, num_microbatches=num_microbatches)
        return simulate_async(times, schedule=schedule, num_microbatches=num_microbatches)
    fixed = spec.fixed_stages_per_rank or 1  # the V schedules hold 2 stages per rank
    k = num_stages // fixed if num_ranks is None else num_ranks
    if k < 1 or num_stages % k:
        raise ScheduleError(
            f"{num_stages} stages cannot be spread evenly over {k} ranks; give a number of "
            f"stages that is a multiple of the ranks"
        )
    plans = schedule_actions(schedule, k, num_microbatches, num_chunks=num_stages // k)
    m = num_microbatches

    def rank_of(stage: int) -> int:
        return rank_of_stage(spec, stage, k)

    posted = times.messages == "posted"
    latency = times.link_latency_s
    waits_each_send = posted and spec.waits_each_send
    done: dict[tuple[str, int, int], float] = {}
    free = [0.0] * k
    sent = [0.0] * k  # when this rank's last send completes (posted messages)
    cursor = [0] * k
    events: list[SimEvent] = []
    compute = [0.0] * k
    comm = [0.0] * k
    remaining = sum(len(p) for p in plans)
    while remaining:
        progressed = False
        for rank in range(k):
            actions = plans[rank]
            while cursor[rank] < len(actions):
                action = actions[cursor[rank]]
                s, j = action.stage, action.microbatch
                if action.kind == "F":
                    deps = [("F", s - 1, j)] if s > 0 else []
                    remote = s > 0 and rank_of(s - 1) != rank
                    receive = times.recv_forward_s[s] if remote else 0.0
                    work, label = times.forward_s[s], "forward"
                    sends = s < num_stages - 1 and rank_of(s + 1) != rank
                elif action.kind == "W":  # after its own I, on this rank
                    deps, remote, receive, sends = [("I", s, j)], False, 0.0, False
                    work, label = times.backward_weight_s[s], "backward-weight"
                else:  # B, or I: needs the gradient of the next stage's input
                    last = s == num_stages - 1
                    deps = [("F", s, j)] + ([] if last else [("G", s + 1, j)])
                    remote = not last and rank_of(s + 1) != rank
                    receive = times.recv_backward_s[s] if remote else 0.0
                    work, label = times.backward_s[s], "backward"
                    if action.kind == "I":
                        work -= times.backward_weight_s[s]
                    sends = s > 0 and rank_of(s - 1) != rank
                if any(dep not in done for dep in deps):
                    break
                # The input from another rank (the last dependency) arrives after the link:
                # counted from its send (eager) or from when both sides posted it (posted).
                ready = [done[dep] for dep in deps]
                if remote:
                    ready[-1] = (max(ready[-1], free[rank]) if posted else ready[-1]) + latency
                begin = max(free[rank], sent[rank]) if waits_each_send else free[rank]
                start = max([begin, *ready])
                if receive > 0:
                    events.append(SimEvent(rank, s, j, f"recv-{label}", start, start + receive))
                compute_start = start + receive
                end = compute_start + work
                events.append(SimEvent(rank, s, j, label, compute_start, end))
                done[(action.kind, s, j)] = end
                if action.kind in ("B", "I"):  # the gradient of the stage's input exists
                    done[("G", s, j)] = end
                free[rank] = end
                if posted and sends:
                    sent[rank] = end + latency
                compute[rank] += work
                comm[rank] += receive
                cursor[rank] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = {d: str(plans[d][cursor[d]]) for d in range(k) if cursor[d] < len(plans[d])}
            raise ScheduleError(f"schedule {schedule!r} deadlocks with m={m}: waiting at {stuck}")
    for rank in range(k):  # every schedule waits for its last sends before the update
        free[rank] = max(free[rank], sent[rank])
    update = [0.0] * k
    for stage in range(num_stages):
        update[rank_of(stage)] += times.update_s[stage]
    for rank in range(k):
        if update[rank] > 0:
            end = free[rank] + update[rank]
            events.append(SimEvent(rank, rank, -1, "update", free[rank], end))
            free[rank] = end
    peaks, peak_bytes = [], []
    for rank in range(k):
        count = held = best = best_bytes = 0
        for action in plans[rank]:
            if action.kind == "I":
                continue  # the activations stay until the W
            sign = 1 if action.kind == "F" else -1
            count += sign
            held += sign * times.saved_bytes[action.stage]
            best, best_bytes = max(best, count), max(best_bytes, held)
        peaks.append(best)
        peak_bytes.append(best_bytes)
    step = max(free) - min((e.start_s for e in events), default=0.0)
    return Simulation(
        schedule=schedule,
        num_microbatches=m,
        num_ranks=k,
        num_stages=num_stages,
        step_time_s=step,
        compute_s=tuple(compute),
        comm_s=tuple(comm),
        update_s=tuple(update),
        peak_in_flight=tuple(peaks),
        peak_activation_bytes=tuple(peak_bytes),
        events=tuple(sorted(events, key=lambda e: (e.rank, e.start_s))),
    )
