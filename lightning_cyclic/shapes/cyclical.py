"""Cyclical learning rates (Smith, 2017): lr bounces between ``base_lr`` and ``max_lr``.

Equal step by step to ``torch.optim.lr_scheduler.CyclicLR`` given the same
arguments, lr and momentum. A cycle is ``step_size_up`` steps up then
``step_size_down`` (default: the same) steps down. The amplitude is scaled by

    triangular    1                          per cycle
    triangular2   1 / 2**(cycle - 1)         per cycle  (halves each cycle)
    exp_range     gamma**step                per step
    custom        scale_fn(cycle or step)    ``scale_mode`` says which

Momentum, where cycled, goes the other way: ``high`` when lr is at ``base_lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_cyclic.shapes._checks import check_choice
from lightning_cyclic.shapes.args import arg, check_order
from lightning_cyclic.shapes.base import Schedule

MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True)
class CyclicalSchedule(Schedule):
    """Cyclical lr as a function of the optimizer step (the module's description has the modes).

    The arguments are those of :class:`~lightning_cyclic.Cyclical`, with the step sizes in optimizer steps.
    """

    base_lr: float = arg(
        unit="lr",
        low=0,
        auto="low",
        doc='the lower bound the lr cycles between; ``"auto"`` takes the low end of the LR range test\'s good '
        "range (where the loss starts to fall), as Smith describes.",
    )
    max_lr: float = arg(
        unit="lr",
        low=0,
        low_open=True,
        auto="high",
        doc='the upper bound; ``"auto"`` takes the high end of the good range (the suggestion).',
    )
    step_size_up: float = arg(
        2000, unit="length", low=0, low_open=True, doc="length of the rising half, in ``interval`` units."
    )
    step_size_down: float | None = arg(
        None,
        unit="length",
        low=0,
        low_open=True,
        optional=True,
        doc="length of the falling half (default: ``step_size_up``).",
    )
    mode: str = arg(
        "triangular",
        kind="choice",
        choices=MODES,
        optional=True,  # unused with a scale_fn
        doc='``"triangular"``, ``"triangular2"`` (amplitude halves each cycle) or ``"exp_range"`` (amplitude '
        "times ``gamma**step``).",
    )
    gamma: float = arg(1.0, low=0, high=1, low_open=True, doc="decay per optimizer step for ``exp_range``.")
    scale_fn: Callable[[float], float] | None = arg(
        None,
        kind="callable",
        optional=True,
        doc="a custom amplitude function of the cycle or of the optimizer step (see ``scale_mode``); overrides "
        "``mode``.",
    )
    scale_mode: str | None = arg(
        None,
        kind="choice",
        choices=("cycle", "iterations"),
        optional=True,
        doc='what ``scale_fn`` takes: the cycle (``"cycle"``, the default) or the optimizer step (``"iterations"``).',
    )
    moms: tuple[float, float] | None = arg(
        (0.9, 0.8),
        kind="moms",
        optional=True,
        doc="``(high, low)`` momentum, cycled inversely; ``None`` leaves it alone.",
    )
    total_steps: float | None = None  # unused: a cyclical schedule has no end

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        check_order(values, "base_lr", "max_lr", about_high=True)
        if "mode" in values and values.get("scale_fn") is None:
            check_choice("mode", values["mode"], MODES)

    @property
    def cycle_length(self) -> float:
        """Steps in one full cycle (up and down)."""
        return self.step_size_up + (self.step_size_down if self.step_size_down is not None else self.step_size_up)

    def _scale(self, step: float) -> tuple[float, float]:
        """``(position in the triangle 0..1, amplitude scale)`` at ``step``."""
        total = self.cycle_length
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.scale_fn is not None:
            arg = cycle if (self.scale_mode or "cycle") == "cycle" else step
            return factor, self.scale_fn(arg)
        if self.mode == "triangular":
            return factor, 1.0
        if self.mode == "triangular2":
            return factor, 0.5 ** (cycle - 1)  # = 1 / 2**(cycle - 1), underflowing to 0 instead of overflowing
        return factor, self.gamma**step

    def lr(self, step: float) -> float:
        factor, scale = self._scale(max(step, 0.0))
        return self.base_lr + (self.max_lr - self.base_lr) * factor * scale

    def momentum(self, step: float) -> float | None:
        if self.moms is None:
            return None
        high, low = self.moms
        factor, scale = self._scale(max(step, 0.0))
        return high - (high - low) * factor * scale

    def __call__(self, step: float) -> tuple[float, float | None]:
        # lr() and momentum() from one _scale: the callbacks ask for both at every step
        factor, scale = self._scale(max(step, 0.0))
        lr = self.base_lr + (self.max_lr - self.base_lr) * factor * scale
        if self.moms is None:
            return lr, None
        high, low = self.moms
        return lr, high - (high - low) * factor * scale
