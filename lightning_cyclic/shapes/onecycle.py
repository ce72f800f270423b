"""One-cycle (Smith & Topin, 2018): up to ``max_lr`` and down far below the start.

The same phases and the same arithmetic as ``torch.optim.lr_scheduler.OneCycleLR``
(equal to it step by step), plus: it never raises past the end, where it holds
the final value, and ``moms=None`` leaves momentum alone.

Two phases (default)::

    steps 0 .. pct_start*T-1     lr  max_lr/div_factor -> max_lr          momentum high -> low
    ..    T-1                    lr  max_lr -> initial/final_div_factor   momentum low -> high

Three phases (``three_phase=True``, fastai's older form)::

    up to initial_lr -> max_lr, back down to initial_lr over the same length,
    then annihilate to initial_lr/final_div_factor; momentum mirrors the first
    two and stays high in the third.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lightning_cyclic.shapes._checks import check_number
from lightning_cyclic.shapes.args import arg
from lightning_cyclic.shapes.base import ANNEALS, Schedule, set_fields

# (end_step, start_lr, end_lr, start_momentum, end_momentum)
_Phase = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class OneCycleSchedule(Schedule):
    """One-cycle as a function of the optimizer step (the module's description has the phases).

    The arguments are those of :class:`~lightning_cyclic.OneCycle`, with ``total_steps`` the run's length in
    optimizer steps.
    """

    max_lr: float = arg(
        unit="lr",
        low=0,
        low_open=True,
        auto="lr",
        doc='peak lr (of the param group with the largest lr; others keep their ratio), or ``"auto"``: the LR '
        "range test's suggestion, found at the start of this ``fit`` (each new fit runs the test again, with one "
        "line saying so; a fit resumed from a checkpoint keeps the lr found before).",
    )
    pct_start: float = arg(
        0.3,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        doc="fraction of the run spent rising, in (0, 1) (in (0, 0.5] with ``three_phase``).",
    )
    div_factor: float = arg(25.0, low=0, low_open=True, doc="the run starts at ``max_lr / div_factor``.")
    final_div_factor: float = arg(
        1e4, low=0, low_open=True, doc="and ends at ``max_lr / div_factor / final_div_factor``."
    )
    anneal: str = arg("cosine", kind="choice", choices=("cosine", "linear"), doc='``"cosine"`` or ``"linear"``.')
    three_phase: bool = arg(
        False,
        kind="choice",
        choices=(True, False),
        doc="rise, fall back to the start, then annihilate (fastai's older form).",
    )
    moms: tuple[float, float] | None = arg(
        (0.95, 0.85),
        kind="moms",
        optional=True,
        doc="``(high, low)`` momentum, low where lr peaks; ``None`` leaves momentum alone.",
    )
    total_steps: float | None = None
    _phases: tuple[_Phase, ...] = field(init=False, repr=False, compare=False, default=())

    needs_total: ClassVar[bool] = True

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        if values.get("three_phase") is True and "pct_start" in values:  # up and back down in the first run
            check_number("pct_start", values["pct_start"], 0, 0.5, low_open=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.total_steps is None:
            return
        total = self.total_steps
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        high_m, low_m = self.moms or (0.0, 0.0)  # with moms=None unused: momentum() is None
        up_end = float(self.pct_start * total) - 1
        phases: tuple[_Phase, ...]
        if self.three_phase:
            phases = (
                (up_end, initial, self.max_lr, high_m, low_m),
                (float(2 * self.pct_start * total) - 2, self.max_lr, initial, low_m, high_m),
                (total - 1, initial, final, high_m, high_m),
            )
        else:
            phases = (
                (up_end, initial, self.max_lr, high_m, low_m),
                (total - 1, self.max_lr, final, low_m, high_m),
            )
        set_fields(self, _phases=phases)

    def _locate(self, step: float) -> tuple[_Phase, float]:
        """The phase ``step`` falls in and how far through it (0..1)."""
        if not self._phases:
            self._total()  # raises the clear "needs total_steps" error
        step = min(max(step, 0.0), self._phases[-1][0])  # hold the final value past the end
        start = 0.0
        for phase in self._phases[:-1]:
            end = phase[0]
            if step <= end:
                return phase, 1.0 if end == start else (step - start) / (end - start)
            start = end
        last = self._phases[-1]  # (the step is held at its end above)
        return last, 1.0 if last[0] == start else (step - start) / (last[0] - start)

    def lr(self, step: float) -> float:
        (_, start, end, _, _), pct = self._locate(step)
        return ANNEALS[self.anneal](start, end, pct)

    def momentum(self, step: float) -> float | None:
        if self.moms is None:
            return None
        (_, _, _, start, end), pct = self._locate(step)
        return ANNEALS[self.anneal](start, end, pct)

    def __call__(self, step: float) -> tuple[float, float | None]:
        # lr() and momentum() in one _locate: the callbacks ask for both at every step
        (_, start, end, m_start, m_end), pct = self._locate(step)
        anneal = ANNEALS[self.anneal]
        return anneal(start, end, pct), None if self.moms is None else anneal(m_start, m_end, pct)
