"""``OptunaPruning``: report the monitored metric to an Optuna trial at every validation; stop when it is pruned.

The app's Optuna sweeper (``hydra/sweeper=optuna``) adds it to every job: the job opens its trial by number
from the study's storage (no trial object crosses processes), so it works the same in-process, with the joblib
launcher's worker processes and with submitit's jobs. Any Lightning project can add it too, with a trial it
holds (``OptunaPruning(trial, monitor="val/acc")`` inside an objective) or a trial number and a storage.

When it is a trial's pruner's call: not before ``warmup`` validations. ``"auto"`` reads it off the run's
schedule: the share of the run before the lr first reaches its highest value (one-cycle's ``pct_start``, a
warmup's length), in validations, plus one. A one-cycle trial's early validations come at a high lr, where its
metric says little about where it ends, so a pruner that compared trials there could stop the one that would
win; after the peak the lr only falls and the ranking settles. A run without a schedule that rises: 1.

Under DDP rank 0 reports and decides, and broadcasts the decision, so every rank stops after the same
validation. A callback never destroys a finished run: a storage it cannot reach is a warning, not an error.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.shapes._checks import check_choice, check_number

PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "threshold", "none")
JOURNAL = "journal:///"  # journal:///<file> (relative) or journal:////<file> (absolute), as sqlite:/// is written
PEAK_SAMPLES = 2000  # lr values read to find where the schedule first peaks


def open_storage(url: str) -> Any:
    """What ``optuna.create_study(storage=...)`` takes for ``url``: a journal file storage for
    ``journal:///<file>`` (workers on a shared filesystem), else the URL itself (``sqlite:///...``, any
    database URL Optuna accepts)."""
    if not url.startswith(JOURNAL):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend  # (Optuna 4.0's name for JournalFileStorage)

    return JournalStorage(JournalFileBackend(url[len(JOURNAL) :]))


def make_pruner(kind: str, warmup: int = 0, args: dict[str, Any] | None = None) -> Any:
    """The Optuna pruner ``kind`` (one of ``PRUNERS``), silent before ``warmup`` steps; ``args`` are its own
    keywords (``percentile``, ``n_startup_trials``, ``reduction_factor``, ``lower``...), which win."""
    check_choice("pruner", kind, PRUNERS)
    import optuna

    p, given = optuna.pruners, dict(args or {})
    if kind == "median":
        return p.MedianPruner(**{"n_warmup_steps": warmup, **given})
    if kind == "percentile":
        return p.PercentilePruner(**{"percentile": 25.0, "n_warmup_steps": warmup, **given})
    if kind == "threshold":
        return p.ThresholdPruner(**{"n_warmup_steps": warmup, **given})
    if kind == "successive_halving":  # its first rung: the warmup
        return p.SuccessiveHalvingPruner(**{"min_resource": max(1, warmup), **given})
    if kind == "hyperband":
        return p.HyperbandPruner(**{"min_resource": max(1, warmup), **given})
    return p.NopPruner()


def validations_planned(trainer: pl.Trainer) -> int:
    """How many validations the fit will run (each counts as one step of the trial)."""
    per_epoch = 1
    batches, every = trainer.num_training_batches, getattr(trainer, "val_check_batch", None)
    if isinstance(every, int) and every > 0 and math.isfinite(batches):
        per_epoch = max(1, int(batches) // every)
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    if epochs is None:  # a run of max_steps
        steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches)) if math.isfinite(batches) else 1
        epochs = max(1, math.ceil(trainer.estimated_stepping_batches / steps_per_epoch))
    return max(1, epochs // (trainer.check_val_every_n_epoch or 1) * per_epoch)


def peak_share(trainer: pl.Trainer) -> float:
    """The share of the run before the lr of the trainer's schedule callback first reaches its highest value
    (0 where there is none, or it starts at its peak)."""
    from lightning_cyclic.callbacks.schedule import ScheduleCallback, plan

    schedule = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, ScheduleCallback)), None)
    shape = getattr(schedule, "schedule", None)
    total = plan(trainer)["total_steps"] if shape is not None else None
    if shape is None or not total:
        return 0.0
    points = [total * i / PEAK_SAMPLES for i in range(PEAK_SAMPLES + 1)]
    lrs = [shape(x)[0] for x in points]
    top = max(lrs)
    first = next(i for i, lr in enumerate(lrs) if lr >= top * (1 - 1e-9))
    return first / PEAK_SAMPLES


class OptunaPruning(Callback):
    """Report ``monitor`` to an Optuna trial after every validation; stop the fit when the trial should be pruned.

    Args:
        trial: an ``optuna.trial.Trial`` (its study's pruner decides), or the number of a trial of
            ``study_name`` in ``storage``, opened at the start of training with the pruner ``pruner``.
        monitor: the logged metric to report (the one the study optimizes).
        storage: with a trial number: an Optuna storage URL, or ``journal:///<file>`` for a journal file.
        study_name: with a trial number: the study.
        pruner: with a trial number: ``median``, ``percentile``, ``successive_halving``, ``hyperband``,
            ``threshold`` or ``none``; ``pruner_args`` are its keywords.
        warmup: validations before the trial may be pruned, or ``"auto"`` (see the module's docstring).

    After a fit, ``pruned_at`` says where it stopped (``None``: it was not pruned) and ``warmup_used`` is the
    warmup it applied. The trial's user attribute ``pruned_at`` records the same.
    """

    def __init__(
        self,
        trial: Any,
        monitor: str = "val/acc",
        storage: str | None = None,
        study_name: str | None = None,
        pruner: str = "median",
        pruner_args: dict[str, Any] | None = None,
        warmup: int | str = "auto",
    ) -> None:
        check_choice("pruner", pruner, PRUNERS)
        if warmup != "auto":
            check_number("warmup", warmup, 0, integer=True)
        if isinstance(trial, int) and not isinstance(trial, bool):
            if not storage or not study_name:
                raise ValueError(f"OptunaPruning(trial={trial}) needs storage and study_name to open the trial")
        elif not (hasattr(trial, "report") and hasattr(trial, "should_prune")):
            raise TypeError(f"trial must be an optuna.trial.Trial or a trial number, got {type(trial).__name__}")
        self.trial, self.monitor, self.storage, self.study_name = trial, monitor, storage, study_name
        self.pruner, self.pruner_args, self.warmup = pruner, dict(pruner_args or {}), warmup
        self._fresh()

    def _fresh(self) -> None:
        self.validations = 0  # validations reported in this fit: the trial's step
        self.warmup_used = 0
        self.pruned_at: dict[str, Any] | None = None
        self._trial: Any = None  # the trial, opened on rank 0
        self._warned: set[str] = set()

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            rank_zero_warn(f"OptunaPruning: {message}")

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._fresh()  # a checkpoint's state, if the fit resumes, is loaded after this

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.warmup == "auto":
            self.warmup_used = math.ceil(peak_share(trainer) * validations_planned(trainer)) + 1
        else:
            self.warmup_used = int(self.warmup)
        if not trainer.is_global_zero:
            return
        try:
            self._trial = self._open()
        except Exception as err:  # a storage out of reach: the run goes on, unpruned
            self._warn_once("open", f"could not open the trial ({type(err).__name__}: {err}); the run is not pruned")
            return
        try:
            self._trial.set_user_attr("pruning_warmup", self.warmup_used)
        except Exception:  # (a trial object of the user's may not take attributes)
            pass

    def _open(self) -> Any:
        if not isinstance(self.trial, int):
            return self.trial
        import optuna

        pruner = make_pruner(self.pruner, self.warmup_used, self.pruner_args)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=open_storage(str(self.storage)),
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(),  # (never asked: the sweeper samples)
        )
        return _compat.optuna_trial(study, self.trial)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or _compat.fast_dev_run(trainer):
            return  # (trainer.validate after the fit, BestSnapshot's measure of the best weights: not a step)
        if self.pruned_at is not None:
            return
        self.validations += 1
        prune, value = False, None
        if trainer.is_global_zero and self._trial is not None:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                found = ", ".join(sorted(trainer.callback_metrics)) or "none"
                self._warn_once("monitor", f"{self.monitor!r} is not logged (logged: {found}); nothing is reported")
            else:
                value = float(metric)
                try:
                    self._trial.report(value, self.validations)
                    # never at the last validation: the run is spent, pruning it would only drop its result
                    last = self.validations >= validations_planned(trainer)
                    prune = self.validations >= self.warmup_used and not last and bool(self._trial.should_prune())
                except Exception as err:  # the storage went away mid-run: the run goes on
                    self._warn_once("report", f"could not report to the trial ({type(err).__name__}: {err})")
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if not prune:
            return
        trainer.should_stop = True
        self.pruned_at = {
            "validation": self.validations,
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "value": value,
            "planned": validations_planned(trainer),
        }
        if trainer.is_global_zero and self._trial is not None:
            try:
                self._trial.set_user_attr("pruned_at", self.pruned_at)
            except Exception:
                pass
            rank_zero_info(f"OptunaPruning: {self.reason()}")

    def reason(self) -> str:
        """One line for a leaderboard: where the run was pruned ("" while it was not)."""
        at = self.pruned_at
        if at is None:
            return ""
        value = f", {self.monitor} = {at['value']:.4f}" if isinstance(at.get("value"), float) else ""
        pruner = self.pruner if isinstance(self.trial, int) else type(self.trial.study.pruner).__name__
        return (
            f"pruned ({pruner}) at validation {at['validation']} of {at['planned']} (step {at['step']}, "
            f"epoch {at['epoch']}){value}; warmup {self.warmup_used} validations"
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations, "pruned_at": self.pruned_at}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = state_dict.get("validations", 0)
        self.pruned_at = state_dict.get("pruned_at")
