"""A run in optimizer steps, as a schedule callback plans it, and where each step falls in it.

:func:`plan` reads the run's length off the Trainer. :class:`Timeline` keeps one fit's plan and, where epochs
change length (``reload_dataloaders_every_n_epochs`` with a train dataloader of another length each epoch), the
current epoch's bounds: a schedule in epochs is placed at the epochs completed plus the share of the current epoch
done, so its restarts and milestones fall on the real epoch boundaries; a schedule in steps is re-planned at each
epoch for the steps done plus this epoch's length for every epoch left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypedDict

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lightning_cyclic import _compat

INTERVALS = ("step", "epoch")


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


class Timeline:
    """One fit's plan, and the bounds of the current epoch where epochs change length.

    Args:
        interval: the schedule's unit, ``"step"`` or ``"epoch"``.
        fixed_length: the run's length was given (``total_steps=``): a step schedule is never re-planned.
    """

    def __init__(self, interval: str, fixed_length: bool) -> None:
        self.interval = interval
        self.fixed_length = fixed_length
        self.plan: RunPlan | None = None  # saved in checkpoints
        self.epoch: tuple[int, int, int] | None = None  # (epoch, its first step, its steps) when lengths change
        self.replanned = False  # said once per fit that the run was re-planned

    def epoch_started(self, trainer: pl.Trainer, step: int, batch_idx: int, per: int) -> RunPlan | None:
        """At the first batch of each epoch (or of a resume), ``step`` being the schedule's step now and ``per``
        batches making one: read this epoch's bounds off its train dataloader; return the new plan where a step
        schedule's run turns out another length (the steps done, then this epoch's length for every epoch
        left), else ``None``."""
        epoch = trainer.current_epoch
        if self.epoch is not None and self.epoch[0] == epoch:
            return None
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or self.plan is None:
            self.epoch = None
            return None
        start, steps = step - batch_idx // per, math.ceil(batches / per)
        self.epoch = (epoch, start, steps)
        old = self.plan["total_steps"]
        if self.interval != "step" or self.fixed_length or old is None or trainer.max_epochs in (None, -1):
            return None
        total: float = start + steps * (trainer.max_epochs - epoch)
        if trainer.max_steps not in (None, -1):
            total = min(total, trainer.max_steps)
        if total == old:
            return None
        return {"total_steps": total, "steps_per_epoch": self.plan["steps_per_epoch"]}

    def position(self, step: int) -> float:
        """The schedule's position for optimizer step ``step``: the step itself, except for lengths in epochs when
        epochs change length, where it is the epochs completed plus the share of this epoch done, in units of
        the plan's steps per epoch (so a restart at epoch 2 comes at epoch 2's first step, whatever the epochs
        before held)."""
        if self.interval != "epoch" or self.epoch is None or self.plan is None:
            return step
        epoch, start, steps = self.epoch
        unit = self.plan["steps_per_epoch"]
        done = min(step - start, steps)
        if steps == unit:
            return int(epoch * unit + done)
        return epoch * unit + done * unit / steps


def lr_at(build: Callable[..., Callable[[float], tuple[float, float | None]]], run: RunPlan, step: float) -> float:
    """The lr at ``step`` of the schedule ``build`` makes for ``run`` (NaN where it cannot be built any more)."""
    try:
        return build(**run)(step)[0]
    except ValueError:
        return math.nan


def plan_change(name: str, old: RunPlan, new: RunPlan, before: float, after: float, step: int) -> tuple[bool, str]:
    """A resumed run planned with another length: ``(jumps, the line to say)``. Where the lr does not jump at the
    resume step (a WSD run extended in its stable phase) an info line, else a warning."""
    if math.isfinite(before) and math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-15):
        return False, (
            f"{name}: the run is now planned as {new} (the checkpoint's plan: {old}); the lr at step {step} is "
            f"the same under both ({after:.4g}), so the schedule goes on without a jump"
        )
    jump = f"from {before:.4g} to {after:.4g}" if math.isfinite(before) else "there"
    return True, (
        f"{name}: the checkpoint was planned as {old}, this Trainer plans {new}; the schedule follows the new "
        f"plan from step {step}, so the lr jumps {jump}. Resume with the original max_epochs/max_steps to "
        f"continue the original trajectory."
    )


def swa_takes_over(trainer: pl.Trainer, name: str, what: str) -> int | None:
    """With Lightning's ``StochasticWeightAveraging`` among the callbacks: the epoch (0-based) from which its
    ``SWALR`` sets the lr (computed as SWA does), after which the callback ``name`` writes no lr (``what`` it
    does until then); one line per fit. ``None`` without SWA."""
    swa = _compat.swa_callback(trainer)
    epoch = None if swa is None else _compat.swa_start_epoch(swa, trainer.max_epochs)
    if epoch is not None:
        rank_zero_info(
            f"{name}: StochasticWeightAveraging sets the lr from epoch {epoch} (0-based) on, annealing it to its "
            f"swa_lrs; {what} sets it until then, and from then on leaves it (and its logging) to SWA"
        )
    return epoch
