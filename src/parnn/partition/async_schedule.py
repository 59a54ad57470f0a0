"""PipeDream's asynchronous pipeline as data: for every stage, the ordered forwards (F),
backwards (B) and optimizer updates (U) of a stream of micro-batches, and the weight version
each forward and backward uses.

The stream is ``num_minibatches x m`` micro-batches; one mini-batch is ``m`` consecutive
micro-batches and every stage updates its weights once per mini-batch, right after its
backward of that mini-batch's last micro-batch. Each stage runs torch's 1F1B over the whole
stream (``k - s - 1`` warm-up forwards on stage ``s`` of ``k``, then one forward and one
backward in turn), so there is no flush between updates: the pipeline drains only at the
end of the stream (parnn ends a stream at every epoch's end and before a checkpoint).
Two stages, m = 1 (``F3v1`` = forward of micro-batch 3 on weight version 1, ``U1`` = the
update that makes version 1)::

    stage 0 | F0v0 F1v0 B0v0 U1 F2v1 B1v0 U2 F3v2 B2v1 U3 ...
    stage 1 |      F0v0 B0v0 U1 F1v1 B1v1 U2 F2v2 B2v2 U3 ...

Weight stashing: a micro-batch's backward runs on the version its forward used (``B1v0`` on
stage 0 above, though stage 0 already holds version 1), so each gradient is the true
gradient of one consistent version; what is stale is that version: stage ``s`` runs
micro-batch ``j`` on version ``floor(max(0, j - (k - s - 1)) / m)``, which misses the
updates of the last ``k - s - 1`` micro-batches (none on the last stage), and the update it
contributes to is applied to newer weights.
Vertical sync makes every stage use the version the first stage used for that micro-batch
(PipeDream's ``--vertical-sync``): one consistent (and older) model per micro-batch.

``pipedream`` allows any ``m`` (``m = 1`` is the paper's PipeDream: an update per
micro-batch, ``k - s`` versions stashed on stage ``s`` at the peak). ``pipedream-2bw`` is the
same rule with ``m >= k`` (PipeDream-2BW: gradient accumulation over ``m`` micro-batches),
which bounds the versions held to two: the double buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from parnn.errors import ScheduleError

__all__ = [
    "ASYNC_SCHEDULES",
    "AsyncAction",
    "async_actions",
    "check_async_schedule",
    "copied_versions",
    "format_async_schedule",
    "held_versions",
    "is_async_schedule",
    "peak_copies",
    "weight_version",
]

ASYNC_SCHEDULES: tuple[str, ...] = ("pipedream", "pipedream-2bw")


@dataclass(frozen=True, slots=True)
class AsyncAction:
    """One step of a stage in the asynchronous pipeline."""

    kind: str
    """'F' (forward), 'B' (backward) or 'U' (optimizer update)."""
    stage: int
    microbatch: int
    """The micro-batch (F, B) or the mini-batch whose update this is (U)."""
    version: int
    """The weight version F and B run on; the version U creates (updates applied so far)."""

    def __str__(self) -> str:
        if self.kind == "U":
            return f"U{self.version}"
        return f"{self.kind}{self.microbatch}v{self.version}"


def is_async_schedule(name: str) -> bool:
    return name.strip().lower() in ASYNC_SCHEDULES


def check_async_schedule(schedule: str, *, num_stages: int, num_microbatches: int) -> None:
    """Refuse the settings an asynchronous schedule cannot run with."""
    key = schedule.strip().lower()
    if key not in ASYNC_SCHEDULES:
        raise ScheduleError(
            f"unknown asynchronous schedule {schedule!r}; valid: {', '.join(ASYNC_SCHEDULES)}"
        )
    if num_stages < 1 or num_microbatches < 1:
        raise ScheduleError(
            f"need stages and micro-batches >= 1, got {num_stages} and {num_microbatches}"
        )
    if key == "pipedream-2bw" and num_microbatches < num_stages:
        raise ScheduleError(
            f"pipedream-2bw accumulates m >= stages micro-batches per update so that two "
            f"weight versions suffice: --microbatches {num_microbatches} < --stages "
            f"{num_stages}; use --microbatches {num_stages} or more, or --schedule pipedream"
        )


def weight_version(
    stage: int,
    microbatch: int,
    *,
    num_stages: int,
    num_microbatches: int,
    vertical_sync: bool = False,
) -> int:
    """The weight version (updates applied, counted from the stream's start) stage ``stage``
    runs micro-batch ``microbatch`` on: ``floor(max(0, j - (k - s - 1)) / m)``, with ``s = 0``
    for every stage under vertical sync."""
    lag = num_stages - 1 - (0 if vertical_sync else stage)
    return max(0, microbatch - lag) // num_microbatches


def async_actions(
    num_stages: int,
    num_minibatches: int,
    num_microbatches: int,
    *,
    vertical_sync: bool = False,
) -> tuple[tuple[AsyncAction, ...], ...]:
    """The ordered actions of every stage for a stream of ``num_minibatches`` mini-batches of
    ``num_microbatches`` micro-batches each, ending with the drain."""
    if num_stages < 1 or num_minibatches < 1 or num_microbatches < 1:
        raise ScheduleError(
            f"need stages, mini-batches and micro-batches >= 1; got {num_stages}, "
            f"{num_minibatches}, {num_microbatches}"
        )
    k, m = num_stages, num_microbatches
    total = num_minibatches * m
    plans = []
    for stage in range(k):

        def version(j: int, stage: int = stage) -> int:
            return weight_version(
                stage, j, num_stages=k, num_microbatches=m, vertical_sync=vertical_sync
            )

        actions: list[AsyncAction] = []

        def backward(j: int, stage: int = stage, actions: list[AsyncAction] = actions) -> None:
            actions.append(AsyncAction("B", stage, j, version(j)))
            if (j + 1) % m == 0:
                actions.append(AsyncAction("U", stage, j // m, (j + 1) // m))

        warmup = min(k - stage - 1, total)
        actions += [AsyncAction("F", stage, j, version(j)) for j in range(warmup)]
        for i in range(total - warmup):
            actions.append(AsyncAction("F", stage, warmup + i, version(warmup + i)))
            backward(i)
        for j in range(total - warmup, total):
            backward(j)
        plans.append(tuple(actions))
    _check_versions(plans)
    return tuple(plans)


def _check_versions(plans: list[tuple[AsyncAction, ...]]) -> None:
    """Invariant: no forward runs on a version its stage has not made yet."""
    for actions in plans:
        made = 0
        for action in actions:
            if action.kind == "U":
                made = action.version
            elif action.kind == "F":
                assert action.version <= made, f"{action} before version {action.version}"


def _peak_held(actions: tuple[AsyncAction, ...], kept: frozenset[int]) -> int:
    """The most of the versions in ``kept`` one stage holds at once: each from the stream's
    start (version 0) or its update until the last forward or backward that uses it."""
    last_use = {a.version: i for i, a in enumerate(actions) if a.kind in "FB"}
    held = {0} & kept
    peak = len(held)
    for index, action in enumerate(actions):
        if action.kind == "U" and action.version in kept:
            held.add(action.version)
        peak = max(peak, len(held))
        held = {v for v in held if last_use[v] > index}
    return peak


def held_versions(actions: tuple[AsyncAction, ...]) -> tuple[int, int]:
    """(peak, total) weight versions one stage keeps besides its live weights: a version is
    held (stashed) from the moment it exists (the stream's start or its update) until the last
    backward that uses it; versions no action uses are never stashed."""
    used = frozenset(a.version for a in actions if a.kind in "FB")
    return _peak_held(actions, used), len(used)


def copied_versions(actions: tuple[AsyncAction, ...]) -> frozenset[int]:
    """The versions one stage must keep as copies: those still used after the update that
    follows their making. Until that update the live weights *are* the version, so a version
    done with before it needs no copy (on the last stage, whose forward and backward of a
    micro-batch are adjacent, none does unless vertical sync makes it use older ones)."""
    last_use: dict[int, int] = {}
    made_at: dict[int, int] = {0: -1}
    updates: list[int] = []
    for index, action in enumerate(actions):
        if action.kind in "FB":
            last_use[action.version] = index
        else:
            made_at[action.version] = index
            updates.append(index)
    copies = set()
    for version, last in last_use.items():
        made = made_at[version]
        following = next((u for u in updates if u > made), len(actions))
        if last > following:
            copies.add(version)
    return frozenset(copies)


def peak_copies(actions: tuple[AsyncAction, ...]) -> int:
    """The most :func:`copied_versions` one stage holds at once: what its stash costs in
    memory, in copies of its parameters."""
    return _peak_held(actions, copied_versions(actions))


def format_async_schedule(plans: tuple[tuple[AsyncAction, ...], ...]) -> str:
    """The stream as an ASCII grid, one line per stage (``F3v1``, ``B3v1``, ``U2``)."""
    return "\n".join(
        f"stage {stage}: " + " ".join(str(a) for a in actions)
        for stage, actions in enumerate(plans)
    )
