"""Schedule callbacks: add one to the callbacks of any Lightning project.

The project's ``configure_optimizers`` stays as it is (a plain optimizer); the
callback writes lr and momentum into it before every optimizer step from a
closed-form schedule of ``trainer.global_step``. So gradient accumulation,
``limit_train_batches``, ``max_steps``, DDP and resuming from a checkpoint all
give the planned trajectory, and nothing ever raises "tried to step N times":
past the planned end the schedule holds its final value.

Lengths are given in ``interval`` units ("step" or "epoch"); :meth:`ScheduleCallback.build`
is the one place where epochs become optimizer steps, from :func:`plan`. Where epochs change length
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

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, TypedDict

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.finder import RangeTestResult
from lightning_cyclic.optim import ParamGroupWriter, is_schedule_free, lr_ratios, momentum_key, momentum_warning
from lightning_cyclic.shapes import (
    CyclicalSchedule,
    OneCycleSchedule,
    Schedule,
    SequenceSchedule,
    WarmRestartsSchedule,
    WarmupDecaySchedule,
    WarmupStableDecaySchedule,
)
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.shapes.warmup import ENDED

INTERVALS = ("step", "epoch")
AUTO = "auto"
WARMUP_CAP = 0.1  # WarmupDecay, WarmupStableDecay: a warmup that leaves no room to decay is cut to this share
AHEAD = 256  # schedule values computed at once, for this many steps from the current one (see _apply)


class RunPlan(TypedDict):
    """A run's length in optimizer steps, as :func:`plan` reads it off the Trainer."""

    total_steps: float | None
    steps_per_epoch: float


def plan(trainer: pl.Trainer, interval: str = "step", total_steps: int | None = None) -> RunPlan:
    """The run in optimizer steps: ``{"total_steps": ..., "steps_per_epoch": ...}``.

    ``total_steps`` is the given one, else ``trainer.estimated_stepping_batches`` (``None`` when
    the run is unbounded); ``steps_per_epoch`` is ``ceil(batches / accumulate_grad_batches)``, or
    1 for a loader without a length, where ``interval="epoch"`` is refused. The schedule callbacks
    and :class:`~lightning_cyclic.ScheduleMixin` both use this one rule.
    """
    estimated = trainer.estimated_stepping_batches  # sets up the train dataloader if it is not yet
    batches = trainer.num_training_batches
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if math.isfinite(batches) else None
    if interval == "epoch" and not steps_per_epoch:
        raise ValueError(
            "interval='epoch' needs the number of batches per epoch, but the train dataloader has no length "
            "(an iterable dataset?); give lengths in steps with interval='step'"
        )
    total: float | None = total_steps if total_steps is not None else estimated
    if total is not None and (not math.isfinite(total) or total <= 0):
        total = None
    return {"total_steps": total, "steps_per_epoch": steps_per_epoch or 1}


def _check_optimizer(optimizer: Any) -> tuple[int, ...] | None:
    """``optimizer=`` as a tuple of indices, or ``None`` for every optimizer."""
    if optimizer is None:
        return None
    values = (
        [optimizer] if isinstance(optimizer, int) else list(optimizer) if isinstance(optimizer, (list, tuple)) else None
    )
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(
            f"optimizer must be None (every optimizer), an index into trainer.optimizers or a list of them, "
            f"got {optimizer!r}"
        )
    return tuple(values)


class ScheduleCallback(Callback):
    """Base class: a schedule class, its arguments, and which of them are lengths.

    A subclass sets ``schedule_cls`` (a :class:`~lightning_cyclic.shapes.Schedule`, whose ``ARGS`` declare the
    arguments once) and passes the arguments to ``__init__``; this class checks them at once against that
    declaration ("auto" ones once the range test has filled them), reads off it which arguments are lengths
    (converted from epochs here, in :meth:`build`) and which may be "auto", builds the schedule once per fit at
    ``on_train_start`` from :func:`plan` and applies it at every optimizer step.

    Logging: ``lr`` and ``momentum`` (the schedule's values, i.e. those of the group with the
    largest lr) go straight to ``trainer.loggers`` at Lightning's ``log_every_n_steps``, at the same
    step numbers ``LearningRateMonitor`` uses; a callback given ``optimizer=i`` logs
    ``lr-optimizer{i}`` / ``momentum-optimizer{i}`` instead, so two of them do not collide.
    ``log=False`` logs nothing.

    The state (the plan, the param groups' ratios, the values found for ``"auto"`` arguments) belongs to one
    fit: a second ``fit`` with the same instance (a k-fold loop) plans its own run and runs its own range test;
    a fit resumed from a checkpoint (``ckpt_path``) takes the checkpoint's, so it goes on on the same trajectory.
    """

    schedule_cls: type[Schedule]  # the shape: its ARGS declare the arguments (CustomSchedule: per instance)
    # whether the schedule warms up to its "auto" peak (one-cycle, warmup) or jumps to it in one step (restarts):
    # the range test's reading depends on it (lightning_cyclic.suggest.edge's ``warmup``)
    warms_up: ClassVar[bool] = True
    _state_key_cache: tuple[Any, Any, Any, str] = (None, None, None, "")  # params, interval, optimizer, key

    def __init__(
        self,
        params: dict[str, Any],
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        check_choice("interval", interval, INTERVALS)
        if total_steps is not None:
            check_number("total_steps", total_steps, 1, integer=True)
        self.params = dict(params)
        self.interval = interval
        self.total_steps = total_steps
        self.log = log
        self.optimizer = _check_optimizer(optimizer)
        self.auto = {name: part for name, part in self.auto_fields.items() if self.params.get(name) == AUTO}
        self.finder = finder
        self.schedule_cls.check_arguments(self.params, skip=self.auto)  # every argument now, "auto" ones later
        self._last_resolved: dict[str, float] | None = None  # the last fit's "auto" values, to say they are not reused
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` starts here (at ``setup``), then a checkpoint's state replaces it."""
        self.resolved: dict[str, float] | None = None  # values found for the "auto" arguments
        self.schedule: Schedule | None = None
        self._plan: RunPlan | None = None  # run length and steps per epoch, saved in checkpoints
        self._ratios: list[list[float]] | None = None  # per optimizer, per param group
        self._writers: list[ParamGroupWriter] = []
        self._ahead: list[tuple[float, float | None]] = []  # schedule(step) for steps _ahead_from, _ahead_from + 1...
        self._ahead_from = 0
        self._written: float | None = None  # the step whose values are in the optimizers (None: write again)
        self._step_read: float = 0  # the step, read at on_train_start and at the end of every batch
        self._logged: float | None = None  # the last step logged
        self._metric_names: tuple[str, str] = ("lr", "momentum")  # lr-optimizer{i}... with optimizer=i
        self._manual = False
        self._skip = False  # stepped aside (fast_dev_run)
        self._epoch: tuple[int, int, int] | None = None  # (epoch, its first step, its steps) when lengths change
        self._replanned = False  # said once per fit that the run was re-planned
        self._swa_epoch: int | None = None  # the epoch from which StochasticWeightAveraging sets the lr
        self._yielded = False  # that epoch has come: the lr is SWA's, the schedule writes nothing

    @property
    def lengths(self) -> tuple[str, ...]:
        """The arguments that are lengths in ``interval`` units (declared in the shape's ``ARGS``)."""
        return tuple(name for name, arg in self.schedule_cls.ARGS.items() if arg.unit == "length")

    @property
    def auto_fields(self) -> dict[str, str]:
        """The arguments that may be "auto", and which part of the range test's suggestion each takes."""
        return {name: arg.auto for name, arg in self.schedule_cls.ARGS.items() if arg.auto}

    @classmethod
    def declared(cls, given: dict[str, Any]) -> dict[str, Any]:
        """The shape's arguments out of ``given`` (a subclass's ``locals()``), in the order ``ARGS`` declares
        them: a momentum pair as a tuple (Hydra hands lists), positions as a list."""
        out = {}
        for name, arg in cls.schedule_cls.ARGS.items():
            value = given[name]
            if arg.kind == "moms":
                value = _as_pair(value)
            elif arg.kind == "positions" and value is not None:
                value = list(value)
            out[name] = value
        return out

    # the one place where lengths in epochs become optimizer steps -------------
    def build(self, total_steps: float | None, steps_per_epoch: float) -> Schedule:
        """The schedule in optimizer steps, for a run of ``total_steps`` steps ("auto" arguments filled)."""
        missing = [name for name in self.auto if name not in (self.resolved or {})]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: {', '.join(missing)}='auto' has no value yet: the LR range test runs at "
                f"the start of fit"
            )
        unit = steps_per_epoch if self.interval == "epoch" else 1
        kwargs: dict[str, Any] = {**self.params, **(self.resolved or {})}
        for name in self.lengths:
            value = kwargs.get(name)
            if isinstance(value, (list, tuple)):
                kwargs[name] = [v * unit if isinstance(v, (int, float)) else v for v in value]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                kwargs[name] = value * unit
        if "total_steps" in {f.name for f in dataclasses.fields(self.schedule_cls)}:
            kwargs["total_steps"] = total_steps  # (a shape of the user's without an end need not take it)
        return self.schedule_cls(**self._fit_to_run(kwargs, total_steps))

    def _fit_to_run(self, kwargs: dict[str, Any], total_steps: float | None) -> dict[str, Any]:
        """The arguments, in optimizer steps, adjusted where a default would not fit a run of ``total_steps``
        (see :class:`WarmupDecay`); as given by default."""
        return kwargs

    def _resolve_auto(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fill the "auto" arguments from the LR range test of this fit (run now if it has not run)."""
        callbacks = _compat.trainer_callbacks(trainer)
        finder = self.finder or next((cb for cb in callbacks if isinstance(cb, LRFinder)), None)
        if finder is None:
            finder = self.finder = LRFinder()
        result = finder.run(trainer, pl_module)
        s = result.suggestion
        resolved = self._auto_values(result)
        missing = [name for name, value in resolved.items() if value is None]
        if missing:  # no suggestion and no fallback either (the optimizer's lr is not positive)
            args = ", ".join(f"{name}='auto'" for name in missing)
            raise ValueError(
                f"{type(self).__name__}({args}): the LR range test found no sound suggestion ({s.reason}) and has "
                f"no fallback. Give {' and '.join(missing)} a number, or change the LRFinder's min_lr/max_lr/num_steps."
            )
        found = {name: value for name, value in resolved.items() if value is not None}
        if "base_lr" in found and "max_lr" in found and found["base_lr"] >= found["max_lr"]:
            found["base_lr"] = found["max_lr"] / 4  # a degenerate range: Smith's rule of thumb
        self.schedule_cls.check_arguments({**self.params, **found})  # the found values pass the same checks
        self.resolved = found

    def _auto_values(self, result: RangeTestResult) -> dict[str, float | None]:
        """The values of the "auto" arguments read off a range test (``None`` where it has none): its
        suggestion for a schedule that does or does not warm up to it (``warms_up``), or where that has no
        lr, its fallback."""
        chosen = result.chosen_for(warmup=self.warms_up)
        return {name: getattr(chosen, part) for name, part in self.auto.items()}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # a callback's state belongs to one fit: a checkpoint's is loaded after setup, before on_fit_start
        self._last_resolved = self.resolved or self._last_resolved
        self._fresh()
        if self.finder is not None:
            self.finder._fresh()  # its result too: a new model gets a new range test

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._skip = False
        if self.auto and self.resolved is None:
            last, self._last_resolved = self._last_resolved, None
            if _compat.fast_dev_run(trainer):
                # no range test under fast_dev_run (as Lightning's Tuner): the optimizer's own lr is used
                rank_zero_warn(
                    f"{type(self).__name__} is not applied under fast_dev_run: its "
                    f"{', '.join(sorted(self.auto))}='auto' needs the LR range test, which fast_dev_run skips"
                )
                self._skip = True
                return
            if last:
                found = ", ".join(f"{name}={value:.4g}" for name, value in last.items())
                rank_zero_info(
                    f"{type(self).__name__}: a new fit: the LR range test runs again (the last fit's {found} is "
                    f"not reused)"
                )
            self._resolve_auto(trainer, pl_module)

    @property
    def state_key(self) -> str:
        # Lightning reads it at every call of every hook (to name the hook for its profiler), where building
        # it would cost more than the hooks themselves: it is built once for these identity arguments
        params, interval, optimizer, key = self._state_key_cache
        if params is self.params and interval is self.interval and optimizer is self.optimizer:
            return key
        # callables (a custom scale_fn) by name: their repr holds a memory address that changes between runs
        params = {k: getattr(v, "__qualname__", v) if callable(v) else v for k, v in self.params.items()}
        if self.optimizer is not None:  # two callbacks driving two optimizers keep two states
            params["optimizer"] = self.optimizer
        if type(self).__dict__.get("schedule_cls") is None:  # a shape given per instance (CustomSchedule)
            params["shape"] = self.schedule_cls.__qualname__
        key = self._generate_state_key(interval=self.interval, **params)
        self._state_key_cache = (self.params, self.interval, self.optimizer, key)
        return key

    # ------------------------------------------------------------------------
    def planned(self, trainer: pl.Trainer) -> RunPlan:
        """This fit's run in optimizer steps (see :func:`plan`), checked against what the schedule needs."""
        name = type(self).__name__
        try:
            run = plan(trainer, self.interval, self.total_steps)
        except ValueError as err:
            raise ValueError(f"{name}(interval={self.interval!r}): {err}") from None
        if run["total_steps"] is None and self.schedule_cls.requires_total({**self.params, **(self.resolved or {})}):
            raise ValueError(
                f"{name} needs the run's length, but the Trainer's is unbounded (max_epochs={trainer.max_epochs}, "
                f"max_steps={trainer.max_steps}); set max_epochs or max_steps, or pass total_steps=..."
            )
        return run

    def _optimizers(self, trainer: pl.Trainer) -> list[Any]:
        optimizers = trainer.optimizers
        if self.optimizer is None:
            return list(optimizers)
        bad = [i for i in self.optimizer if i >= len(optimizers)]
        if bad:
            raise ValueError(
                f"{type(self).__name__}(optimizer={self.optimizer if len(self.optimizer) > 1 else self.optimizer[0]}) "
                f"names an optimizer that configure_optimizers did not return: it returned {len(optimizers)} "
                f"(indices 0..{len(optimizers) - 1})"
            )
        return [optimizers[i] for i in self.optimizer]

    def _step(self, trainer: pl.Trainer, after_batch: bool = False) -> int:
        """The schedule's step: the optimizer step, or under manual optimization the training batch.

        Read at ``on_train_start`` and at the end of every batch (``after_batch``: the next one's), and kept in
        ``_step_read``: nothing steps until the next batch's optimizer step, so the hooks in between (that
        batch's start, its ``on_before_optimizer_step``) take it from there rather than from the Trainer.
        """
        if self._manual:
            return _compat.batches_stepped(trainer) + (1 if after_batch else 0)
        return trainer.global_step

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._skip:
            self.schedule = None
            return
        self._manual = not pl_module.automatic_optimization  # (the step below counts batches under manual)
        plan = self.planned(trainer)
        if self._plan is not None and _compat.reload_every(trainer):
            plan = self._plan  # epochs change length: the checkpoint's unit, re-planned at each epoch (see _epoch_of)
        elif self._plan is not None and self._plan != plan:
            self._say_the_plan_changed(self._plan, plan, self._step(trainer))
        self._plan = plan
        try:
            self.schedule = self.build(**plan)
        except ValueError as err:
            if not _compat.fast_dev_run(trainer):
                raise
            # fast_dev_run's run of a step or two is no real training: say so rather than fail
            rank_zero_warn(f"{type(self).__name__} is not applied under fast_dev_run: {err}")
            self.schedule = None
            return
        if self.resolved:
            found = {f"{type(self).__name__}/{name}": value for name, value in self.resolved.items()}
            for logger in trainer.loggers:
                logger.log_metrics(found, step=trainer.global_step)
            rank_zero_info(
                f"{type(self).__name__}: using " + ", ".join(f"{k}={v:.4g}" for k, v in self.resolved.items())
            )
        if trainer.lr_scheduler_configs:
            rank_zero_warn(
                f"{type(self).__name__} sets the lr at every step, and configure_optimizers also returned an lr "
                f"scheduler; the callback's value is the one each step uses. Return only the optimizer to silence this."
            )
        self._yield_to_swa(trainer)
        optimizers = self._optimizers(trainer)
        free = [type(opt).__name__ for opt in optimizers if is_schedule_free(opt)]
        if free:
            raise ValueError(
                f"{type(self).__name__} sets the lr at every step, but {free[0]} is a schedule-free optimizer: it "
                f"keeps its own lr (and warmup_steps), and a schedule makes no sense with it. Remove "
                f"{type(self).__name__} and add lightning_cyclic.ScheduleFree() to the callbacks, which switches "
                f"the optimizer's train and eval modes for validation and checkpoints."
            )
        ratios = self._ratios
        if ratios is None or [len(r) for r in ratios] != [len(o.param_groups) for o in optimizers]:
            # first start, or param groups added since the ratios were taken: the ratios the groups have now
            ratios = self._ratios = [lr_ratios([g["lr"] for g in opt.param_groups]) for opt in optimizers]
        self._writers = [
            ParamGroupWriter(opt, group_ratios, owner=type(self).__name__)
            for opt, group_ratios in zip(optimizers, ratios)
        ]
        self._ahead, self._written = [], None  # a new schedule: compute and write afresh
        suffix = "" if self.optimizer is None else "-optimizer" + "-".join(map(str, self.optimizer))
        self._metric_names = (f"lr{suffix}", f"momentum{suffix}")
        if self.schedule.momentum(0) is not None:
            for writer in self._writers:
                if all(momentum_key(g) is None for g in writer.optimizer.param_groups):
                    rank_zero_warn(momentum_warning(writer.optimizer, type(self).__name__))
                    writer._warned = True
        self._logged = None
        self._epoch = None
        self._step_read = self._step(trainer)
        if not self._yielded:  # (a resume inside SWA's epochs keeps the lr the checkpoint's optimizer holds)
            self._apply(self._step_read)

    def _yield_to_swa(self, trainer: pl.Trainer) -> None:
        """With Lightning's ``StochasticWeightAveraging`` among the callbacks: the epoch from which its ``SWALR``
        sets the lr (computed as SWA does), after which the schedule writes nothing; one line per fit."""
        swa = _compat.swa_callback(trainer)
        self._swa_epoch = None if swa is None else _compat.swa_start_epoch(swa, trainer.max_epochs)
        self._yielded = self._swa_epoch is not None and trainer.current_epoch >= self._swa_epoch
        if self._swa_epoch is None:
            return
        rank_zero_info(
            f"{type(self).__name__}: StochasticWeightAveraging sets the lr from epoch {self._swa_epoch} (0-based) on, "
            f"annealing it to its swa_lrs; the schedule sets it until then, and from then on leaves it (and its "
            f"logging) to SWA"
        )

    # epochs of changing length (reload_dataloaders_every_n_epochs) ---------------------------------
    def _epoch_of(self, trainer: pl.Trainer, batch_idx: int) -> None:
        """At the first batch of each epoch (or of a resume): where the epoch starts and how many steps it has,
        read off the train dataloader of this epoch; a step schedule whose run turns out another length is
        re-planned (the steps done, then this epoch's length for every epoch left), with one line per fit."""
        epoch = trainer.current_epoch
        if self._epoch is not None and self._epoch[0] == epoch:
            return
        per = 1 if self._manual else trainer.accumulate_grad_batches
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or self._plan is None:
            self._epoch = None
            return
        start, steps = self._step(trainer) - batch_idx // per, math.ceil(batches / per)
        self._epoch = (epoch, start, steps)
        old = self._plan["total_steps"]
        if self.interval != "step" or self.total_steps is not None or old is None or trainer.max_epochs in (None, -1):
            return
        total: float = start + steps * (trainer.max_epochs - epoch)
        if trainer.max_steps not in (None, -1):
            total = min(total, trainer.max_steps)
        if total == old:
            return
        new: RunPlan = {"total_steps": total, "steps_per_epoch": self._plan["steps_per_epoch"]}
        step = self._step(trainer)
        before, after = self.build(**self._plan)(step)[0], self.build(**new)(step)[0]
        self._plan, self.schedule, self._ahead, self._written = new, self.build(**new), [], None
        if not self._replanned:
            self._replanned = True
            rank_zero_info(
                f"{type(self).__name__}: epoch {epoch} has {steps} optimizer steps (the train dataloader changed "
                f"length): the run is re-planned as {total:g} steps (was {old:g}), so the lr goes from {before:.4g} "
                f"to {after:.4g} at step {step}; later epochs of other lengths re-plan it again without a line"
            )

    def _position(self, step: int) -> float:
        """The schedule's position for optimizer step ``step``: the step itself, except for lengths in epochs when
        epochs change length, where it is the epochs completed plus the share of this epoch done, in units of
        the plan's steps per epoch (so a restart at epoch 2 comes at epoch 2's first step, whatever the epochs
        before held)."""
        if self.interval != "epoch" or self._epoch is None or self._plan is None:
            return step
        epoch, start, steps = self._epoch
        unit = self._plan["steps_per_epoch"]
        done = min(step - start, steps)
        if steps == unit:
            return int(epoch * unit + done)
        return epoch * unit + done * unit / steps

    def _say_the_plan_changed(self, old: RunPlan, new: RunPlan, step: int) -> None:
        """A resumed run planned with another length: whether the lr jumps at the resume step, and by how much.
        Where it does not (a WSD run extended in its stable phase), one info line; where it does, a warning."""
        name = type(self).__name__
        try:
            before, after = self.build(**old)(step)[0], self.build(**new)(step)[0]
        except ValueError:  # the old plan cannot be built any more (arguments changed with it): say so plainly
            before = after = math.nan
        if math.isfinite(before) and math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-15):
            rank_zero_info(
                f"{name}: the run is now planned as {new} (the checkpoint's plan: {old}); the lr at step {step} is "
                f"the same under both ({after:.4g}), so the schedule goes on without a jump"
            )
            return
        jump = f"from {before:.4g} to {after:.4g}" if math.isfinite(before) else "there"
        rank_zero_warn(
            f"{name}: the checkpoint was planned as {old}, this Trainer plans {new}; the schedule follows the new "
            f"plan from step {step}, so the lr jumps {jump}. Resume with the original max_epochs/max_steps to "
            f"continue the original trajectory."
        )

    def _adopt_new_groups(self) -> None:
        """Param groups added since the last write join the schedule at their current ratio to the lead group."""
        for index, writer in enumerate(self._writers):
            groups = writer.optimizer.param_groups
            if len(groups) == len(writer.ratios):
                continue
            lead = max(range(len(writer.ratios)), key=writer.ratios.__getitem__)
            lead_lr = float(groups[lead]["lr"]) / writer.ratios[lead] if writer.ratios[lead] > 0 else 0.0
            for group in groups[len(writer.ratios) :]:
                writer.ratios.append(float(group["lr"]) / lead_lr if lead_lr > 0 else 1.0)
            if self._ratios is not None:  # set with the writers, at on_train_start
                self._ratios[index] = list(writer.ratios)

    def _apply(self, step: float) -> tuple[float, float | None]:
        """Put the schedule's ``(lr, momentum)`` at ``step`` into the optimizers, unless they are there already
        (written for this step, and no param group added since); return them.

        It runs in three hooks per step, so it keeps to the minimum. The schedule is fixed from
        ``on_train_start`` on and a pure function of the step, so its values are computed ``AHEAD`` steps at a
        time, in one loop, and each step reads one from a list: inside a fit, where every step runs through
        much of Lightning, a schedule's arithmetic run once per step costs several times what it costs in a
        loop. The check is one comparison, and one length per optimizer.
        """
        if not isinstance(step, int):  # a fraction of an epoch of another length: no table for it
            values = self.schedule(step) if self.schedule is not None else (0.0, None)
            if self._written != step:
                for writer in self._writers:
                    writer.write(*values)
                self._written = step
            return values
        i = step - self._ahead_from
        ahead = self._ahead
        if not 0 <= i < len(ahead):
            schedule = self.schedule
            if schedule is None:  # the hooks call this only with a schedule
                raise RuntimeError(f"{type(self).__name__} has no schedule: on_train_start has not run")
            ahead = self._ahead = [schedule(k) for k in range(step, step + AHEAD)]
            self._ahead_from, i = step, 0
        lr, momentum = values = ahead[i]
        grown = False
        for writer in self._writers:
            if len(writer.optimizer.param_groups) != len(writer.ratios):
                grown = True
                break
        if self._written != step or grown:
            if grown:
                self._adopt_new_groups()
            for writer in self._writers:
                writer.write(lr, momentum)
            self._written = step
        return values

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._swa_epoch is not None and trainer.current_epoch >= self._swa_epoch:
            self._yielded = True  # StochasticWeightAveraging's epochs: its SWALR sets the lr
        if self.schedule is not None and not self._yielded:
            self._written = None  # write again: another callback's on_train_epoch_start may have set an lr
            if _compat.reload_every(trainer):
                self._epoch_of(trainer, batch_idx)
                self._step_read = self._position(self._step(trainer))
            self._apply(self._step_read)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule is not None and not self._yielded:  # the next step's values, before any on_train_batch_start
            self._step_read = self._position(self._step(trainer, after_batch=True))
            self._apply(self._step_read)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.schedule is None or self._yielded:
            return
        step = self._step_read
        lr, momentum = self._apply(step)
        if not self.log or self._logged == step:
            return
        loggers = trainer.loggers
        # Lightning's should_update_logs costs more than the rest of the step here; with log_every_n_steps=1
        # its answer is always yes, so it is asked only for other values
        if loggers and (_compat.log_every_n_steps(trainer) == 1 or _compat.should_update_logs(trainer)):
            # straight to the loggers, as LearningRateMonitor does: self.log() would cost more than the step
            self._logged = step
            lr_name, momentum_name = self._metric_names
            metrics = {lr_name: lr} if momentum is None else {lr_name: lr, momentum_name: momentum}
            logged_at = _compat.batches_stepped(trainer)
            for logger in loggers:
                logger.log_metrics(metrics, step=logged_at)

    # resume -----------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"plan": self._plan, "ratios": self._ratios, "resolved": self.resolved}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._plan = state_dict.get("plan")
        self._ratios = state_dict.get("ratios")
        self.resolved = state_dict.get("resolved")  # a resumed run keeps the lr found before: no new test

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args}, interval={self.interval!r})"


class OneCycle(ScheduleCallback):
    """One-cycle policy with inverse momentum, equal to torch's ``OneCycleLR`` step by step.

    Args:
        max_lr: peak lr (of the param group with the largest lr; others keep their ratio), or
            ``"auto"``: the LR range test's suggestion, found at the start of this ``fit`` (each new fit runs
            the test again, with one line saying so; a fit resumed from a checkpoint keeps the lr found before).
        pct_start: fraction of the run spent rising, in (0, 1) (in (0, 0.5] with ``three_phase``).
        div_factor: the run starts at ``max_lr / div_factor``.
        final_div_factor: and ends at ``max_lr / div_factor / final_div_factor``.
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: rise, fall back to the start, then annihilate (fastai's older form).
        moms: ``(high, low)`` momentum, low where lr peaks; ``None`` leaves momentum alone.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see :class:`ScheduleCallback`).
        finder: the :class:`LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = OneCycleSchedule

    def __init__(
        self,
        max_lr: float | str,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
        moms: tuple[float, float] | None = (0.95, 0.85),
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        params = self.declared(locals())
        super().__init__(params, interval="step", total_steps=total_steps, log=log, finder=finder, optimizer=optimizer)


class Cyclical(ScheduleCallback):
    """Smith's cyclical learning rates, equal to torch's ``CyclicLR`` step by step.

    Args:
        base_lr: the lower bound the lr cycles between; ``"auto"`` takes the low end of the LR range
            test's good range (where the loss starts to fall), as Smith describes.
        max_lr: the upper bound; ``"auto"`` takes the high end of the good range (the suggestion).
        step_size_up: length of the rising half, in ``interval`` units.
        step_size_down: length of the falling half (default: ``step_size_up``).
        mode: ``"triangular"``, ``"triangular2"`` (amplitude halves each cycle) or
            ``"exp_range"`` (amplitude times ``gamma**step``).
        gamma: decay per optimizer step for ``exp_range``.
        scale_fn: a custom amplitude function of the cycle or of the optimizer step (see
            ``scale_mode``); overrides ``mode``.
        scale_mode: what ``scale_fn`` takes: the cycle (``"cycle"``, the default) or the optimizer step
            (``"iterations"``).
        moms: ``(high, low)`` momentum, cycled inversely; ``None`` leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of the step sizes.
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = CyclicalSchedule

    def __init__(
        self,
        base_lr: float | str,
        max_lr: float | str,
        step_size_up: float = 2000,
        step_size_down: float | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Any = None,
        scale_mode: str | None = None,
        moms: tuple[float, float] | None = (0.9, 0.8),
        interval: str = "step",
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        params = self.declared(locals())
        super().__init__(params, interval=interval, log=log, finder=finder, optimizer=optimizer)


class WarmRestarts(ScheduleCallback):
    """SGDR: cosine cycles with warm restarts; equal to torch's ``CosineAnnealingWarmRestarts``
    stepped per optimizer step when ``interval="step"``, ``warmup=0`` and ``cycle_decay=1``.

    Args:
        max_lr: peak lr of the first cycle, or ``"auto"``: the LR range test's suggestion, and with
            the default rule ``edge`` never more than the edge / ``EDGE_DIV[1]`` (a third): a restart
            jumps to ``max_lr`` in one step on trained weights, where one-cycle warms up to it.
        cycle_len: length of the first cycle, in ``interval`` units.
        cycle_mult: each cycle is this many times longer than the last (a float > 0; below 1 the cycles
            shrink, and ``cycle_limit`` is required).
        min_lr: the lr at the end of every cycle.
        cycle_decay: peak multiplier per restart, in (0, 1].
        cycle_limit: after this many cycles hold ``min_lr`` (default: cycle forever).
        warmup: linear warmup before the first cycle, in ``interval`` units.
        warmup_lr_init: lr at the start of warmup (default ``min_lr``).
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        restart_warmup: every cycle after the first rises linearly from ``min_lr`` to its peak over this
            many ``interval`` units (at most half the cycle) instead of jumping there.
        k_decay: the cosine follows ``(t / T) ** k_decay`` of each cycle (timm's ``k_decay``): above 1 the lr
            stays high longer, below 1 it falls sooner.
        interval: ``"step"`` or ``"epoch"``.
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = WarmRestartsSchedule
    warms_up = False  # a restart jumps to its peak in one step

    def __init__(
        self,
        max_lr: float | str,
        cycle_len: float,
        cycle_mult: float = 1.0,
        min_lr: float = 0.0,
        cycle_decay: float = 1.0,
        cycle_limit: int | None = None,
        warmup: float = 0,
        warmup_lr_init: float | None = None,
        moms: tuple[float, float] | None = None,
        restart_warmup: float = 0,
        k_decay: float = 1.0,
        interval: str = "epoch",
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        params = self.declared(locals())
        super().__init__(params, interval=interval, log=log, finder=finder, optimizer=optimizer)


class WarmupDecay(ScheduleCallback):
    """Linear warmup to ``max_lr``, then a decay.

    Args:
        max_lr: the lr at the end of warmup, or ``"auto"`` (the LR range test's suggestion).
        decay: ``"cosine"``, ``"linear"``, ``"poly"`` (to ``min_lr`` at the end of the run),
            ``"step"``, ``"multistep"``, ``"exponential"``, ``"inverse_sqrt"`` or ``"constant"``.
        warmup: warmup length in ``interval`` units (as long as the run or longer, before a decay
            that ends with the run: a tenth of the run, with a warning).
        warmup_lr_init: the lr where warmup starts.
        min_lr: end of cosine/linear/poly, floor of the others.
        step_size: ``"step"`` decays by ``gamma`` every ``step_size``; ``"exponential"``
            by ``gamma`` per ``step_size`` smoothly.
        milestones: positions (after warmup) where ``"multistep"`` multiplies by ``gamma``.
        gamma: the factor of ``"step"``, ``"multistep"`` and ``"exponential"``, in (0, 1].
        power: exponent of ``"poly"``.
        timescale: ``s`` of ``"inverse_sqrt"``.
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of ``warmup``, ``step_size``,
            ``milestones`` and ``timescale``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = WarmupDecaySchedule

    @override
    def _fit_to_run(self, kwargs: dict[str, Any], total_steps: float | None) -> dict[str, Any]:
        """A warmup not shorter than the run, before a decay that ends with the run (cosine, linear, poly),
        leaves no room to decay: it is cut to ``WARMUP_CAP`` of the run, with one warning line. So the
        shipped default (one epoch) holds on a one-epoch run or a run of a few steps."""
        warmup = kwargs.get("warmup")
        if total_steps is None or kwargs.get("decay") not in ENDED or not isinstance(warmup, (int, float)):
            return kwargs
        if warmup < total_steps:
            return kwargs
        capped = WARMUP_CAP * total_steps
        rank_zero_warn(
            f"{type(self).__name__}: warmup={self.params['warmup']!r} ({self.interval}s) is {warmup:g} optimizer "
            f"steps, not shorter than the run ({total_steps:g} steps) before decay={kwargs['decay']!r}; warming up "
            f"for {capped:g} steps ({WARMUP_CAP:.0%} of the run) instead"
        )
        return {**kwargs, "warmup": capped}

    def __init__(
        self,
        max_lr: float | str,
        decay: str = "cosine",
        warmup: float = 0,
        warmup_lr_init: float = 0.0,
        min_lr: float = 0.0,
        step_size: float = 1,
        milestones: list[float] | tuple[float, ...] = (),
        gamma: float = 0.1,
        power: float = 1.0,
        timescale: float | None = None,
        moms: tuple[float, float] | None = None,
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        params = self.declared(locals())
        super().__init__(
            params, interval=interval, total_steps=total_steps, log=log, finder=finder, optimizer=optimizer
        )


class WarmupStableDecay(ScheduleCallback):
    """Warmup, a long stable phase at ``max_lr``, then a short decay (WSD, the trapezoid of LLM pre-training).

    Equal to ``transformers``' ``get_wsd_schedule`` where their arguments meet (``warmup_lr_init=min_lr``, a
    cosine half-wave). The stable phase is what the run leaves between the warmup and the decay, so a run can be
    extended after the fact: resume from a checkpoint saved in the stable phase with a larger ``max_steps`` or
    ``max_epochs``, and the lr goes on at ``max_lr`` and decays at the new end, as a run planned that long from
    the start would have (the callback says the plan changed, and that the lr did not jump).

    Args:
        max_lr: the lr of the stable phase, or ``"auto"`` (the LR range test's suggestion).
        warmup: linear warmup length, in ``interval`` units.
        decay_pct: the decay's share of the run, in (0, 1] (used when ``decay_len`` is not given).
        decay_len: the decay's length in ``interval`` units (instead of a share of the run).
        anneal: the decay's shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"`` (``1 - sqrt(p)``, the best of the
            three in Hägele et al. 2024).
        min_lr: the lr at the end of the decay.
        warmup_lr_init: the lr where warmup starts.
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of ``warmup`` and ``decay_len``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = WarmupStableDecaySchedule

    def __init__(
        self,
        max_lr: float | str,
        warmup: float = 0,
        decay_pct: float = 0.2,
        decay_len: float | None = None,
        anneal: str = "1-sqrt",
        min_lr: float = 0.0,
        warmup_lr_init: float = 0.0,
        moms: tuple[float, float] | None = None,
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        params = self.declared(locals())
        super().__init__(
            params, interval=interval, total_steps=total_steps, log=log, finder=finder, optimizer=optimizer
        )

    @override
    def _fit_to_run(self, kwargs: dict[str, Any], total_steps: float | None) -> dict[str, Any]:
        """A warmup and a decay that do not fit in the run (a short run with the shipped one-epoch warmup) are
        cut, with one warning line: the warmup to ``WARMUP_CAP`` of the run, the decay to what is left."""
        if total_steps is None:
            return kwargs
        warmup, decay = kwargs["warmup"], self.schedule_cls.decay_steps(kwargs, total_steps)
        if warmup + decay <= total_steps:
            return kwargs
        cut = {**kwargs, "warmup": min(warmup, WARMUP_CAP * total_steps)}
        if cut["warmup"] + decay > total_steps:
            cut["decay_len"] = total_steps - cut["warmup"]
        rank_zero_warn(
            f"{type(self).__name__}: a warmup of {warmup:g} and a decay of {decay:g} optimizer steps do not fit in "
            f"the run ({total_steps:g} steps); warming up for {cut['warmup']:g} and decaying over "
            f"{self.schedule_cls.decay_steps(cut, total_steps):g} steps instead"
        )
        return cut


class Sequential(ScheduleCallback):
    """Schedule callbacks one after another: ``parts[0]`` until ``boundaries[0]``, then ``parts[1]`` from its own
    step 0, and so on: torch's ``SequentialLR``, closed form (a resume needs the step alone).

    Each part is built for its own segment of the run, with its own ``interval`` for its own lengths, so a
    one-cycle part anneals within its segment and a warmup part's epochs are converted as they would be alone::

        Sequential([WarmupDecay(max_lr=0.01, decay="constant"), OneCycle(max_lr=0.1)], boundaries=[2], interval="epoch")

    holds 0.01 for two epochs, then runs one-cycle over the rest of the run.

    Args:
        parts: schedule callbacks (not themselves in the Trainer's callbacks), with numbers: an ``"auto"``
            argument of a part has no range test to take it from.
        boundaries: where each part after the first starts, in ``interval`` units, increasing; one fewer than
            the parts.
        interval: ``"step"`` or ``"epoch"``, the unit of ``boundaries``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = SequenceSchedule

    def __init__(
        self,
        parts: list[ScheduleCallback],
        boundaries: list[float],
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        optimizer: int | list[int] | None = None,
    ) -> None:
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:  # (Hydra: a ListConfig)
            raise ValueError(f"parts must be a non-empty list of schedule callbacks, got {parts!r}")
        for i, part in enumerate(parts):
            if not isinstance(part, ScheduleCallback):
                raise ValueError(f"parts[{i}] must be a schedule callback (OneCycle(...), ...), got {part!r}")
            if part.auto:
                raise ValueError(
                    f"parts[{i}] ({type(part).__name__}) has {', '.join(sorted(part.auto))}='auto': a part takes "
                    f"numbers (run lr_find first, and give its suggestion)"
                )
        if isinstance(boundaries, Sequence) and not isinstance(boundaries, str):
            boundaries = list(boundaries)
        if isinstance(boundaries, list) and len(boundaries) != len(parts) - 1:
            raise ValueError(
                f"boundaries must hold one position fewer than parts: got {len(boundaries)} boundaries for "
                f"{len(parts)} parts"
            )
        self.parts = list(parts)
        # the parts by their arguments: in the state_key, so two sequences of other parts keep two states
        params = {"boundaries": boundaries, "schedules": tuple(repr(part) for part in self.parts)}
        super().__init__(params, interval=interval, total_steps=total_steps, log=log, optimizer=optimizer)

    @override
    def _fresh(self) -> None:
        super()._fresh()
        self._warned_short = False

    @override
    def build(self, total_steps: float | None, steps_per_epoch: float) -> Schedule:
        unit = steps_per_epoch if self.interval == "epoch" else 1
        bounds = [b * unit for b in self.params["boundaries"]]
        kept = self.parts
        if total_steps is not None and bounds and bounds[-1] >= total_steps:  # the run ends before a part starts
            i = next(i for i, b in enumerate(bounds) if b >= total_steps)  # where part i + 1 (0-based) starts
            kept, bounds = self.parts[: i + 1], bounds[:i]
            if not self._warned_short:
                rank_zero_warn(
                    f"Sequential: the run ({total_steps:g} optimizer steps) ends before part {i + 2} starts (at "
                    f"{self.params['boundaries'][i]:g} {self.interval}s): the parts from there on are left out"
                )
                self._warned_short = True
        edges = [0.0, *bounds, total_steps]
        parts = [
            part.build(
                total_steps=None if edges[i + 1] is None else edges[i + 1] - edges[i],
                steps_per_epoch=steps_per_epoch,
            )
            for i, part in enumerate(kept)
        ]
        return SequenceSchedule(parts=parts, boundaries=bounds, total_steps=total_steps)

    def __repr__(self) -> str:
        return f"Sequential({self.parts!r}, boundaries={self.params['boundaries']!r}, interval={self.interval!r})"


class CustomSchedule(ScheduleCallback):
    """Any :class:`~lightning_cyclic.shapes.Schedule` as a callback: a schedule of your own is one declaration.

    The shape's ``ARGS`` say everything the callback needs: which arguments are lengths (given in ``interval``
    units and converted to optimizer steps here), which are lrs and may be ``"auto"`` (filled by the LR range
    test at the start of ``fit``), and what each may be (checked now). Everything else is as for the shipped
    schedules: the step is the optimizer step, resume and gradient accumulation give the planned trajectory,
    param-group ratios are kept, ``lr`` and ``momentum`` are logged.

    Args:
        shape: the :class:`~lightning_cyclic.shapes.Schedule` subclass (a frozen dataclass of its arguments,
            with ``ARGS`` and ``lr(step)``; ``momentum(step)`` where it cycles momentum).
        interval: ``"step"`` or ``"epoch"``, the unit of the shape's ``Arg(unit="length")`` arguments.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches`` (passed to
            the shape where it has a ``total_steps`` field).
        warms_up: whether the schedule warms up to its ``"auto"`` peak (``True``) or jumps to it in one step, as
            a warm restart does (the range test's reading depends on it).
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
        **args: the shape's arguments.
    """

    def __init__(
        self,
        shape: type[Schedule],
        interval: str = "step",
        total_steps: int | None = None,
        warms_up: bool = True,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
        **args: Any,
    ) -> None:
        if not (isinstance(shape, type) and issubclass(shape, Schedule) and dataclasses.is_dataclass(shape)):
            raise TypeError(f"shape must be a Schedule subclass (a frozen dataclass), got {shape!r}")
        unknown = sorted(set(args) - {f.name for f in dataclasses.fields(shape) if f.init})
        if unknown:
            raise ValueError(
                f"CustomSchedule({shape.__name__}): {', '.join(unknown)} is not an argument of the shape; it takes: "
                f"{', '.join(shape.ARGS)}"
            )
        self.schedule_cls = shape
        self.warms_up = warms_up  # type: ignore[misc]  # a class default, set per instance here
        super().__init__(
            {k: _as_pair(v) if k == "moms" else v for k, v in args.items()},
            interval=interval,
            total_steps=total_steps,
            log=log,
            finder=finder,
            optimizer=optimizer,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"CustomSchedule({self.schedule_cls.__name__}, {args}, interval={self.interval!r})"


def _as_pair(moms: Any) -> Any:
    """Hydra hands lists as ``ListConfig``; make a plain tuple (validation happens in the schedule)."""
    if moms is None or isinstance(moms, str):
        return moms
    try:
        return tuple(moms)
    except TypeError:
        return moms
