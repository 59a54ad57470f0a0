"""``make_plan``: enumerate every layout of the cores, predict each, rank them, explain the
winner, and (``verify``) run the best ones and the single-process baselines for real.

    PlanConfig ──> model units, cores ──> enumerate_candidates ──> predict (profiles,
    contention, all-reduce, simulator) ──> rank ──> verify top K + baselines ──> PlanResult
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parnn.errors import ConfigError, ParnnError
from parnn.partition.comm import CommModel
from parnn.plan.config import PlanConfig
from parnn.plan.enumerate import ASYNC_SCHEDULES, AXES, Candidate, enumerate_candidates
from parnn.plan.predict import Prediction, predict
from parnn.plan.verify import VerifySettings, measure_candidate
from parnn.train.optim import OptimizerConfig

__all__ = ["ASSUMPTIONS", "PlannedCandidate", "PlanResult", "make_plan"]

ASSUMPTIONS = (
    "every process computes at the speed its per-unit profile measured alone, slowed by the "
    "contention factor measured for that many busy cores",
    "data-parallel synchronisation (an all-reduce of the gradients, or of the parameters for "
    "local SGD every step) is not overlapped with compute",
    "hogwild workers never wait for each other (lock-free updates cost nothing extra)",
    "pipelines run the auto partition; the simulator replays the schedule with the measured "
    "point-to-point model and every action lengthened by the runtime's cost per action "
    "(calibrated once on a tiny 2-rank pipeline); the micro-batch count is the fastest; "
    "the asynchronous schedules (pipedream, pipedream-2bw) are priced at their steady state "
    "(no warm-up or drain)",
    "a hybrid's replicas all-reduce their largest stage's parameters after each step",
)
PAPER_ASSUMPTIONS = (
    "nodes other than this one are copies of it: the same cores, profiles and contention",
    "threads beyond this machine's cores follow Amdahl's law fitted per unit to 1 and {T} threads",
    "contention beyond {T} busy cores is held at the value measured for {T}",
    "an all-reduce across nodes is a ring whose every hop runs at the network link's latency "
    "and bandwidth (or the local transport's, when slower)",
    "pipelines stay within one node; only replicas cross the network",
)


@dataclass(frozen=True, slots=True)
class PlannedCandidate:
    """A candidate, its prediction, and what it measured (when verified)."""

    candidate: Candidate
    prediction: Prediction
    rank: int
    """1 = the fastest predicted."""
    measured_samples_per_s: float | None = None
    """The median of its verification runs (``measured_runs``)."""
    verify_error: str | None = None
    """Why a verification run failed (the run's one-line error), when one did."""
    measured_runs: tuple[float, ...] = ()
    """Samples/s of each verification run that succeeded, in the order they ran."""

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured; None when not measured."""
        if not self.measured_samples_per_s:
            return None
        predicted = self.prediction.samples_per_s
        return (predicted - self.measured_samples_per_s) / self.measured_samples_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "axis": self.candidate.axis,
            "config": self.candidate.to_dict(),
            "predicted_samples_per_s": round(self.prediction.samples_per_s, 2),
            "measured_samples_per_s": None
            if self.measured_samples_per_s is None
            else round(self.measured_samples_per_s, 2),
            "measured_runs": [round(value, 2) for value in self.measured_runs],
            "rank": self.rank,
            "runnable": self.candidate.runnable,
            "prediction_error": None if self.error is None else round(self.error, 4),
            "why": describe(self),
            "verify_error": self.verify_error,
            "prediction": self.prediction.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class PlanResult:
    """Every candidate ranked by prediction, the winner and why, and what was measured."""

    config: PlanConfig
    input_shape: tuple[int, ...]
    cores: int
    candidates: tuple[PlannedCandidate, ...]
    reason: str
    machine: dict[str, Any]
    assumptions: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(candidate label, why it could not be predicted)."""

    @property
    def best(self) -> PlannedCandidate:
        return self.candidates[0]

    @property
    def best_measured(self) -> PlannedCandidate | None:
        measured = [c for c in self.candidates if c.measured_samples_per_s is not None]
        return max(measured, key=lambda c: c.measured_samples_per_s or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        best_measured = self.best_measured
        return {
            "command": "plan",
            "model": self.config.model,
            "input_shape": list(self.input_shape),
            "batch_size": self.config.batch_size,
            "cores": self.cores,
            "nodes": self.config.nodes,
            "candidates": [c.to_dict() for c in self.candidates],
            "best": self.best.to_dict(),
            "best_measured": None if best_measured is None else best_measured.to_dict(),
            "reason": self.reason,
            "assumptions": list(self.assumptions),
            "skipped": [{"label": label, "reason": why} for label, why in self.skipped],
            "machine": self.machine,
            "settings": self.config.to_dict(),
        }


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def describe(planned: PlannedCandidate) -> str:
    """What limits one candidate, in a few words."""
    p = planned.prediction
    c = planned.candidate
    contention = f", contention x{p.contention:.2f}" if p.contention > 1.005 else ""
    if c.axis == "threads":
        return f"no communication, no bubble; {p.step_s * 1e3:.1f} ms a step"
    if c.axis == "data" and c.engine == "hogwild":
        return f"no synchronisation; each worker {p.step_s * 1e3:.1f} ms an update{contention}"
    if c.axis == "data":
        return f"sync {_percent(p.sync_share)} of the step ({p.sync_s * 1e3:.1f} ms){contention}"
    bottleneck = p.bottleneck or {}
    units = bottleneck.get("units", [])
    span = f"{units[0]}..{units[-1]}" if len(units) > 1 else "".join(units)
    text = (
        f"bottleneck stage {bottleneck.get('stage')} ({span}) "
        f"{1e3 * bottleneck.get('seconds_per_microbatch', 0.0):.1f} ms per micro-batch, "
        f"m={p.num_microbatches}, bubble {_percent(p.bubble_fraction or 0.0)}{contention}"
    )
    if c.schedule in ASYNC_SCHEDULES:
        text += "; asynchronous: no flush, stashed weight versions (the steady state)"
    if c.axis == "hybrid":
        text += f", sync {_percent(p.sync_share)} of the step ({p.sync_s * 1e3:.1f} ms)"
    return text


def explain(ranked: tuple[PlannedCandidate, ...]) -> str:
    """Why the winner wins: its own limit, and each other axis's best with its limit."""
    winner = ranked[0]
    parts = [
        f"{winner.candidate.label} ({winner.candidate.axis}) is predicted fastest at "
        f"{winner.prediction.samples_per_s:,.0f} samples/s: {describe(winner)}"
    ]
    for axis in AXES:
        if axis == winner.candidate.axis:
            continue
        best = next((c for c in ranked if c.candidate.axis == axis), None)
        if best is None:
            continue
        ratio = winner.prediction.samples_per_s / best.prediction.samples_per_s
        parts.append(
            f"best {axis}, {best.candidate.label}, is {ratio:.2f}x slower: {describe(best)}"
        )
    return "; ".join(parts)


def _input_shape(config: PlanConfig) -> tuple[int, ...]:
    from parnn.models import get_model_spec
    from parnn.models.user import is_user_spec

    if config.input_shape is not None:
        return config.input_shape
    if is_user_spec(config.model):
        raise ConfigError(
            f"user model {config.model!r} needs an input shape: add --input CxHxW, e.g. "
            "--input 3x32x32"
        )
    return tuple(get_model_spec(config.model).default_input_shape)


def make_plan(
    config: PlanConfig,
    *,
    quiet: bool = True,
    on_measured: Callable[[PlannedCandidate], None] | None = None,
) -> PlanResult:
    """Plan ``config``: predict every candidate; verify the top ``config.verify`` and the
    baselines (one process with all threads, one with one thread). ``on_measured`` is called
    after each verification run (progress)."""
    from parnn.launch import usable_cores
    from parnn.models import build_model
    from parnn.partition.measure.cache import load_or_measure_comm
    from parnn.plan.machine import load_or_measure_machine
    from parnn.plan.profiles import ProfileSource
    from parnn.results import machine_facts

    shape = _input_shape(config)
    machine_cores = len(usable_cores())
    cores = config.cores if config.cores is not None else machine_cores
    on_paper = config.nodes > 1 or cores > machine_cores
    if config.verify and on_paper:
        raise ConfigError(
            f"--verify runs on this machine ({machine_cores} cores, 1 node), but the plan is "
            f"for {config.nodes} node(s) of {cores} cores: drop --verify, or plan with "
            f"--nodes 1 --cores {machine_cores} or fewer"
        )
    model = build_model(config.model, input_shape=shape)
    num_units = len(model)
    candidates = enumerate_candidates(
        cores=cores, num_units=num_units, batch_size=config.batch_size, nodes=config.nodes
    )
    # the pipelines the planner verifies send over the local transport (shm on one host)
    comm = load_or_measure_comm(config.cache_dir, transport="auto") if machine_cores > 1 else None
    machine = load_or_measure_machine(
        model,
        name=config.model,
        input_shape=shape,
        batch_size=max(1, config.batch_size // max(machine_cores, 1)),
        cores=machine_cores,
        cache_dir=config.cache_dir,
        comm=comm,
    )
    profiles = ProfileSource.cached(
        config.model,
        input_shape=shape,
        max_threads=machine_cores,
        cache_dir=config.cache_dir,
        comm=comm,
        warmup=config.profile_warmup,
        repeats=config.profile_repeats,
        seed=config.seed,
    )
    link = CommModel(
        latency_s=config.link_latency_s,
        bandwidth_bytes_per_s=config.link_bandwidth_bytes_per_s,
        backend="network",
    )
    predicted: list[tuple[Candidate, Prediction]] = []
    skipped: list[tuple[str, str]] = []
    for candidate in candidates:
        try:
            prediction = predict(
                candidate,
                profiles=profiles,
                machine=machine,
                batch_size=config.batch_size,
                link=link,
            )
        except ParnnError as error:  # e.g. a micro-batch the model cannot run
            skipped.append((candidate.label, " ".join(str(error).split())))
            continue
        predicted.append((candidate, prediction))
    if not predicted:
        reasons = "; ".join(f"{label}: {why}" for label, why in skipped)
        raise ConfigError(f"no candidate could be predicted for {config.model}: {reasons}")
    predicted.sort(key=lambda pair: -pair[1].samples_per_s)
    ranked = [PlannedCandidate(c, p, rank) for rank, (c, p) in enumerate(predicted, start=1)]
    if config.verify:
        ranked = _verify(config, shape, cores, ranked, on_measured)
    facts = machine_facts()
    facts.update(
        {
            "model_of_machine": machine.to_dict(),
            "point_to_point": None if comm is None else comm.to_dict(),
            "link": link.to_dict() if config.nodes > 1 else None,
            "extrapolated_threads": sorted(profiles.extrapolated_threads),
        }
    )
    assumptions: tuple[str, ...] = ASSUMPTIONS
    if on_paper:
        assumptions += tuple(a.format(T=machine_cores) for a in PAPER_ASSUMPTIONS)
    result_ranked = tuple(ranked)
    return PlanResult(
        config=config,
        input_shape=shape,
        cores=cores,
        candidates=result_ranked,
        reason=explain(result_ranked),
        machine=facts,
        assumptions=assumptions,
        skipped=tuple(skipped),
    )


def _verify(
    config: PlanConfig,
    shape: tuple[int, ...],
    cores: int,
    ranked: list[PlannedCandidate],
    on_measured: Callable[[PlannedCandidate], None] | None,
) -> list[PlannedCandidate]:
    settings = VerifySettings(
        model=config.model,
        input_shape=shape,
        batch_size=config.batch_size,
        data=config.data,
        data_dir=config.data_dir,
        steps=config.steps,
        warmup_steps=config.warmup_steps,
        measure_s=config.verify_seconds,
        seed=config.seed,
        # One optimizer for every candidate, the one the profiles price the update of (the
        # engines' own defaults differ: the pipelines' Adam costs several SGD updates).
        optimizer=OptimizerConfig(name="sgd", momentum=0.9),
    )
    runnable = [c for c in ranked if c.candidate.runnable]
    chosen = {id(c) for c in runnable[: config.verify]}
    for planned in ranked:
        c = planned.candidate
        if c.axis == "threads" and c.threads in (1, cores):
            chosen.add(id(planned))  # the baselines
    to_run = [planned for planned in ranked if id(planned) in chosen]
    runs: dict[int, list[float]] = {id(planned): [] for planned in to_run}
    failures: dict[int, str] = {}
    done = {id(planned): planned for planned in ranked}
    for repeat in range(config.verify_repeats):
        # each round starts one candidate later, so that none always runs first (or right
        # after the same neighbour) while the machine warms up or drifts
        shift = repeat % len(to_run) if to_run else 0
        for planned in to_run[shift:] + to_run[:shift]:
            key = id(planned)
            try:
                value = measure_candidate(planned.candidate, planned.prediction, settings)
            except ParnnError as error:  # one failed run (a rank timed out) is a result too
                failures[key] = " ".join(str(error).split())
            else:
                if value is not None:
                    runs[key].append(value)
            done[key] = PlannedCandidate(
                planned.candidate,
                planned.prediction,
                planned.rank,
                statistics.median(runs[key]) if runs[key] else None,
                failures.get(key),
                tuple(runs[key]),
            )
            if on_measured is not None:
                on_measured(done[key])
    return [done[id(planned)] for planned in ranked]
