"""``train(cfg) -> (metrics, objects)``: the application as a plain function.

``train.py`` only wraps it in ``@hydra.main``; tests compose a config and call it. :func:`train` builds each
object once, in order (data, optimizer, model, schedule and its range test, callbacks, loggers), each inside
:func:`~lightning_cyclic.validate.config_errors`, so the builds are the config's validation; then the Trainer
with all of them; then it fits and reports. The faults (a SIGTERM, a resume, the DDP ranks of a sweep's job) are
handled in :mod:`lightning_cyclic.faults`, the summary and the curves drawn in ``lightning_cyclic.report``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):  # first: without the extra, one line and nothing else imported
    import hydra  # noqa: F401  (named first: the message names it)
    import rich  # noqa: F401  (the default progress bar)
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from lightning_cyclic import _compat
from lightning_cyclic.callbacks import (
    BestSnapshot,
    FineTune,
    LRFinder,
    PlateauDecay,
    Preemption,
    ScheduleCallback,
    SnapshotEnsemble,
)
from lightning_cyclic.callbacks.pruning import OptunaPruning
from lightning_cyclic.checkpoint import SafeCheckpointIO
from lightning_cyclic.faults import (
    SaveOnInterrupt,
    SubmititLocalRanks,
    Terminated,
    _config_flags,  # noqa: F401  (read from here by the tests)
    checkpoint_to_resume,
    ddp_children_join_this_job,
    fit,
)
from lightning_cyclic.optim import lr_scale_factor
from lightning_cyclic.report import number, summary, training_curves
from lightning_cyclic.shapes._checks import check_choice
from lightning_cyclic.sweeps import (
    TRIAL_ENV,
    job_overrides,
    optuna_trial_of_this_job,
    swept_in_this_job,
    write_leaderboard_of_this_multirun,
    write_result,
)
from lightning_cyclic.validate import (
    ConfigError,
    _leaves,  # noqa: F401  (read from here by the tests)
    check_monitors,
    check_values,
    config_errors,
    located,
)

log = logging.getLogger(__name__)


class _NotTheUsersBusiness(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger, printed at every fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning_noise() -> None:
    """The app's one place for what Lightning and torch print that is not the user's business: the logger tip
    of every fit and torch's ``LeafSpec`` deprecation raised inside Lightning's own code. Idempotent; the
    callbacks (a library inside other projects) never change their host's warnings or logging."""
    import warnings

    leaf_spec = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
    warnings.filterwarnings("ignore", message=leaf_spec, category=FutureWarning)
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NotTheUsersBusiness) for f in logger.filters):
            logger.addFilter(_NotTheUsersBusiness())


def _float_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def _build_optimizer(cfg: DictConfig) -> Any:
    """The optimizer factory (a ``_partial_``: it takes the parameters), tried on one parameter now, so that what
    torch refuses (betas, alpha, eps, ...) fails before training, naming the argument. A schedule-free optimizer
    takes no schedule: one line says so."""
    import torch

    from lightning_cyclic.optim import is_schedule_free

    opt = cfg.optimizer
    with config_errors("optimizer", opt):
        factory = instantiate(opt)
    try:
        tried = factory(params=[torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        given = ", ".join(f"optimizer.{k}={v}" for k, v in opt.items() if k not in ("_target_", "_partial_"))
        raise ConfigError(f"optimizer {opt.get('_target_')} refuses its arguments ({given}): {err}") from None
    if is_schedule_free(tried) and cfg.get("schedule"):
        raise ConfigError(
            f"optimizer {type(tried).__name__} is schedule-free: it sets its own lr, so set schedule=null and add "
            f"its train/eval switching with callbacks=schedule_free (experiment=schedule_free does both)"
        )
    return factory


def _resume_from(cfg: DictConfig) -> str | None:
    try:
        return checkpoint_to_resume(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def check_config(cfg: DictConfig) -> None:
    """The config checked without training (a sweep's jobs, a DDP run, before they start): the values, the
    optimizer on one parameter, the checkpoint to resume from. :func:`train` makes the same checks as it builds."""
    check_values(cfg)
    _build_optimizer(cfg)
    _resume_from(cfg)


LR_DISAGREE = 10.0  # schedule.max_lr this many times above or below optimizer.lr: likely meant for another optimizer


def warn_if_lrs_disagree(cfg: DictConfig) -> str:
    """One warning line where ``schedule.max_lr`` was set to a number far from ``optimizer.lr`` (an SGD peak
    under Adam, say): the schedule's value is the one trained with. Returns the line ("" where none)."""
    schedule, optimizer = cfg.get("schedule"), cfg.get("optimizer")
    if not schedule or not optimizer or "max_lr" not in schedule or OmegaConf.is_interpolation(schedule, "max_lr"):
        return ""
    if swept_in_this_job("schedule.max_lr"):  # a sweep varies it on purpose (hparams_search=coarse spans 1e-3..10)
        return ""
    peak, lr = schedule.get("max_lr"), optimizer.get("lr")
    numbers = [isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in (peak, lr)]
    if not all(numbers) or 1 / LR_DISAGREE <= peak / lr <= LR_DISAGREE:
        return ""
    name = str(optimizer.get("_target_", "")).rsplit(".", 1)[-1]
    line = (
        f"schedule.max_lr={number(peak)} is {number(peak / lr)}x optimizer.lr={number(lr)} ({name}); the schedule "
        f"sets the lr at every step, so {number(peak)} is what trains. Meant for another optimizer? Leave "
        f"schedule.max_lr out (it follows optimizer.lr), or set schedule.max_lr=auto."
    )
    log.warning(line)
    return line


def hydra_app(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """``@hydra.main`` on the app's configs (``pkg://lightning_cyclic.conf``, ``train.yaml``), for the Hydra
    installed. Where Hydra checks the targets a config names against an execution whitelist (1.4 warns without
    one, 1.5 refuses), with ``UNSAFE_DISABLE_EXECUTION_CHECKS``: the app builds whatever its config names, as
    before, since that config is the user's own files and command line, trusted as the script itself (a
    ``model._target_`` of the user's own package keeps working); and there without ``version_base``, which that
    Hydra only reports (and deprecates). Elsewhere (Hydra 1.3, or a development build without the whitelist)
    with ``version_base="1.3"``, whose behaviour the app is written for. ``train.py`` and ``lightning-cyclic
    train`` are this."""
    import hydra

    kwargs: dict[str, Any] = {"config_path": "pkg://lightning_cyclic.conf", "config_name": "train", **version_base()}
    if "version_base" not in kwargs:  # (one feature decides both: no version_base where there are whitelists)
        from hydra.utils import UNSAFE_DISABLE_EXECUTION_CHECKS  # type: ignore[attr-defined]  # (Hydra >= 1.4)

        kwargs["execution_whitelist"] = UNSAFE_DISABLE_EXECUTION_CHECKS
    return hydra.main(**kwargs)(task)


def version_base() -> dict[str, str]:
    """The ``version_base`` argument to give Hydra's ``main``, ``initialize*`` and ``compose`` for the app's configs:
    ``{"version_base": "1.3"}`` (the behaviour they are written for) on a Hydra without execution whitelists, and
    nothing on one with them (Hydra 1.4 deprecates the argument and warns where it is given). For a program that
    composes the app's config itself::

        with initialize_config_module("lightning_cyclic.conf", **version_base()):
            metrics, objects = train(compose("train", overrides=["schedule=onecycle"]))
    """
    return {} if _compat.hydra_has_whitelists() else {"version_base": "1.3"}


def main(cfg: DictConfig) -> float | None:
    """What ``train.py`` runs: :func:`train`, and its optimized metric for sweeps.

    A bad config value in a single run prints one line (``error: ...``) and exits with status 2, without
    a traceback (``HYDRA_FULL_ERROR=1`` shows it); in a multirun it fails that job, which the leaderboard
    records with the message.
    """
    try:
        metrics, objects = train(cfg)
    except ConfigError as err:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    pruning = objects.get("pruning")
    if pruning is not None and pruning.pruned_at is not None:  # the sweeper records the trial as pruned
        import optuna

        raise optuna.TrialPruned(pruning.reason())
    return metrics.get(cfg.get("optimized_metric"))


def _processes(trainer_cfg: DictConfig) -> int:
    """How many processes the Trainer of ``trainer_cfg`` runs (devices x nodes), read before it is built: as
    Lightning resolves ``accelerator`` and ``devices`` (``auto``, a count, a list, ``-1``)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    kind = str(trainer_cfg.get("accelerator") or "auto")
    check_choice("trainer.accelerator", kind, ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())))
    if kind in ("auto", "gpu"):
        order = ("mps", "cuda") if kind == "gpu" else ("tpu", "mps", "cuda", "cpu")
        kind = next((k for k in order if AcceleratorRegistry[k]["accelerator"].is_available()), "cpu")
    accelerator = AcceleratorRegistry[kind]["accelerator"]
    devices = trainer_cfg.get("devices", "auto")
    devices = list(devices) if OmegaConf.is_list(devices) else devices
    devices = accelerator.auto_device_count() if devices == "auto" else devices
    count = len(accelerator.get_parallel_devices(accelerator.parse_devices(devices)))
    return count * (trainer_cfg.get("num_nodes") or 1)


def _cluster(cfg: DictConfig) -> list[SubmititLocalRanks]:
    """The ranks submitit's local executor started as the job's tasks, where it did (the cluster path run
    locally); checked against the processes the Trainer runs, before anything is built."""
    tasks = SubmititLocalRanks.tasks()
    if tasks is None:
        return []
    processes = _processes(cfg.trainer)
    if tasks != processes:
        raise ConfigError(
            f"submitit started {tasks} task(s) for this job but the Trainer runs {processes} processes "
            f"(trainer.devices={cfg.trainer.get('devices')!r} x trainer.num_nodes={cfg.trainer.get('num_nodes')!r}): "
            "each task is one rank, so set hydra.launcher.tasks_per_node to trainer.devices (hydra/launcher=local "
            "and slurm take it from there)"
        )
    return [SubmititLocalRanks()] if tasks > 1 else []


def _scale_lrs(cfg: DictConfig, datamodule: Any) -> tuple[float, int] | None:
    """Apply the opt-in lr scaling rule to the optimizer's and the schedule's lrs, before either is built;
    returns the factor and the number of processes it counted."""
    rule = cfg.get("lr_scaling", {}) or {}
    if not rule.get("rule"):
        return None
    with config_errors("trainer", cfg.trainer):
        processes = _processes(cfg.trainer)
    accumulate = cfg.trainer.get("accumulate_grad_batches") or 1
    batch = datamodule.hparams.batch_size * accumulate * processes
    with config_errors("lr_scaling", rule):
        factor = lr_scale_factor(batch, rule["base_batch_size"], rule["rule"])
    cfg.optimizer.lr = cfg.optimizer.lr * factor
    schedule = cfg.get("schedule")
    target = schedule.get("_target_") if schedule else None
    shape = getattr(located(target), "schedule_cls", None) if isinstance(target, str) else None
    for key in [name for name, arg in getattr(shape, "ARGS", {}).items() if arg.unit == "lr"]:  # as it declares
        if OmegaConf.is_interpolation(schedule, key):
            continue  # ${optimizer.lr} and its shares follow the optimizer's lr, scaled above
        value = schedule.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            schedule[key] = value * factor
    per_device, base = datamodule.hparams.batch_size, rule["base_batch_size"]
    line = "lr scaling (%s): effective batch %d = %d per device x %d accumulation x %d devices, base %d: lrs x %.4g"
    log.info(line, rule["rule"], batch, per_device, accumulate, processes, base, factor)
    return factor, processes


def _build_schedule(cfg: DictConfig, model: Any) -> tuple[Any, list[pl.Callback]]:
    """The schedule, and the callbacks that run it: the LR range test that fills its ``auto`` arguments first,
    then the schedule; none under ``schedule_via=scheduler``, where the model runs it inside
    ``configure_optimizers``."""
    if not cfg.get("schedule"):
        return None, []
    with config_errors("schedule", cfg.schedule):
        schedule = instantiate(cfg.schedule)
    if not isinstance(schedule, (ScheduleCallback, PlateauDecay, FineTune)):
        raise TypeError(
            f"schedule must build a lightning_cyclic schedule callback, got {type(schedule).__name__} "
            f"from _target_={cfg.schedule.get('_target_')!r}"
        )
    auto = isinstance(schedule, ScheduleCallback) and schedule.auto
    if cfg.get("schedule_via", "callback") == "scheduler":
        if not isinstance(schedule, ScheduleCallback):
            raise ConfigError(f"schedule_via=scheduler: {type(schedule).__name__} is a callback only; use callback")
        if auto:
            given = " and ".join(f"schedule.{name}=auto" for name in sorted(schedule.auto))
            raise ConfigError(
                f"schedule_via=scheduler cannot take {given}: the LR range test runs inside the fit, after "
                f"configure_optimizers has built the scheduler; use schedule_via=callback, or give a number"
            )
        model.schedule = schedule
        return schedule, []
    if auto and cfg.get("lr_finder"):
        with config_errors("lr_finder", cfg.lr_finder):
            finder: LRFinder = instantiate(cfg.lr_finder)
        schedule.finder = finder
        return schedule, [finder, schedule]
    return schedule, [schedule]


def _built(group: str, nodes: Any) -> list[Any]:
    """Each entry of a group of named nodes (callbacks, loggers) that is set, built."""
    built = []
    for name, node in (nodes or {}).items():
        if node:
            with config_errors(f"{group}.{name}", node):
                built.append(instantiate(node))
    return built


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Build data, optimizer, model, schedule, callbacks, loggers and trainer from ``cfg``; fit; report.

    Each is built once, in that order, and a value its constructor refuses is a :class:`ConfigError` naming
    the key, before anything trains. It builds whatever ``cfg`` names, as ``train.py`` does (:func:`hydra_app`):
    called from a program (a notebook, a recipe: ``compose`` then ``train(cfg)``) on a Hydra that checks targets
    against an execution whitelist (1.4 warns once per target without one, 1.5 refuses), with
    ``UNSAFE_DISABLE_EXECUTION_CHECKS`` where no whitelist is in force; where the caller set one
    (``execution_whitelist()``), that one decides.
    """
    with _trusting_the_config():
        return _train(cfg)


def _trusting_the_config() -> Any:
    """Hydra's ``execution_whitelist(UNSAFE_DISABLE_EXECUTION_CHECKS)`` where Hydra has whitelists and none is in
    force here; else nothing."""
    import contextlib

    import hydra.utils

    if not _compat.hydra_has_whitelists() or _compat.hydra_execution_whitelist_active():
        return contextlib.nullcontext()
    return hydra.utils.execution_whitelist(hydra.utils.UNSAFE_DISABLE_EXECUTION_CHECKS)  # type: ignore[attr-defined]


def _train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    cfg = cfg.copy()  # the lr scaling rule writes into it
    OmegaConf.set_struct(cfg, False)
    quiet_lightning_noise()
    check_values(cfg)
    ckpt_path = _resume_from(cfg)
    with config_errors("trainer", cfg.trainer):
        ranks = _cluster(cfg)  # (the tasks a cluster launcher started, checked before anything is built)
    warn_if_lrs_disagree(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    with config_errors("data", cfg.data):
        datamodule = instantiate(cfg.data)
    scaled = _scale_lrs(cfg, datamodule)
    optimizer = _build_optimizer(cfg)
    with config_errors("model", cfg.model):
        model = instantiate(
            cfg.model, optimizer=optimizer, input_shape=list(datamodule.input_shape), num_classes=datamodule.num_classes
        )
    check_monitors(cfg, model)
    schedule, scheduling = _build_schedule(cfg, model)
    bars = {"rich": RichProgressBar, "tqdm": TQDMProgressBar}
    kind = cfg.get("progress_bar", "rich")
    bar = bars[kind]() if kind in bars else None
    saver = SaveOnInterrupt()  # before BestSnapshot: last.ckpt holds the state at a signal, not the best weights
    trial = optuna_trial_of_this_job()  # a trial of the app's Optuna sweeper with a pruner: report to it
    pruning = OptunaPruning(monitor=cfg.get("optimized_metric", "val/acc"), **trial) if trial else None
    callbacks = [
        *scheduling,
        saver,
        *_built("callbacks", cfg.get("callbacks")),
        *([bar] if bar is not None else []),
        # SIGTERM: every rank stops after the same step (Lightning's own handler can leave DDP ranks waiting for
        # each other); SaveOnInterrupt writes last.ckpt, and the exit status is TERMINATED
        Preemption(ckpt_path=False),
        *([pruning] if pruning is not None else []),
    ]
    loggers = _built("logger", cfg.get("logger"))
    with config_errors("trainer", cfg.trainer):
        trainer: pl.Trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            enable_progress_bar=bar is not None,
            plugins=[SafeCheckpointIO(), *ranks],  # atomic, checksummed checkpoint files
        )
    factor = None
    if scaled is not None:
        factor, processes = scaled
        if trainer.world_size != processes:
            raise ConfigError(
                f"lr_scaling counted {processes} processes from trainer.devices={cfg.trainer.get('devices')!r} and "
                f"trainer.num_nodes={cfg.trainer.get('num_nodes')!r}, but the Trainer runs {trainer.world_size}; "
                f"give trainer.devices as a number"
            )
        for lg in trainer.loggers:
            lg.log_hyperparams({"lr_scaling/rule": cfg.lr_scaling.rule, "lr_scaling/factor": factor})

    with ddp_children_join_this_job():
        if trial and TRIAL_ENV not in os.environ:  # the DDP ranks Lightning starts follow rank 0's decisions
            os.environ[TRIAL_ENV] = json.dumps(trial)
        terminated = fit(trainer, model, datamodule, ckpt_path, saver)
        metrics = _float_metrics(trainer)
        snapshots = [c for c in _compat.trainer_callbacks(trainer) if isinstance(c, BestSnapshot)]
        best = next((c for c in snapshots if c.restore), snapshots[0] if snapshots else None)  # the one that restores
        if best is not None and best.restored and not terminated:  # measure the weights the model now holds
            trainer.validate(model, datamodule=datamodule, verbose=False)
            metrics.update(_float_metrics(trainer))
    ensemble = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, SnapshotEnsemble)), None)
    if ensemble is not None and ensemble.metrics:
        metrics["ensemble/val_acc"] = ensemble.metrics["val_acc"]
    curves = training_curves(trainer, cfg, schedule)
    metric = cfg.get("optimized_metric", "val/acc")
    pruned = pruning.reason() if pruning is not None else ""
    if trainer.is_global_zero:
        status = "terminated" if terminated else "pruned" if pruned else "finished"
        write_result(cfg.paths.output_dir, metric, metrics, job_overrides(), status=status, reason=terminated or pruned)
        print(summary(cfg, trainer, model, metrics, schedule, best, ensemble, curves, factor, terminated, pruned))
    if terminated:
        # a sweep stops here too (documented): record what ran so far, then exit as schedulers expect
        if trainer.is_global_zero:
            write_leaderboard_of_this_multirun(metric, cfg.get("optimized_mode", "max"))
        raise Terminated(terminated)
    objects = {"trainer": trainer, "model": model, "datamodule": datamodule, "schedule": schedule, "pruning": pruning}
    return metrics, {**objects, "best": best, "ensemble": ensemble, "curves": curves}
