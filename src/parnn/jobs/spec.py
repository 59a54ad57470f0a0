"""A k-fold job and what it produced.

A job is one model trained with one learning-rate schedule on the training part of one
fold and scored on that fold's held-out part. Jobs are independent: each has its own seed
(derived from the run's seed, the model and the fold), so it gives the same numbers in any
process, in any order, parallel or serial.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MODES", "JobResult", "JobSpec", "job_seed"]

MODES = ("parallel", "serial")  # how a set of jobs was run: the pool, or one after another


def job_seed(base_seed: int, model: str, fold: int) -> int:
    """The seed of every job of ``model`` on ``fold``: weights, data order and dropout.

    The schedule is left out on purpose, so that two schedules of the same model on the
    same fold start from the same weights and see the same batches: their difference is
    the schedule's alone.
    """
    return (base_seed * 1_000_003 + zlib.crc32(f"{model}|{fold}".encode())) % 2**31


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One unit of work: ``model`` x ``lr_schedule`` x ``fold``."""

    model: str  # the model's name (registry name, user spec, or a factory's name)
    lr_schedule: str  # learning-rate schedule name (parnn.train.SCHEDULES)
    fold: int  # 0-based fold index
    seed: int  # job_seed(run seed, model, fold)
    total_steps: int  # optimizer steps the job runs
    cost_s: float  # estimated seconds (or relative units) the job takes: the ordering key

    @property
    def job_id(self) -> str:
        """'lenet5/cosine/fold0': unique within a run."""
        return f"{self.model}/{self.lr_schedule}/fold{self.fold}"

    @property
    def file_stem(self) -> str:
        """A file-name-safe form of the id, for checkpoints."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.job_id.replace("/", "--"))


@dataclass(slots=True)
class JobResult:
    """What a job produced, or how it failed. One line of ``jobs.jsonl``."""

    job_id: str
    model: str
    lr_schedule: str
    fold: int
    mode: str  # "parallel" or "serial"
    status: str  # "ok" or "failed"
    seed: int
    accuracy: float | None = None  # on the fold's held-out samples, 0-1
    loss: float | None = None  # mean cross-entropy on the held-out samples
    train_loss: float | None = None  # the last optimizer step's mini-batch loss
    per_class_accuracy: list[float | None] = field(default_factory=list)  # None: no sample
    steps: int = 0  # optimizer steps done
    samples: int = 0  # training samples seen
    num_train: int = 0  # size of the fold's training part
    num_val: int = 0  # size of the fold's held-out part
    time_s: float = 0.0  # seconds of work on this job, over all sessions
    start_s: float = 0.0  # start in its session, seconds since the session began
    end_s: float = 0.0  # end in its session, seconds since the session began
    session: int = 0  # which session (0 = first run, 1 = first --resume, ...) finished it
    worker: int = 0  # the worker (pool slot) that ran it
    threads: int = 1  # intra-op threads of that worker
    resumed_from_step: int = 0  # 0: started fresh; else the checkpoint's step
    cost_s: float = 0.0  # the estimate that ordered it
    loss_history: list[list[float]] = field(default_factory=list)  # [step, loss] pairs
    error: str | None = None  # "ExcType: message" when failed
    warnings: list[str] = field(default_factory=list)
    host: str | None = None  # the worker's host when the jobs ran on a Dask cluster

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> JobResult:
        names = set(cls.__dataclass_fields__)
        renamed = {"scheduler": "lr_schedule"}  # records written before the rename
        values = {renamed.get(key, key): value for key, value in payload.items()}
        return cls(**{key: value for key, value in values.items() if key in names})
