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
from collections.abc import Sequence
from dataclasses import dataclass

from lightning_cyclic.shapes._checks import check_choice, check_moms, check_number
from lightning_cyclic.shapes.base import Schedule, anneal_cos, inverse_momentum, set_fields

DECAYS = ("constant", "step", "multistep", "exponential", "inverse_sqrt", "cosine", "linear", "poly")
ENDED = ("cosine", "linear", "poly")  # decays that need the run's length


@dataclass(frozen=True)
class WarmupDecaySchedule(Schedule):
    """Warmup and decay as a function of the optimizer step (the module's description has the decays).

    The arguments are those of :class:`~lightning_cyclic.WarmupDecay`, with its lengths in optimizer steps.
    """

    max_lr: float
    decay: str = "cosine"
    warmup: float = 0
    warmup_lr_init: float = 0.0
    total_steps: float | None = None
    min_lr: float = 0.0
    step_size: float = 1
    milestones: Sequence[float] = ()
    gamma: float = 0.1
    power: float = 1.0
    timescale: float | None = None
    moms: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_number("max_lr", self.max_lr, 0, low_open=True)
        check_choice("decay", self.decay, DECAYS)
        check_number("warmup", self.warmup, 0)
        check_number("warmup_lr_init", self.warmup_lr_init, 0)
        check_number("min_lr", self.min_lr, 0)
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr must be <= max_lr, got min_lr={self.min_lr!r} and max_lr={self.max_lr!r}")
        check_number("step_size", self.step_size, 0, low_open=True)
        if isinstance(self.milestones, str) or not isinstance(self.milestones, Sequence):
            raise ValueError(f"milestones must be a list of increasing positions, got {self.milestones!r}")
        for m in self.milestones:
            check_number("milestones", m, 0)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {list(self.milestones)!r}")
        if self.decay == "multistep" and not self.milestones:
            raise ValueError("milestones must be a non-empty list when decay='multistep', got []")
        set_fields(self, milestones=tuple(self.milestones))
        check_number("gamma", self.gamma, 0, 1, low_open=True)
        check_number("power", self.power, 0, low_open=True)
        if self.timescale is not None:
            check_number("timescale", self.timescale, 0, low_open=True)
        set_fields(self, moms=check_moms("moms", self.moms))
        self._check_total()
        if self.total_steps is not None and self.decay in ENDED and self.total_steps <= self.warmup:
            raise ValueError(
                f"warmup must be shorter than the run for decay={self.decay!r}: "
                f"got warmup={self.warmup!r} steps and total_steps={self.total_steps!r}"
            )

    @property
    def needs_total(self) -> bool:  # type: ignore[override]
        return self.decay in ENDED

    def lr(self, step: float) -> float:
        step = max(step, 0.0)
        if step < self.warmup:
            return self.warmup_lr_init + (self.max_lr - self.warmup_lr_init) * step / self.warmup
        t = step - self.warmup
        top, bottom, decay = self.max_lr, self.min_lr, self.decay
        if decay in ENDED:
            p = min(t / (self._total() - self.warmup), 1.0)
            if decay == "cosine":
                return anneal_cos(top, bottom, p)
            if decay == "linear":
                return top + (bottom - top) * p
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
