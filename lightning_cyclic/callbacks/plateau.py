"""``PlateauDecay``: cut the lr when the monitored metric stops improving, and keep the best weights.

torch's ``ReduceLROnPlateau`` (the same decision: ``factor``, ``patience``, ``threshold`` and its mode,
``cooldown``, ``min_lr``; equal to it evaluation by evaluation) on top of :class:`BestSnapshot` (the best
weights kept on the CPU and put back at the end of ``fit``, early stopping with ``stop_patience``, NaN/inf
stops), with what Keras and Lightning users ask for besides:

- ``restore_best=True``: before each cut, the best weights so far are put back, so the smaller lr continues
  from the best point rather than from wherever the plateau wandered;
- an optional linear ``warmup`` (in ``interval`` units) from ``warmup_lr_init`` to the optimizer's lrs;
- under DDP the metric is rank 0's on every rank, so every rank cuts at the same evaluation and restores the
  same weights; the state (the cuts so far, the counters, the optimizer's base lrs) goes into checkpoints.

The lr of each param group is ``max(base * factor**cuts, min_lr)`` (``base``: the group's lr when training
started; groups keep their ratios), times the warmup's ramp during warmup.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_cyclic.callbacks.best import BestSnapshot
from lightning_cyclic.callbacks.plan import INTERVALS, plan, swa_takes_over
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.shapes.base import warmup_lr


class PlateauDecay(BestSnapshot):
    """Cut the lr by ``factor`` after ``patience`` evaluations without improvement; keep the best weights.

    Args:
        monitor: a metric logged by the LightningModule, e.g. ``"val/loss"``.
        mode: ``"min"`` or ``"max"``.
        factor: the lr is multiplied by this at each cut, in (0, 1).
        patience: cut after this many evaluations without improvement (as torch: more than ``patience``).
        threshold: how much better counts as an improvement, in ``threshold_mode`` terms.
        threshold_mode: ``"rel"`` (better than the best times ``1 -/+ threshold``) or ``"abs"``.
        cooldown: evaluations to wait after a cut before counting again.
        min_lr: no group's lr goes below this.
        warmup: linear warmup from ``warmup_lr_init`` to the optimizer's lrs, in ``interval`` units.
        warmup_lr_init: the lr where warmup starts.
        interval: ``"step"`` or ``"epoch"``, the unit of ``warmup``.
        restore_best: put the best weights back before each cut.
        stop_patience: stop the run after this many evaluations without improvement (``BestSnapshot``'s
            ``patience``); ``None`` never stops early.
        restore: put the best weights back at the end of ``fit``.
        strict: raise if ``monitor`` is not logged.
        verbose: report the improvements, the cuts, the stop and the restore.

    After ``fit``: ``cuts`` (``(epoch, step, lr)`` of each), besides ``BestSnapshot``'s ``best_score``,
    ``best_epoch``, ``stop_reason``... As for ``BestSnapshot``, the state (the cuts, the counters, the base lrs)
    belongs to one fit: a new ``fit`` with the same instance starts uncut from its optimizer's lrs, unless it
    resumes from a checkpoint, which restores them. Beside Lightning's ``StochasticWeightAveraging``, from SWA's
    first epoch on its ``SWALR`` sets the lr: no cut (nor restore) from then on, and the best weights still kept.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        warmup: float = 0,
        warmup_lr_init: float = 0.0,
        interval: str = "step",
        restore_best: bool = False,
        stop_patience: int | None = None,
        restore: bool = True,
        strict: bool = True,
        save_path: str | Path | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            monitor, mode, patience=stop_patience, restore=restore, strict=strict, save_path=save_path, verbose=verbose
        )
        check_number("factor", factor, 0, 1, low_open=True, high_open=True)
        check_number("patience", patience, 0, integer=True)
        check_number("threshold", threshold, 0)
        check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        check_number("cooldown", cooldown, 0, integer=True)
        check_number("min_lr", min_lr, 0)
        check_number("warmup", warmup, 0)
        check_number("warmup_lr_init", warmup_lr_init, 0)
        check_choice("interval", interval, INTERVALS)
        self.factor, self.plateau_patience, self.threshold = float(factor), int(patience), float(threshold)
        self.threshold_mode, self.cooldown, self.min_lr = threshold_mode, int(cooldown), float(min_lr)
        self.warmup, self.warmup_lr_init, self.interval = warmup, float(warmup_lr_init), interval
        self.restore_best = restore_best

    @override
    def _fresh(self) -> None:
        super()._fresh()
        self.cuts: list[tuple[int, int, float]] = []
        self.num_bad = 0
        self.cooldown_counter = 0
        self.plateau_best = math.inf if self.mode == "min" else -math.inf
        self._base: list[list[float]] | None = None  # per optimizer, per group: the lr training started with
        self._warmup_steps = 0.0
        self._written: tuple[int, float] | None = None  # (cuts, warmup step) last written; None: write again
        self._swa_epoch: int | None = None  # the epoch from which StochasticWeightAveraging sets the lr

    @property
    def state_key(self) -> str:
        return self._cached_state_key(monitor=self.monitor, mode=self.mode, factor=self.factor)

    # the decision, as torch's ReduceLROnPlateau makes it --------------------------------------------
    def _plateau_better(self, current: float) -> bool:
        best, t = self.plateau_best, self.threshold
        if self.mode == "min":
            return current < (best * (1 - t) if self.threshold_mode == "rel" else best - t)
        return current > (best * (1 + t) if self.threshold_mode == "rel" else best + t)

    @override
    def _evaluated(self, trainer: pl.Trainer, pl_module: pl.LightningModule, current: float) -> None:
        if not math.isfinite(current) or self._swa_time(trainer):
            return  # (SWA's epochs: its SWALR sets the lr, and a cut's restore would throw its average's path off)
        if self._plateau_better(current):
            self.plateau_best, self.num_bad = current, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.plateau_patience:
            self._cut(trainer, pl_module)
            self.cooldown_counter, self.num_bad = self.cooldown, 0

    def _cut(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = self.lead_lr()
        if before is not None and before <= self.min_lr:
            return  # at the floor already: nothing to cut (torch changes nothing either)
        if self.restore_best and self.snapshot is not None:
            pl_module.load_state_dict(self.snapshot)  # every rank holds the same snapshot
        self.cuts.append((trainer.current_epoch, trainer.global_step, 0.0))
        self._written = None
        self._write(trainer)
        after = self.lead_lr()
        self.cuts[-1] = (trainer.current_epoch, trainer.global_step, after if after is not None else math.nan)
        if self.verbose:
            back = f"; the best weights (epoch {self.best_epoch}) put back" if self.restore_best else ""
            rank_zero_info(
                f"PlateauDecay: no improvement of {self.monitor} in {self.plateau_patience + 1} evaluations: "
                f"lr {before:.4g} -> {after:.4g}{back}"
            )

    # the lr ---------------------------------------------------------------------------------------
    def base_lr(self) -> float | None:
        """The largest lr of the first optimizer's groups when training started (``None`` before)."""
        return max(self._base[0]) if self._base else None

    def lead_lr(self) -> float | None:
        """The lr of the first optimizer's largest group, as this callback sets it now (``None`` before training)."""
        if not self._base:
            return None
        return max(self._group_lr(base) for base in self._base[0])

    def describe(self, trainer: pl.Trainer) -> str:
        """One line for a run's summary: the monitor, the lr before and now, and the cuts."""
        base, now, cuts = self.base_lr(), self.lead_lr(), self.cuts
        at = f" (after epochs {', '.join(str(c[0]) for c in cuts)})" if cuts else ""
        lrs = " -> ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in (base, now))
        return f"PlateauDecay on {self.monitor}, lr {lrs}, {len(cuts)} cut{'' if len(cuts) == 1 else 's'}{at}"

    def _group_lr(self, base: float, step: float | None = None) -> float:
        lr = max(base * self.factor ** len(self.cuts), self.min_lr)
        if step is not None and step < self._warmup_steps:
            return warmup_lr(self.warmup_lr_init, lr, step, self._warmup_steps)
        return lr

    def _swa_time(self, trainer: pl.Trainer) -> bool:
        """Whether StochasticWeightAveraging sets the lr now (its epochs), not this callback."""
        return self._swa_epoch is not None and trainer.current_epoch >= self._swa_epoch

    def _write(self, trainer: pl.Trainer) -> None:
        if self._swa_time(trainer):
            return
        step = trainer.global_step
        warming = step < self._warmup_steps
        key = (len(self.cuts), float(step) if warming else -1.0)
        if self._written == key or self._base is None:
            return
        for opt, bases in zip(trainer.optimizers, self._base):
            for group, base in zip(opt.param_groups, bases):
                group["lr"] = self._group_lr(base, step if warming else None)
        self._written = key

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._base is None:  # a resume keeps the base lrs of the run it came from
            self._base = [[float(g["lr"]) for g in opt.param_groups] for opt in trainer.optimizers]
        unit = plan(trainer, self.interval)["steps_per_epoch"] if self.interval == "epoch" else 1
        self._warmup_steps = self.warmup * unit
        self._swa_epoch = swa_takes_over(trainer, type(self).__name__, type(self).__name__)
        self._written = None
        self._write(trainer)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._write(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lr = self.lead_lr()
        if lr is not None and not trainer.sanity_checking and not self._swa_time(trainer):  # (one point an epoch)
            for logger in trainer.loggers:
                logger.log_metrics({"lr": lr}, step=trainer.global_step)

    # checkpoints ------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "cuts": list(self.cuts),
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "plateau_best": self.plateau_best,
            "base": self._base,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.cuts = [(int(e), int(s), float(lr)) for e, s, lr in state_dict.get("cuts", [])]
        self.num_bad = state_dict.get("num_bad", 0)
        self.cooldown_counter = state_dict.get("cooldown_counter", 0)
        self.plateau_best = state_dict.get("plateau_best", self.plateau_best)
        self._base = state_dict.get("base")
