"""Schedule callbacks: add one to the callbacks of any Lightning project.

The project's ``configure_optimizers`` stays as it is (a plain optimizer); the
callback writes lr and momentum into it before every optimizer step from a
closed-form schedule of ``trainer.global_step``. So gradient accumulation,
``limit_train_batches``, ``max_steps``, DDP and resuming from a checkpoint all
give the planned trajectory, and nothing ever raises "tried to step N times":
past the planned end the schedule holds its final value.

Lengths are given in ``interval`` units ("step" or "epoch");
:meth:`~lightning_cyclic.callbacks.arguments.ScheduleArguments.build` is the one place where epochs become
optimizer steps, from :func:`plan`. Where epochs change length
(``reload_dataloaders_every_n_epochs`` with a train dataloader of another length each epoch), a schedule in
epochs is placed at the epochs completed plus the share of the current epoch done, so its restarts and
milestones fall on the real epoch boundaries; a schedule in steps is re-planned at each epoch for the steps
done plus this epoch's length for every epoch left, and says so once.

When the lr is written: at ``on_train_start`` for the first step, then right after every
training batch (``on_train_batch_end``) for the next one, so it is in the optimizer before any
callback's ``on_train_batch_start`` reads it, whatever the callback order (``LearningRateMonitor``
before or after ours logs the same values); ``on_train_batch_start`` and
``on_before_optimizer_step`` write it again where something else changed it in between.

The step: under automatic optimization, ``trainer.global_step``. Under manual optimization
Lightning's ``global_step`` counts every ``optimizer.step()`` of every optimizer (a GAN steps two
per batch), so the schedule counts training *batches* instead, and its length is
``trainer.estimated_stepping_batches`` batches. ``optimizer=`` picks which optimizers one
callback drives (an index or a list of indices into ``trainer.optimizers``); two callbacks with
different ``optimizer=`` give each optimizer its own schedule.

Param groups that appear mid-fit (``BackboneFinetuning`` unfreezing a backbone with
``optimizer.add_param_group``) are scheduled from the next write on. A new group keeps the ratio
its lr had, when it appeared, to the group the schedule drives (the group with the largest lr at
the start); from then on it moves with the schedule like every other group.

Lightning's ``StochasticWeightAveraging`` among the callbacks: from its first epoch on (``swa_epoch_start``,
computed as SWA does, a share of ``max_epochs`` included) the lr is its ``SWALR``'s, which anneals from the
lr the schedule left in the optimizer to ``swa_lrs``; the schedule writes (and logs) nothing from then on,
and says so in one line per fit. It is still planned for the whole run, as without SWA, so it stops
wherever it is at SWA's first epoch; to finish a one-cycle where SWA starts, give it ``total_steps``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic.callbacks.arguments import AUTO, ScheduleArguments, as_pair
from lightning_cyclic.callbacks.plan import INTERVALS, RunPlan, Timeline, lr_at, plan, plan_change, swa_takes_over
from lightning_cyclic.callbacks.writing import ScheduleWriter
from lightning_cyclic.optim import is_schedule_free
from lightning_cyclic.shapes import Schedule

__all__ = ["AUTO", "INTERVALS", "RunPlan", "ScheduleArguments", "ScheduleCallback", "as_pair", "plan"]
_MOVED = {  # the callbacks that lived in this module, where they are now
    **dict.fromkeys(("OneCycle", "Cyclical", "WarmRestarts"), "cycles"),
    **dict.fromkeys(("WarmupDecay", "WarmupStableDecay"), "decays"),
    **dict.fromkeys(("Sequential", "CustomSchedule"), "composed"),
}


def __getattr__(name: str) -> Any:
    """``from lightning_cyclic.callbacks.schedule import OneCycle`` still works (the callbacks are built on this
    module, so it cannot import them up front)."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"lightning_cyclic.callbacks.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ScheduleCallback(ScheduleArguments):
    """Base class: a schedule class, its arguments, and which of them are lengths.

    A subclass sets ``schedule_cls`` (a :class:`~lightning_cyclic.shapes.Schedule`, whose fields declare the
    arguments once) and passes the arguments to ``__init__``; this class checks them at once against that
    declaration ("auto" ones once the range test has filled them), reads off it which arguments are lengths
    (converted from epochs in :meth:`~lightning_cyclic.callbacks.arguments.ScheduleArguments.build`) and which
    may be "auto", builds the schedule once per fit at ``on_train_start`` from :func:`plan` and writes it before
    every optimizer step (``_next``, the one place that decides the lr).

    Logging: ``lr`` and ``momentum`` (the schedule's values, i.e. those of the group with the
    largest lr) go straight to ``trainer.loggers`` at Lightning's ``log_every_n_steps``, at the same
    step numbers ``LearningRateMonitor`` uses; a callback given ``optimizer=i`` logs
    ``lr-optimizer{i}`` / ``momentum-optimizer{i}`` instead, so two of them do not collide.
    ``log=False`` logs nothing.

    The state (the plan, the param groups' ratios, the values found for ``"auto"`` arguments) belongs to one
    fit: a second ``fit`` with the same instance (a k-fold loop) plans its own run and runs its own range test;
    a fit resumed from a checkpoint (``ckpt_path``) takes the checkpoint's, so it goes on on the same trajectory.
    """

    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` starts here (at ``setup``), then a checkpoint's state replaces it."""
        super()._fresh()
        self._timeline = Timeline(self.interval, fixed_length=self.total_steps is not None)
        self._ratios: list[list[float]] | None = None  # per optimizer, per param group (a checkpoint's, until start)
        self._writer: ScheduleWriter | None = None  # None: the schedule writes nothing (before start, fast_dev_run)
        self._position: float = 0  # the next optimizer step's place in the schedule
        self._logged: float | None = None  # the last position logged
        self._manual = False  # manual optimization: the schedule counts training batches
        self._swa_epoch: int | None = None  # the epoch from which StochasticWeightAveraging sets the lr

    @property
    def schedule(self) -> Schedule | None:
        """This fit's schedule in optimizer steps, once training has started (``None`` where it is not applied)."""
        return self._writer.schedule if self._writer is not None else None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # a callback's state belongs to one fit: a checkpoint's is loaded after setup, before on_fit_start
        self._last_resolved = self.resolved or self._last_resolved
        self._fresh()
        if self.finder is not None:
            self.finder._fresh()  # its result too: a new model gets a new range test

    # the fit ----------------------------------------------------------------
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = type(self).__name__
        self._manual = not pl_module.automatic_optimization  # (the step counts batches under manual)
        run, saved = self.planned(trainer), self._timeline.plan
        if saved is not None and _compat.reload_every(trainer):
            run = saved  # epochs change length: the checkpoint's unit, re-planned at each epoch (see Timeline)
        elif saved is not None and saved != run:
            step = self._step(trainer)
            jumps, line = plan_change(
                name, saved, run, lr_at(self.build, saved, step), lr_at(self.build, run, step), step
            )
            (rank_zero_warn if jumps else rank_zero_info)(line)
        self._timeline.plan = run
        try:
            schedule = self.build(**run)
        except ValueError as err:
            if not _compat.fast_dev_run(trainer):
                raise
            # fast_dev_run's run of a step or two is no real training (and runs no range test): say so, not fail
            unfilled = self.auto and self.resolved is None
            why = f"its {', '.join(sorted(self.auto))}='auto' needs the LR range test, which fast_dev_run skips"
            rank_zero_warn(f"{name} is not applied under fast_dev_run: {why if unfilled else err}")
            self._writer = None
            return
        if self.resolved:
            found = {f"{name}/{arg}": value for arg, value in self.resolved.items()}
            for logger in trainer.loggers:
                logger.log_metrics(found, step=trainer.global_step)
            rank_zero_info(f"{name}: using " + ", ".join(f"{k}={v:.4g}" for k, v in self.resolved.items()))
        if trainer.lr_scheduler_configs:
            rank_zero_warn(
                f"{name} sets the lr at every step, and configure_optimizers also returned an lr scheduler; the "
                f"callback's value is the one each step uses. Return only the optimizer to silence this."
            )
        optimizers = self._optimizers(trainer)
        self._writer = ScheduleWriter(schedule, optimizers, self._ratios, owner=name)
        self._ratios = self._writer.ratios
        for line in self._writer.momentum_missing():
            rank_zero_warn(line)
        self._swa_epoch = swa_takes_over(trainer, name, "the schedule")
        self._logged = None
        self._timeline.epoch = None
        self._position = self._step(trainer)
        self._next(trainer)

    def _optimizers(self, trainer: pl.Trainer) -> list[Any]:
        optimizers, indices = trainer.optimizers, self.optimizer
        if indices is None:
            chosen = list(optimizers)
        elif any(i >= len(optimizers) for i in indices):
            given = indices if len(indices) > 1 else indices[0]
            raise ValueError(
                f"{type(self).__name__}(optimizer={given}) names an optimizer that configure_optimizers did not "
                f"return: it returned {len(optimizers)} (indices 0..{len(optimizers) - 1})"
            )
        else:
            chosen = [optimizers[i] for i in indices]
        free = [type(opt).__name__ for opt in chosen if is_schedule_free(opt)]
        if free:
            name = type(self).__name__
            raise ValueError(
                f"{name} sets the lr at every step, but {free[0]} is a schedule-free optimizer: it keeps its own lr "
                f"(and warmup_steps), and a schedule makes no sense with it. Remove {name} and add "
                f"lightning_cyclic.ScheduleFree() to the callbacks, which switches the optimizer's train and eval "
                f"modes for validation and checkpoints."
            )
        return chosen

    def position_of(self, step: int) -> float:
        """Where the schedule's step ``step`` of the current epoch (see :meth:`steps_done`) falls in the schedule:
        the step itself, except for a schedule in epochs whose epochs change length, where it is the epochs done
        plus the share of this one (in the plan's steps per epoch), so that its restarts come at the real epoch
        boundaries."""
        return self._timeline.position(step)

    def steps_done(self, trainer: pl.Trainer) -> int:
        """The schedule's steps taken by the end of the current training batch (read in ``on_train_batch_end``):
        optimizer steps, or under manual optimization training batches (whatever the optimizers stepped)."""
        return self._step(trainer, after_batch=True)

    def _step(self, trainer: pl.Trainer, after_batch: bool = False) -> int:
        """The schedule's step: the optimizer step, or under manual optimization the training batch (``after_batch``:
        the next one's, read at the end of a batch)."""
        if self._manual:
            return _compat.batches_stepped(trainer) + (1 if after_batch else 0)
        return trainer.global_step

    def _next(
        self, trainer: pl.Trainer, batch_idx: int | None = None, after_batch: bool = False, again: bool = False
    ) -> tuple[float, float | None] | None:
        """The one place that decides the lr: the ``(lr, momentum)`` of the next optimizer step, written into the
        optimizers (once per step, or ``again`` where something else may have set an lr since); ``None`` where the
        schedule writes nothing (not applied, or StochasticWeightAveraging's epochs).

        The step is read at ``on_train_start`` and at the end of every batch (``after_batch``); nothing steps until
        the next batch's optimizer step, so the hooks in between (that batch's start, its
        ``on_before_optimizer_step``) take it from there. At a batch's start (``batch_idx``), epochs of changing
        length are placed afresh."""
        writer = self._writer
        if writer is None:
            return None
        if self._swa_epoch is not None and trainer.current_epoch >= self._swa_epoch:
            return None  # StochasticWeightAveraging's epochs: its SWALR sets the lr
        if after_batch:
            self._position = self._timeline.position(self._step(trainer, after_batch=True))
        elif batch_idx is not None and _compat.reload_every(trainer):
            self._new_epoch(trainer, batch_idx)
            self._position = self._timeline.position(self._step(trainer))
        return writer.write(self._position, again=again)

    def _new_epoch(self, trainer: pl.Trainer, batch_idx: int) -> None:
        """A step schedule whose run turns out another length at this epoch is re-planned, one line per fit."""
        timeline, step = self._timeline, self._step(trainer)
        old = timeline.plan
        new = timeline.epoch_started(trainer, step, batch_idx, 1 if self._manual else trainer.accumulate_grad_batches)
        if new is None or old is None or self._writer is None:
            return
        before = self._writer.schedule(step)[0]
        timeline.plan = new
        self._writer.replace(self.build(**new))
        if not timeline.replanned:
            timeline.replanned = True
            epoch, _, steps = timeline.epoch or (trainer.current_epoch, 0, 0)
            rank_zero_info(
                f"{type(self).__name__}: epoch {epoch} has {steps} optimizer steps (the train dataloader changed "
                f"length): the run is re-planned as {new['total_steps']:g} steps (was {old['total_steps']:g}), so "
                f"the lr goes from {before:.4g} to {self._writer.schedule(step)[0]:.4g} at step {step}; later epochs "
                f"of other lengths re-plan it again without a line"
            )

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._next(trainer, batch_idx, again=True)  # another callback's on_train_epoch_start may have set an lr

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._next(trainer, after_batch=True)  # the next step's values, before any callback's on_train_batch_start

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        values = self._next(trainer)
        if values is None or not self.log or self._logged == self._position:
            return
        loggers = trainer.loggers
        # Lightning's should_update_logs costs more than the rest of the step here; with log_every_n_steps=1
        # its answer is always yes, so it is asked only for other values
        if loggers and (_compat.log_every_n_steps(trainer) == 1 or _compat.should_update_logs(trainer)):
            # straight to the loggers, as LearningRateMonitor does: self.log() would cost more than the step
            self._logged = self._position
            (lr, momentum), (lr_name, momentum_name) = values, self._metric_names
            metrics = {lr_name: lr} if momentum is None else {lr_name: lr, momentum_name: momentum}
            logged_at = _compat.batches_stepped(trainer)
            for logger in loggers:
                logger.log_metrics(metrics, step=logged_at)

    # resume -----------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"plan": self._timeline.plan, "ratios": self._ratios, "resolved": self.resolved}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._timeline.plan = state_dict.get("plan")
        self._ratios = state_dict.get("ratios")
        self.resolved = state_dict.get("resolved")  # a resumed run keeps the lr found before: no new test
