"""Linear warmup, then a decay: the schedule most papers train with.

Steps ``0 .. warmup-1`` ramp linearly from ``warmup_lr_init`` to ``max_lr``; the
decay then starts at ``max_lr`` with its own clock ``t = step - warmup`` (as
``SequentialLR`` of a warmup and a torch decay would). With ``warmup=0`` each
decay equals its torch counterpart:

    constant      max_lr                                         ConstantLR(factor=1)
    step          max_lr * gamma**floor(t / step_size)           StepLR
    multistep     max_lr * gamma**(milestones passed)            MultiStepLR
    exponential   max_lr * gamma**(t / step_size)                ExponentialLR (step_size=1)
    inverse_sqrt  max_lr * sqrt(s / (s + t)),  s = timescale or max(warmup, 1)
    cosine        min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2        CosineAnnealingLR
    linear        max_lr + (min_lr - max_lr) * p                            LinearLR
    poly          min_lr + (max_lr - min_lr) * (1 - p)**power               PolynomialLR

where ``p = t / (total_steps - warmup)``, held at 1 past the end. The
open-ended decays never go below ``min_lr``. Momentum, where cycled
(``moms``), moves inversely to lr.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_cyclic.shapes.args import arg, check_order, inverse_moms, numbers
from lightning_cyclic.shapes.base import Schedule, anneal_cos, anneal_linear, inverse_momentum, warmup_lr

DECAYS = ("constant", "step", "multistep", "exponential", "inverse_sqrt", "cosine", "linear", "poly")
ENDED = ("cosine", "linear", "poly")  # decays that need the run's length


@dataclass(frozen=True)
class WarmupDecaySchedule(Schedule):
    """Warmup and decay as a function of the optimizer step (the module's description has the decays).

    The arguments are those of :class:`~lightning_cyclic.WarmupDecay`, with its lengths in optimizer steps.
    """

    max_lr: float = arg(
        unit="lr",
        low=0,
        low_open=True,
        auto="lr",
        doc='the lr at the end of warmup, or ``"auto"`` (the LR range test\'s suggestion).',
    )
    decay: str = arg(
        "cosine",
        kind="choice",
        choices=DECAYS,
        doc='``"cosine"``, ``"linear"``, ``"poly"`` (to ``min_lr`` at the end of the run), ``"step"``, '
        '``"multistep"``, ``"exponential"``, ``"inverse_sqrt"`` or ``"constant"``.',
    )
    warmup: float = arg(
        0,
        unit="length",
        low=0,
        doc="warmup length in ``interval`` units (as long as the run or longer, before a decay that ends with the "
        "run: a tenth of the run, with a warning).",
    )
    warmup_lr_init: float = arg(0.0, unit="lr", low=0, doc="the lr where warmup starts.")
    min_lr: float = arg(0.0, unit="lr", low=0, doc="end of cosine/linear/poly, floor of the others.")
    step_size: float = arg(
        1,
        unit="length",
        low=0,
        low_open=True,
        doc='``"step"`` decays by ``gamma`` every ``step_size``; ``"exponential"`` by ``gamma`` per ``step_size`` '
        "smoothly.",
    )
    milestones: Sequence[float] = arg(
        (),
        unit="length",
        kind="positions",
        low=0,
        doc='positions (after warmup) where ``"multistep"`` multiplies by ``gamma``.',
    )
    gamma: float = arg(
        0.1,
        low=0,
        high=1,
        low_open=True,
        doc='the factor of ``"step"``, ``"multistep"`` and ``"exponential"``, in (0, 1].',
    )
    power: float = arg(1.0, low=0, low_open=True, doc='exponent of ``"poly"``.')
    timescale: float | None = arg(
        None, unit="length", low=0, low_open=True, optional=True, doc='``s`` of ``"inverse_sqrt"``.'
    )
    moms: tuple[float, float] | None = inverse_moms()
    total_steps: float | None = None

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        check_order(values, "min_lr", "max_lr")
        decay = values.get("decay", "cosine")
        if decay == "multistep" and "milestones" in values and not values["milestones"]:
            raise ValueError("milestones must be a non-empty list when decay='multistep', got []")
        total, warmup = values.get("total_steps"), values.get("warmup", 0)
        if numbers(values, "total_steps", "warmup") and decay in ENDED and total <= warmup:
            raise ValueError(
                f"warmup must be shorter than the run for decay={decay!r}: "
                f"got warmup={warmup!r} steps and total_steps={total!r}"
            )

    @classmethod
    def requires_total(cls, values: Mapping[str, Any]) -> bool:
        return values.get("decay", "cosine") in ENDED

    def lr(self, step: float) -> float:
        step = max(step, 0.0)
        if step < self.warmup:
            return warmup_lr(self.warmup_lr_init, self.max_lr, step, self.warmup)
        t = step - self.warmup
        top, bottom, decay = self.max_lr, self.min_lr, self.decay
        if decay in ENDED:
            p = min(t / (self._total() - self.warmup), 1.0)
            if decay == "cosine":
                return anneal_cos(top, bottom, p)
            if decay == "linear":
                return anneal_linear(top, bottom, p)
            return bottom + (top - bottom) * (1 - p) ** self.power
        if decay == "constant":
            return top
        if decay == "step":
            lr = top * self.gamma ** math.floor(t / self.step_size)
        elif decay == "multistep":
            lr = top * self.gamma ** bisect.bisect_right(self.milestones, t)
        elif decay == "exponential":
            lr = top * self.gamma ** (t / self.step_size)
        else:  # inverse_sqrt
            s = self.timescale if self.timescale is not None else max(self.warmup, 1)
            lr = top * math.sqrt(s / (s + t))
        return max(lr, bottom)

    def momentum(self, step: float) -> float | None:
        if self.moms is None:
            return None
        low = min(self.min_lr, self.warmup_lr_init)
        return inverse_momentum(self.moms, self.lr(step), low, self.max_lr)

    def __call__(self, step: float) -> tuple[float, float | None]:
        # lr() once for both: the callbacks ask for lr and momentum at every step
        lr = self.lr(step)
        if self.moms is None:
            return lr, None
        return lr, inverse_momentum(self.moms, lr, min(self.min_lr, self.warmup_lr_init), self.max_lr)
