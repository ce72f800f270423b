"""The decaying schedule callbacks: :class:`WarmupDecay` and :class:`WarmupStableDecay` (WSD).

Generated and written as :mod:`lightning_cyclic.callbacks.cycles` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.callbacks.schedule import ScheduleCallback
from lightning_cyclic.shapes import WarmupDecaySchedule, WarmupStableDecaySchedule
from lightning_cyclic.shapes.warmup import ENDED

__all__ = ["WarmupDecay", "WarmupStableDecay"]

WARMUP_CAP = 0.1  # a warmup that leaves no room to decay is cut to this share of the run


class WarmupDecay(ScheduleCallback):
    """Linear warmup to ``max_lr``, then a decay.

    Args:
        max_lr: the lr at the end of warmup, or ``"auto"`` (the LR range test's suggestion).
        decay: ``"cosine"``, ``"linear"``, ``"poly"`` (to ``min_lr`` at the end of the run), ``"step"``,
            ``"multistep"``, ``"exponential"``, ``"inverse_sqrt"`` or ``"constant"``.
        warmup: warmup length in ``interval`` units (as long as the run or longer, before a decay that ends with the
            run: a tenth of the run, with a warning).
        warmup_lr_init: the lr where warmup starts.
        min_lr: end of cosine/linear/poly, floor of the others.
        step_size: ``"step"`` decays by ``gamma`` every ``step_size``; ``"exponential"`` by ``gamma`` per ``step_size``
            smoothly.
        milestones: positions (after warmup) where ``"multistep"`` multiplies by ``gamma``.
        gamma: the factor of ``"step"``, ``"multistep"`` and ``"exponential"``, in (0, 1].
        power: exponent of ``"poly"``.
        timescale: ``s`` of ``"inverse_sqrt"``.
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of ``warmup``, ``step_size``, ``milestones`` and ``timescale``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see
            :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).
        finder: the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new
            one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = WarmupDecaySchedule
    default_interval: ClassVar[str | None] = "step"
    takes_total_steps: ClassVar[bool] = True

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
        milestones: Sequence[float] = (),
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
        super().__init__(
            self.declared(locals()),
            interval=interval,
            total_steps=total_steps,
            log=log,
            finder=finder,
            optimizer=optimizer,
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
        anneal: the decay's shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"`` (``1 - sqrt(p)``, the best of the three in
            Hägele et al. 2024).
        min_lr: the lr at the end of the decay.
        warmup_lr_init: the lr where warmup starts.
        moms: ``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.
        interval: ``"step"`` or ``"epoch"``, the unit of ``warmup`` and ``decay_len``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: log ``lr`` and ``momentum`` to the Trainer's loggers (see
            :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).
        finder: the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer's, or a new
            one).
        optimizer: which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).
    """

    schedule_cls = WarmupStableDecaySchedule
    default_interval: ClassVar[str | None] = "step"
    takes_total_steps: ClassVar[bool] = True

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
        super().__init__(
            self.declared(locals()),
            interval=interval,
            total_steps=total_steps,
            log=log,
            finder=finder,
            optimizer=optimizer,
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
