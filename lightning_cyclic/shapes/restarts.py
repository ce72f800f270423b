"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, 2017).

After an optional linear ``warmup``, cycle ``i`` lasts ``cycle_len * cycle_mult**i``
steps and runs a half cosine from ``max_lr * cycle_decay**i`` down to ``min_lr``.
After ``cycle_limit`` cycles (if set) the lr holds at ``min_lr``.

Extras (timm's names where timm has them):

- ``cycle_mult < 1``: cycles that shrink (they sum to ``cycle_len / (1 - cycle_mult)``, so a ``cycle_limit``
  is required);
- ``k_decay``: the cosine of cycle progress ``t**k / T**k`` (timm's ``k_decay``): above 1 the lr stays high
  longer, below 1 it falls sooner;
- ``restart_warmup``: every cycle after the first rises linearly from ``min_lr`` to its peak over its first
  ``restart_warmup`` steps (at most half the cycle) instead of jumping there, then runs its cosine over the
  rest.

With ``warmup=0``, ``cycle_decay=1`` and no extras it equals
``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=cycle_len,
T_mult=cycle_mult, eta_min=min_lr)`` stepped once per optimizer step; unlike
torch, ``cycle_mult`` may be any float > 0 and lengths need not be integers. With ``warmup=0`` it equals
timm's ``CosineLRScheduler`` (``cycle_mul``, ``cycle_decay``, ``cycle_limit``, ``k_decay``) stepped per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lightning_cyclic.shapes.args import arg, check_order, inverse_moms, numbers
from lightning_cyclic.shapes.base import Schedule, anneal_cos, inverse_momentum, warmup_lr


@dataclass(frozen=True)
class WarmRestartsSchedule(Schedule):
    """SGDR as a function of the optimizer step (the module's description has the cycles).

    The arguments are those of :class:`~lightning_cyclic.WarmRestarts`, with ``cycle_len`` and ``warmup`` in
    optimizer steps.
    """

    max_lr: float = arg(
        unit="lr",
        low=0,
        low_open=True,
        auto="lr",
        doc='peak lr of the first cycle, or ``"auto"``: the LR range test\'s suggestion, and with the default rule '
        "``edge`` never more than the edge / ``EDGE_DIV[1]`` (a third): a restart jumps to ``max_lr`` in one step "
        "on trained weights, where one-cycle warms up to it.",
    )
    cycle_len: float = arg(unit="length", low=0, low_open=True, doc="length of the first cycle, in ``interval`` units.")
    cycle_mult: float = arg(
        1.0,
        low=0,
        low_open=True,
        doc="each cycle is this many times longer than the last (a float > 0; below 1 the cycles shrink, and "
        "``cycle_limit`` is required).",
    )
    min_lr: float = arg(0.0, unit="lr", low=0, doc="the lr at the end of every cycle.")
    cycle_decay: float = arg(1.0, low=0, high=1, low_open=True, doc="peak multiplier per restart, in (0, 1].")
    cycle_limit: int | None = arg(
        None,
        kind="integer",
        low=1,
        optional=True,
        doc="after this many cycles hold ``min_lr`` (default: cycle forever).",
    )
    warmup: float = arg(0, unit="length", low=0, doc="linear warmup before the first cycle, in ``interval`` units.")
    warmup_lr_init: float | None = arg(
        None, unit="lr", low=0, optional=True, doc="lr at the start of warmup (default ``min_lr``)."
    )
    moms: tuple[float, float] | None = inverse_moms()
    restart_warmup: float = arg(
        0,
        unit="length",
        low=0,
        doc="every cycle after the first rises linearly from ``min_lr`` to its peak over this many ``interval`` "
        "units (at most half the cycle) instead of jumping there.",
    )
    k_decay: float = arg(
        1.0,
        low=0,
        low_open=True,
        doc="the cosine follows ``(t / T) ** k_decay`` of each cycle (timm's ``k_decay``): above 1 the lr stays "
        "high longer, below 1 it falls sooner.",
    )
    total_steps: float | None = None  # unused: restarts run as long as training does

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        check_order(values, "min_lr", "max_lr", strict=True)
        if numbers(values, "cycle_mult") and values["cycle_mult"] < 1 and values.get("cycle_limit") is None:
            raise ValueError(
                f"cycle_mult={values['cycle_mult']!r} < 1 shrinks the cycles towards zero length, so it needs a "
                f"cycle_limit (after that many cycles the lr holds min_lr)"
            )

    def cycle_position(self, step: float) -> tuple[int, float, float]:
        """``(cycle index, steps into the cycle, cycle length)`` at ``step`` after warmup."""
        length, mult = self.cycle_len, self.cycle_mult
        tol = 1e-9 * max(1.0, step)  # a step within rounding error of a cycle end is the next cycle's start
        if mult == 1:
            i = math.floor((step + tol) / length)
            return i, max(step - i * length, 0.0), length
        # closed form, then nudge by one where floating point lands on the wrong side of a boundary
        i = max(math.floor(math.log(1 + step * (mult - 1) / length, mult)), 0)
        start = length * (mult**i - 1) / (mult - 1)
        while i > 0 and start > step + tol:
            i -= 1
            start = length * (mult**i - 1) / (mult - 1)
        while start + length * mult**i <= step + tol:
            start += length * mult**i
            i += 1
        return i, max(step - start, 0.0), length * mult**i

    def cycle_end(self, i: int) -> float:
        """The step at which cycle ``i`` (0-based) ends, warmup included: where the lr is lowest."""
        if self.cycle_mult == 1:
            return self.warmup + self.cycle_len * (i + 1)
        return self.warmup + self.cycle_len * (self.cycle_mult ** (i + 1) - 1) / (self.cycle_mult - 1)

    def _lr_and_peak(self, step: float) -> tuple[float, float]:
        step = max(step, 0.0)
        start_lr = self.min_lr if self.warmup_lr_init is None else self.warmup_lr_init
        if step < self.warmup:
            return warmup_lr(start_lr, self.max_lr, step, self.warmup), self.max_lr
        if self.cycle_limit is not None and step >= self.cycle_end(self.cycle_limit - 1):
            return self.min_lr, self.max_lr * self.cycle_decay ** (self.cycle_limit - 1)
        i, into, length = self.cycle_position(step - self.warmup)
        peak = self.max_lr * self.cycle_decay**i
        ramp = min(self.restart_warmup, length / 2) if i > 0 else 0.0
        if into < ramp:  # a restart that rises to its peak
            return self.min_lr + (peak - self.min_lr) * into / ramp, peak
        pct = (into - ramp) / (length - ramp)
        if self.k_decay != 1:
            pct = pct**self.k_decay
        return anneal_cos(peak, self.min_lr, pct), peak

    def lr(self, step: float) -> float:
        return self._lr_and_peak(step)[0]

    def momentum(self, step: float) -> float | None:
        if self.moms is None:
            return None
        lr, peak = self._lr_and_peak(step)
        low = self.min_lr if self.warmup_lr_init is None else min(self.min_lr, self.warmup_lr_init)
        return inverse_momentum(self.moms, lr, low, peak)

    def __call__(self, step: float) -> tuple[float, float | None]:
        # lr() and momentum() from one _lr_and_peak: the callbacks ask for both at every step
        lr, peak = self._lr_and_peak(step)
        if self.moms is None:
            return lr, None
        low = self.min_lr if self.warmup_lr_init is None else min(self.min_lr, self.warmup_lr_init)
        return lr, inverse_momentum(self.moms, lr, low, peak)
