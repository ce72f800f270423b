"""The cyclic schedule callbacks: :class:`OneCycle`, :class:`Cyclical` and :class:`WarmRestarts`.

Their arguments are their shapes' fields: each ``__init__`` and the ``Args`` of each docstring are generated from
those fields (``python -m lightning_cyclic.callbacks.generate``; a test fails when they are not current), the
prose above ``Args:`` is written here. ``default_interval`` (``None``: steps only) and ``takes_total_steps`` say
which of the Lightning side's arguments a callback takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.callbacks.schedule import ScheduleCallback
from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, WarmRestartsSchedule

__all__ = ["Cyclical", "OneCycle", "WarmRestarts"]


class OneCycle(ScheduleCallback):
    """One-cycle policy with inverse momentum, equal to torch's ``OneCycleLR`` step by step.

    Args:
        max_lr: peak lr (of the param group with the largest lr; others keep their ratio), or ``"auto"``: the LR range
            test's suggestion, found at the start of this ``fit`` (each new fit runs the test again, with one line
            saying so; a fit resumed from a checkpoint keeps the lr found before).
        pct_start: fraction of the run spent rising, in (0, 1) (in (0, 0.5] with ``three_phase``).
        div_factor: the run starts at ``max_lr / div_factor``.
        final_div_factor: and ends at ``max_lr / div_factor / final_div_factor``.
        anneal: ``"cosine"`` or ``"linear"``.
        three_phase: rise, fall back to the start, then annihilate (fastai's older form).
        moms: ``(high, low)`` momentum, low where lr peaks; ``None`` leaves momentum alone.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see
            :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).
        finder: the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new
            one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = OneCycleSchedule
    default_interval: ClassVar[str | None] = None
    takes_total_steps: ClassVar[bool] = True

    def __init__(
        self,
        max_lr: float | str,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 10000.0,
        anneal: str = "cosine",
        three_phase: bool = False,
        moms: tuple[float, float] | None = (0.95, 0.85),
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        super().__init__(
            self.declared(locals()),
            interval="step",
            total_steps=total_steps,
            log=log,
            finder=finder,
            optimizer=optimizer,
        )


class Cyclical(ScheduleCallback):
    """Smith's cyclical learning rates, equal to torch's ``CyclicLR`` step by step.

    Args:
        base_lr: the lower bound the lr cycles between; ``"auto"`` takes the low end of the LR range test's good range
            (where the loss starts to fall), as Smith describes.
        max_lr: the upper bound; ``"auto"`` takes the high end of the good range (the suggestion).
        step_size_up: length of the rising half, in ``interval`` units.
        step_size_down: length of the falling half (default: ``step_size_up``).
        mode: ``"triangular"``, ``"triangular2"`` (amplitude halves each cycle) or ``"exp_range"`` (amplitude times
            ``gamma**step``).
        gamma: decay per optimizer step for ``exp_range``.
        scale_fn: a custom amplitude function of the cycle or of the optimizer step (see ``scale_mode``); overrides
            ``mode``.
        scale_mode: what ``scale_fn`` takes: the cycle (``"cycle"``, the default) or the optimizer step
            (``"iterations"``).
        moms: ``(high, low)`` momentum, cycled inversely; ``None`` leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of ``step_size_up`` and ``step_size_down``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see
            :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).
        finder: the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new
            one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = CyclicalSchedule
    default_interval: ClassVar[str | None] = "step"
    takes_total_steps: ClassVar[bool] = False

    def __init__(
        self,
        base_lr: float | str,
        max_lr: float | str,
        step_size_up: float = 2000,
        step_size_down: float | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str | None = None,
        moms: tuple[float, float] | None = (0.9, 0.8),
        interval: str = "step",
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        super().__init__(
            self.declared(locals()),
            interval=interval,
            log=log,
            finder=finder,
            optimizer=optimizer,
        )


class WarmRestarts(ScheduleCallback):
    """SGDR: cosine cycles with warm restarts; equal to torch's ``CosineAnnealingWarmRestarts``
    stepped per optimizer step when ``interval="step"``, ``warmup=0`` and ``cycle_decay=1``.

    Args:
        max_lr: peak lr of the first cycle, or ``"auto"``: the LR range test's suggestion, and with the default rule
            ``edge`` never more than the edge / ``EDGE_DIV[1]`` (a third): a restart jumps to ``max_lr`` in one step on
            trained weights, where one-cycle warms up to it.
        cycle_len: length of the first cycle, in ``interval`` units.
        cycle_mult: each cycle is this many times longer than the last (a float > 0; below 1 the cycles shrink, and
            ``cycle_limit`` is required).
        min_lr: the lr at the end of every cycle.
        cycle_decay: peak multiplier per restart, in (0, 1].
        cycle_limit: after this many cycles hold ``min_lr`` (default: cycle forever).
        warmup: linear warmup before the first cycle, in ``interval`` units.
        warmup_lr_init: lr at the start of warmup (default ``min_lr``).
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        restart_warmup: every cycle after the first rises linearly from ``min_lr`` to its peak over this many
            ``interval`` units (at most half the cycle) instead of jumping there.
        k_decay: the cosine follows ``(t / T) ** k_decay`` of each cycle (timm's ``k_decay``): above 1 the lr stays high
            longer, below 1 it falls sooner.
        interval: ``"step"`` or ``"epoch"``, the unit of ``cycle_len``, ``warmup`` and ``restart_warmup``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see
            :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).
        finder: the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new
            one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = WarmRestartsSchedule
    default_interval: ClassVar[str | None] = "epoch"
    takes_total_steps: ClassVar[bool] = False
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
        super().__init__(
            self.declared(locals()),
            interval=interval,
            log=log,
            finder=finder,
            optimizer=optimizer,
        )
