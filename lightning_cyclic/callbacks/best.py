"""``BestSnapshot``: early stopping that keeps the best weights and puts them back.

Lightning's ``EarlyStopping`` stops but leaves the *last* weights in the model. ``BestSnapshot`` tracks the best
value of a logged metric, keeps a copy of the weights that scored it (on the CPU: no accelerator memory, no file
unless asked), optionally stops after ``patience`` evaluations without improvement, stops cleanly when the loss or
the metric turns NaN/inf, and whatever ended ``fit`` (``max_epochs``, ``max_steps``, an early stop, a NaN, an
exception or Ctrl-C) puts the best weights back into the model: which weights, and when, the class says (with
``EMAWeightAveraging`` and ``StochasticWeightAveraging``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.callbacks.blowup import nonfinite_loss
from lightning_cyclic.callbacks.weights import cpu_state, holds_swa_average, save_state, training_point_warning
from lightning_cyclic.shapes._checks import check_choice, check_number


class BestSnapshot(Callback):
    """Keep the best weights by ``monitor``, optionally stop early, restore the best at the end of ``fit``.

    Args:
        monitor: a metric logged by the LightningModule, e.g. ``"val/loss"`` or ``"val/acc"``.
        mode: ``"min"`` or ``"max"``: whether lower or higher is better.
        patience: stop after this many evaluations without improvement; ``None`` never stops early.
        min_delta: an improvement must beat the best by more than this.
        check_finite: stop when the monitored metric or the training loss is NaN/inf. With a
            :class:`~lightning_cyclic.Guard` among the callbacks, a non-finite training loss is the
            Guard's to roll back (and to stop the fit on, when it gives up).
        stopping_threshold: stop as soon as the metric is at least this good.
        divergence_threshold: stop as soon as the metric is worse than this.
        restore: put the best weights back into the model at the end of ``fit``.
        strict: raise if ``monitor`` is not logged (with the metrics that are); else warn once.
        save_path: also write the best weights there (``torch.save`` of the state dict) at the end.
        verbose: report improvements, the stop and the restore.

    After ``fit``: ``best_score``, ``best_epoch``, ``best_step``, ``stopped_epoch``,
    ``stop_reason`` and ``kept_swa_average``. They belong to one fit: a second ``fit`` with the same instance (a k-fold
    loop) starts afresh, with no best and no snapshot, unless it resumes from a checkpoint
    (``ckpt_path``): the snapshot and counters go into checkpoints, so a resumed run keeps
    its best. Under DDP the decisions are made on all ranks together and every rank keeps
    and restores the same weights.

    Which weights, and when they go back:

    - The weights are copied when the first validation batch starts, after every callback's
      ``on_validation_epoch_start``: they are the weights the metric was computed with, also
      when a callback such as ``EMAWeightAveraging`` swaps its average in for validation.
      The copy becomes the snapshot only if the metric improved, and is dropped otherwise.
    - Memory: besides the snapshot, each validation holds one more copy of the
      ``state_dict`` on the CPU until its metric is known, so the peak is two copies of the
      model in CPU memory (none on the accelerator); each validation pays one copy to the CPU.
    - The best weights go back at ``on_fit_end``, after every callback's and the module's
      ``on_train_end`` (a weight-averaging callback writes its average into the model there)
      and after the strategy's teardown has moved the model to the CPU; on an exception, at
      ``on_exception``. Code that runs in ``on_train_end`` still sees the last weights.
    - With Lightning's ``StochasticWeightAveraging`` among the callbacks, a run that reached SWA's last epoch
      ends with SWA's average in the model (its ``on_train_end`` writes it there, and updates batch norm):
      that average is kept, not replaced by the best snapshot, with one line saying so, and
      ``kept_swa_average`` is ``True``; the best snapshot stays in ``snapshot`` (and in ``save_path``), so
      ``model.load_state_dict(best.snapshot)`` puts it in. A run that stopped before SWA's last epoch (an early
      stop, a NaN, an exception) has no average in the model and gets the best snapshot back as usual.
    """

    modes: ClassVar[tuple[str, ...]] = ("min", "max")

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        patience: int | None = None,
        min_delta: float = 0.0,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        restore: bool = True,
        strict: bool = True,
        save_path: str | Path | None = None,
        verbose: bool = True,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged metric, got {monitor!r}")
        check_choice("mode", mode, self.modes)
        if patience is not None:
            check_number("patience", patience, 1, integer=True)
        check_number("min_delta", min_delta, 0)
        for name, value in (("stopping_threshold", stopping_threshold), ("divergence_threshold", divergence_threshold)):
            if value is not None:
                check_number(name, value)
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, float(min_delta)
        self.check_finite, self.restore, self.strict, self.verbose = check_finite, restore, strict, verbose
        self.stopping_threshold, self.divergence_threshold = stopping_threshold, divergence_threshold
        self.save_path = Path(save_path) if save_path is not None else None
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` starts here (at ``setup``), then a checkpoint's state replaces it."""
        self.best_score: float = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        self.wait_count = 0
        self.stopped_epoch: int | None = None
        self.stop_reason = ""
        self.previous_stop_reason = ""  # the stop reason of the run a checkpoint came from
        self.restored = False
        self.kept_swa_average = False  # StochasticWeightAveraging's average was in the model at the end: kept
        self.snapshot: dict[str, torch.Tensor] | None = None
        self._candidate: dict[str, torch.Tensor] | None = None  # the weights being evaluated now
        self._warned_missing = False
        self._warned_schedule_free = False
        self._diverged = False
        self._guarded = False  # a Guard among the Trainer's callbacks handles a non-finite training loss

    @property
    def state_key(self) -> str:
        return self._cached_state_key(monitor=self.monitor, mode=self.mode)

    # decisions --------------------------------------------------------------
    def _better(self, current: float, best: float) -> bool:
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta

    def _metric(self, trainer: pl.Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            available = ", ".join(sorted(trainer.callback_metrics)) or "none yet"
            message = (
                f"BestSnapshot(monitor={self.monitor!r}) found no such metric; the metrics logged are: {available}. "
                f"Log it with self.log({self.monitor!r}, ...) or choose one of these."
            )
            if self.strict:
                raise RuntimeError(message)
            if not self._warned_missing:
                rank_zero_warn(message)
                self._warned_missing = True
            return None
        return float(value)

    def _stop(self, trainer: pl.Trainer, reason: str) -> None:
        trainer.should_stop = True
        self.stopped_epoch = trainer.current_epoch
        self.stop_reason = reason
        if self.verbose:
            rank_zero_info(f"{type(self).__name__}: stopping at epoch {trainer.current_epoch}: {reason}")

    # the evaluated weights ------------------------------------------------------
    def _tracking(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.state.fn == "fit" and not self._diverged

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._candidate = None

    @override
    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # the first batch of this validation, whichever loader it comes from: every callback's
        # on_validation_epoch_start has run, so these are the weights the metric will be computed with
        if self._candidate is None and self._tracking(trainer):
            self._candidate = cpu_state(pl_module)
            warning = "" if self._warned_schedule_free else training_point_warning(trainer, "BestSnapshot")
            if warning:
                self._warned_schedule_free = True
                rank_zero_warn(warning)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        candidate, self._candidate = self._candidate, None  # dropped unless it becomes the snapshot
        if not self._tracking(trainer):
            return  # after a NaN/inf loss the weights are never a snapshot, whatever their metric says
        current = self._metric(trainer)
        if current is None:
            return
        # every rank holds the same weights under DDP; rank 0's metric decides for all of them
        current = float(trainer.strategy.broadcast(current, src=0))
        if self.check_finite and not math.isfinite(current):
            self._stop(trainer, f"{self.monitor} is {current}")
            return
        if self._better(current, self.best_score):
            self.best_score, self.best_epoch, self.best_step = current, trainer.current_epoch, trainer.global_step
            # no validation batch ran (a monitor logged elsewhere): the weights in the model now
            self.snapshot = candidate if candidate is not None else cpu_state(pl_module)
            self.wait_count = 0
            if self.verbose:
                name = type(self).__name__
                rank_zero_info(f"{name}: {self.monitor} improved to {current:.5g} at epoch {self.best_epoch}")
        else:
            self.wait_count += 1
        reason = ""
        if self.stopping_threshold is not None and not self._better(self.stopping_threshold, current):
            reason = f"{self.monitor}={current:.5g} reached stopping_threshold={self.stopping_threshold}"
        elif self.divergence_threshold is not None and self._better(self.divergence_threshold, current):
            reason = f"{self.monitor}={current:.5g} is past divergence_threshold={self.divergence_threshold}"
        elif self.patience is not None and self.wait_count >= self.patience:
            reason = f"no improvement of {self.monitor} in {self.wait_count} evaluations (patience={self.patience})"
        if trainer.strategy.reduce_boolean_decision(bool(reason), all=False):
            self._stop(trainer, reason or "another rank decided to stop")
        self._evaluated(trainer, pl_module, current)

    def _evaluated(self, trainer: pl.Trainer, pl_module: pl.LightningModule, current: float) -> None:
        """After each evaluation's decisions, with the metric every rank agrees on (for subclasses)."""

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.check_finite or self._guarded:
            return
        reason = nonfinite_loss(trainer, pl_module, outputs)
        if reason:
            self._diverged = True
            self._stop(trainer, reason)

    # restore ----------------------------------------------------------------
    def _restore(self, pl_module: pl.LightningModule, why: str) -> None:
        if not self.restore or self.snapshot is None or self.restored:
            return
        pl_module.load_state_dict(self.snapshot)  # copies into the existing tensors, on their device
        self.restored = True
        if self.verbose:
            rank_zero_info(
                f"{type(self).__name__}: {why}; restored the weights of epoch {self.best_epoch} "
                f"(step {self.best_step}, {self.monitor}={self.best_score:.5g})"
            )

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a callback's state belongs to one fit: a checkpoint's is loaded after setup
            self._fresh()

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restored = False
        self.kept_swa_average = False
        self._diverged = False
        self._candidate = None
        # a Guard rolls a NaN/inf training loss back and goes on (and stops the fit itself when it gives up)
        self._guarded = any(getattr(c, "handles_nonfinite_loss", False) for c in _compat.trainer_callbacks(trainer))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the snapshot is final here (no validation follows); the weights go back later, at on_fit_end
        if self.save_path is not None and self.snapshot is not None and trainer.is_global_zero:
            save_state(self.snapshot, self.save_path)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after every callback's on_train_end, which may write other weights into the model
        if self.restore and self.snapshot is not None and not self.restored:
            if holds_swa_average(trainer, pl_module):
                self.kept_swa_average = True
                rank_zero_info(
                    f"{type(self).__name__}: the model holds StochasticWeightAveraging's average, written at the "
                    f"end of training; it is kept, not replaced by the best snapshot (epoch {self.best_epoch}, "
                    f"{self.monitor}={self.best_score:.5g}), which stays in .snapshot"
                    + (f" and {self.save_path}" if self.save_path is not None else "")
                )
                return
        self._restore(pl_module, self.stop_reason or "training ended")

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._candidate = None
        self._restore(pl_module, f"fit was interrupted ({type(exception).__name__})")

    # checkpoints ------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "snapshot": self.snapshot,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score", self.best_score)
        self.best_epoch = state_dict.get("best_epoch")
        self.best_step = state_dict.get("best_step")
        self.wait_count = state_dict.get("wait_count", 0)
        # how the saved run ended is history, not this run's stop: kept apart, never reported as this run's
        self.previous_stop_reason = state_dict.get("stop_reason", "")
        self.stopped_epoch, self.stop_reason = None, ""
        self.snapshot = state_dict.get("snapshot")
