"""K-fold cross-validation of several models and LR schedules, as parallel jobs.

    kfold = AsyncKFold(5, dataset, "runs/kfold", CrossEntropyLoss(), 32)
    results = kfold(["lenet5", "mlp"], ["cosine", "warm"], get_optimizer,
                    {"epochs": 2, "save_checkpoint_frequency": 20, "print_frequency": 15})
    print(results.table())

Jobs are model x schedule x fold. They run on a pool of worker processes, one pinned core
and one thread each, longest first (by a cost estimate of each model); with
``compare_serial`` the same jobs run again one after another on one worker, for the
speedup and the parallel-vs-serial accuracy table. Each job is seeded by itself, so both
give the same numbers. Everything is recorded in ``root_dir`` as it happens; ``resume``
continues an interrupted run without re-running finished jobs.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from parnn.data import kfold_splits
from parnn.errors import ConfigError
from parnn.jobs.config import KFOLD_TRAIN_SETTINGS, TRAINER_PARAMS, KFoldConfig
from parnn.jobs.fold_job import FoldContext, ModelSource, OptimizerFactory
from parnn.jobs.results import KFoldResults
from parnn.jobs.runner import SessionPlan, run_session
from parnn.jobs.scheduler import estimate_step_costs, longest_first
from parnn.jobs.spec import JobSpec, job_seed
from parnn.jobs.store import RunStore
from parnn.models import get_model_spec
from parnn.models.user import is_user_spec
from parnn.results import machine_facts
from parnn.train import SCHEDULES, dataset_tensors, make_criterion, num_batches

__all__ = ["AsyncKFold", "run_kfold"]


def _model_name(source: ModelSource) -> str:
    if isinstance(source, str):
        return source
    return str(getattr(source, "__name__", type(source).__name__))


def _describe_callable(value: object) -> Any:
    """``value.describe()`` when it has one (a dict of settings), else 'module.QualName'."""
    describe = getattr(value, "describe", None)
    if callable(describe):
        return describe()
    target = value if hasattr(value, "__qualname__") else type(value)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def _check_picklable(what: str, value: object) -> None:
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"{what} {_describe_callable(value)} cannot be sent to the worker processes "
            f"({type(error).__name__}); define it at the top level of a module (not a lambda "
            "or a local function)"
        ) from None


def _check_models(models: Sequence[ModelSource]) -> dict[str, ModelSource]:
    if not models:
        raise ConfigError("no models given: name at least one, e.g. --models lenet5,mlp")
    named: dict[str, ModelSource] = {}
    for source in models:
        name = _model_name(source)
        if name in named:
            raise ConfigError(f"model {name!r} is given twice: name each model once")
        if isinstance(source, str):
            if not is_user_spec(source):
                get_model_spec(source)  # ModelError listing the valid names
        else:
            if not callable(source):
                raise ConfigError(
                    f"model {source!r} is neither a name nor a callable returning an nn.Module"
                )
            _check_picklable("model factory", source)
        named[name] = source
    return named


def _check_schedulers(schedulers: Sequence[str]) -> list[str]:
    if not schedulers:
        raise ConfigError("no LR schedules given: e.g. --lr-schedules cosine,warm")
    names = [str(name).strip().lower() for name in schedulers]
    for name in names:
        if name not in SCHEDULES:
            raise ConfigError(
                f"unknown LR schedule {name!r}: choose from {', '.join(SCHEDULES)}, "
                "e.g. --lr-schedules cosine,warm"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"an LR schedule is given twice in {','.join(names)}: name each once")
    return names


def run_kfold(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    models: Sequence[ModelSource],
    schedulers: Sequence[str],
    config: KFoldConfig,
    *,
    root_dir: str | Path,
    criterion: nn.Module | None = None,
    get_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
    late_imports: Sequence[str] = (),
) -> KFoldResults:
    """Run (or resume) the k-fold study; see the module docstring. Failed jobs are in the
    results (``results.failed``); Ctrl-C stops every worker and raises KeyboardInterrupt
    with everything finished so far recorded. ``late_imports``: modules the caller uses
    once the run ends (its plots), imported on the first core that goes idle."""
    inputs, targets = dataset_tensors(dataset)  # (N, C, H, W), (N,)
    num_samples = int(targets.shape[0])
    if config.folds > num_samples:
        raise ConfigError(
            f"k-fold needs 2 <= k <= the number of samples ({num_samples}), got "
            f"k={config.folds}; use fewer folds or more samples"
        )
    named = _check_models(models)
    schedules = _check_schedulers(schedulers)
    if config.cluster is not None:
        from parnn.jobs.dask_executor import check_cluster_run

        check_cluster_run(config.cluster, root_dir, workers=config.workers)
        root_dir = Path(root_dir).resolve()  # the workers' paths, whatever their directory
    criterion = criterion if criterion is not None else make_criterion()
    get_optimizer = (
        get_optimizer if get_optimizer is not None else OptimizerFactory(config.train.optimizer)
    )
    _check_picklable("get_optimizer", get_optimizer)
    _check_picklable("criterion", criterion)
    num_classes = int(getattr(dataset, "num_classes", 0) or int(targets.max()) + 1)
    input_shape = tuple(int(size) for size in inputs.shape[1:])
    name = str(getattr(dataset, "name", type(dataset).__name__))
    settings = _settings(inputs, targets, name, named, schedules, config, criterion, get_optimizer)

    # Everything that can be refused is checked before the directory is touched.
    step_costs = estimate_step_costs(
        named,
        input_shape=input_shape,
        num_classes=num_classes,
        batch_size=config.train.batch_size,
        threads=config.threads,
        method=config.cost_method,
    )
    store = RunStore(root_dir)
    session = store.open(settings, resume=config.resume)

    splits = kfold_splits(num_samples, config.folds, seed=config.train.seed)
    jobs = []
    for model in named:
        for schedule in schedules:
            for fold, (train_index, _) in enumerate(splits):
                total = config.train.steps or config.train.epochs * num_batches(
                    len(train_index), config.train.batch_size
                )
                jobs.append(
                    JobSpec(
                        model=model,
                        lr_schedule=schedule,
                        fold=fold,
                        seed=job_seed(config.train.seed, model, fold),
                        total_steps=total,
                        cost_s=step_costs[model] * total,
                    )
                )
    context = FoldContext(
        inputs=inputs,
        targets=targets,
        num_classes=num_classes,
        splits=splits,
        models=named,
        get_optimizer=get_optimizer,
        criterion=criterion,
        batch_size=config.train.batch_size,
        warmup_steps=config.train.warmup_steps,
        save_checkpoint_frequency=config.save_checkpoint_frequency or None,
        checkpoint_interval_s=config.checkpoint_interval_s or None,
        print_frequency=config.print_frequency,
        checkpoint_dir="",  # set per mode by run_session
        eval_batch_size=config.train.eval_batch_size,
    )
    plans = [("parallel", config.resolved_workers(), config.threads)]
    if config.compare_serial:
        plans.append(("serial", 1, config.serial_threads))
    for mode, workers, threads in plans:
        finished = store.finished(mode)
        todo = longest_first([job for job in jobs if job.job_id not in finished], cost=_cost)
        if not todo:
            continue
        plan = SessionPlan(
            mode=mode,
            session=session,
            num_workers=workers,
            threads_per_job=threads,
            start_method=config.start_method,
            monitor_interval_s=config.monitor_interval_s,
            quiet=config.quiet,
            cluster=config.cluster if mode == "parallel" else None,
            late_imports=late_imports,
        )
        run_session(plan, todo, context, store)
    results = KFoldResults.load(
        root_dir,
        cost={"method": config.cost_method, "step_cost": step_costs},
        machine=machine_facts(),
    )
    results.save()
    return results


def _cost(job: JobSpec) -> float:
    return job.cost_s


def _settings(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    data_name: str,
    models: Mapping[str, ModelSource],
    schedulers: list[str],
    config: KFoldConfig,
    criterion: nn.Module,
    get_optimizer: object,
) -> dict[str, Any]:
    """The settings that fix a run's results: a resume must agree on all of them."""
    digest = hashlib.sha1(inputs.contiguous().numpy().tobytes())
    digest.update(targets.contiguous().numpy().tobytes())
    return {
        "models": list(models),
        "model_sources": [
            source if isinstance(source, str) else _describe_callable(source)
            for source in models.values()
        ],
        "lr_schedules": schedulers,
        "folds": config.folds,
        "seed": config.train.seed,
        "batch_size": config.train.batch_size,
        "epochs": config.train.epochs if config.train.steps is None else None,
        "steps": config.train.steps,
        "warmup_steps": config.train.warmup_steps,
        "threads": config.threads,
        "serial_threads": config.serial_threads,
        "optimizer": _describe_callable(get_optimizer),
        "criterion": repr(criterion),
        "data": {
            "name": data_name,
            "num_samples": int(targets.shape[0]),
            "input_shape": list(inputs.shape[1:]),
            "sha1": digest.hexdigest()[:16],
        },
    }


class AsyncKFold:
    """K-fold cross-validation as parallel jobs, in the seed project's shape:

        kfold = AsyncKFold(k, dataset, root_dir, criterion, batch_size)
        results = kfold(models, schedulers, get_optimizer, trainer_params)

    ``models``: zoo names / user specs ('file.py:build'), or picklable callables returning
    a model (given ``input_shape``/``num_classes`` when they take them). ``schedulers``:
    LR schedule names (constant, step, cosine, warm). ``get_optimizer(model)`` returns the
    optimizer (a picklable top-level function or object; None: Adam, lr 0.003).
    ``trainer_params``: epochs, steps, save_checkpoint_frequency, print_frequency,
    warmup_steps. Keyword options are the fields of :class:`KFoldConfig`.
    """

    def __init__(
        self,
        k: int,
        dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
        root_dir: str | Path,
        criterion: nn.Module | None = None,
        batch_size: int = 32,
        **options: Any,
    ) -> None:
        own = set(KFoldConfig.__dataclass_fields__) | set(KFOLD_TRAIN_SETTINGS)
        allowed = sorted(own - {"train", "folds", "batch_size", *TRAINER_PARAMS})
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown AsyncKFold option(s) {', '.join(unknown)}: choose from "
                f"{', '.join(allowed)} ({', '.join(TRAINER_PARAMS)} go in trainer_params)"
            )
        self.dataset = dataset
        self.root_dir = Path(root_dir)
        self.criterion = criterion
        self.base = KFoldConfig.of(folds=k, batch_size=batch_size, **options)
        num_samples = len(dataset)  # type: ignore[arg-type]
        if k > num_samples:
            raise ConfigError(
                f"k-fold needs 2 <= k <= the number of samples ({num_samples}), got k={k}; "
                "use fewer folds or more samples"
            )

    def __call__(
        self,
        models: Sequence[ModelSource],
        schedulers: Sequence[str],
        get_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
        trainer_params: Mapping[str, Any] | None = None,
    ) -> KFoldResults:
        params = dict(trainer_params or {})
        unknown = sorted(set(params) - set(TRAINER_PARAMS))
        if unknown:
            raise ConfigError(
                f"unknown trainer_params {', '.join(unknown)}: use {', '.join(TRAINER_PARAMS)}"
            )
        config = self.base.replace(**params)
        return run_kfold(
            self.dataset,
            models,
            schedulers,
            config,
            root_dir=self.root_dir,
            criterion=self.criterion,
            get_optimizer=get_optimizer,
        )
