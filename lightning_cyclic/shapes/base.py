"""What every schedule is: a pure function of the optimizer step.

A schedule maps the optimizer step ``k`` (0 for the first ``optimizer.step()``)
to ``(lr, momentum)``; ``momentum`` is ``None`` where the schedule leaves it
alone. It keeps no counter of its own, so resuming from step ``k`` is free.
Lengths here are always in optimizer steps; converting epochs happens once,
in the Lightning callbacks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from lightning_cyclic.shapes._checks import check_number


def anneal_cos(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def anneal_linear(start: float, end: float, pct: float) -> float:
    """Straight line from ``start`` (pct=0) to ``end`` (pct=1)."""
    return (end - start) * pct + start


def anneal_exp(start: float, end: float, pct: float) -> float:
    """Geometric from ``start`` (pct=0) to ``end`` (pct=1); both must be > 0."""
    return start * (end / start) ** pct


ANNEALS = {"cos": anneal_cos, "linear": anneal_linear, "exp": anneal_exp}


def inverse_momentum(moms: tuple[float, float], lr: float, lr_low: float, lr_high: float) -> float:
    """Momentum moving inversely to lr: ``high`` at ``lr_low``, ``low`` at ``lr_high``.

    Outside ``[lr_low, lr_high]`` the momentum is clipped to ``[low, high]``.
    """
    high, low = moms
    if lr_high <= lr_low:
        return high
    pct = min(max((lr - lr_low) / (lr_high - lr_low), 0.0), 1.0)
    return high - (high - low) * pct


@dataclass(frozen=True)
class Schedule(ABC):
    """Abstract base: subclasses define ``lr(step)`` and, where they cycle it, ``momentum(step)``.

    ``total_steps`` is the planned length of the run in optimizer steps. Schedules
    that need it (``needs_total = True``) hold their final value past it; the
    others ignore it. ``None`` means "not known yet": such a schedule can be
    validated and described, but not evaluated.

    Being abstract (not a plain dataclass) is what lets a ``Schedule``-typed
    argument take any subclass by ``class_path`` in jsonargparse and
    ``LightningCLI``; the subclasses stay frozen dataclasses.
    """

    needs_total: ClassVar[bool] = False

    @abstractmethod
    def lr(self, step: float) -> float:
        """The lr at optimizer step ``step`` (0 for the first step)."""

    def momentum(self, step: float) -> float | None:
        return None

    def __call__(self, step: float) -> tuple[float, float | None]:
        return self.lr(step), self.momentum(step)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The schedules here fuse lr() and momentum() in their own __call__ (one phase lookup for both);
        # a subclass that overrides lr() or momentum() alone gets this plain __call__ back, which uses them.
        if "__call__" not in cls.__dict__ and ("lr" in cls.__dict__ or "momentum" in cls.__dict__):
            # setattr: replacing a method of the class is the point here (a type checker refuses the assignment)
            setattr(cls, "__call__", Schedule.__call__)  # noqa: B010

    # helpers for subclasses -------------------------------------------------
    def _check_total(self) -> None:
        total = getattr(self, "total_steps", None)
        if total is not None:
            check_number("total_steps", total, 0, low_open=True)

    def _total(self) -> float:
        total = getattr(self, "total_steps", None)
        if total is None:
            raise ValueError(
                f"{type(self).__name__} needs the run's length: total_steps must be a positive number, got None"
            )
        return total


def set_fields(obj: object, **values: object) -> None:
    """Set derived fields on a frozen dataclass from ``__post_init__``."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)
