"""Warmup, stable, decay (WSD, the trapezoid): the schedule of LLM pre-training (MiniCPM, Hägele et al. 2024).

Over a run of ``T`` optimizer steps, with a decay of ``D`` steps (``decay_len``, or ``decay_pct * T``)::

    steps 0 .. warmup            linear from warmup_lr_init to max_lr
    ..    T - D                  max_lr, held (the stable phase: as long as the rest leaves)
    ..    T                      max_lr -> min_lr, shaped by ``anneal``:
                                   linear   1 - p
                                   cosine   (1 + cos(pi p)) / 2
                                   1-sqrt   1 - sqrt(p)        (Hägele et al.: the best of the three)
                                 with p = (step - (T - D)) / D; min_lr from T on

Equal to the WSD schedule of Hugging Face's ``transformers`` (``get_wsd_schedule``) given ``warmup_lr_init =
min_lr``, one cosine half-wave, and a run of ``warmup + stable + decay`` steps.

Why it matters: the stable phase needs no end date. A run checkpointed in its stable phase and resumed with a
longer run (``max_steps``, ``max_epochs``) goes on at ``max_lr`` and decays at the new end: the trajectory is
the one the longer run would have had from the start (``decay_pct`` grows the decay with the run;
``decay_len`` keeps its length).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_cyclic.shapes.args import arg, check_order, inverse_moms, numbers
from lightning_cyclic.shapes.base import ANNEALS as ANNEAL_FUNCTIONS
from lightning_cyclic.shapes.base import Schedule, inverse_momentum, warmup_lr

ANNEALS = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class WarmupStableDecaySchedule(Schedule):
    """WSD as a function of the optimizer step (the module's description has the phases).

    The arguments are those of :class:`~lightning_cyclic.WarmupStableDecay`, with ``warmup`` and ``decay_len``
    in optimizer steps.
    """

    max_lr: float = arg(
        unit="lr",
        low=0,
        low_open=True,
        auto="lr",
        doc='the lr of the stable phase, or ``"auto"`` (the LR range test\'s suggestion).',
    )
    warmup: float = arg(0, unit="length", low=0, doc="linear warmup length, in ``interval`` units.")
    decay_pct: float = arg(
        0.2,
        low=0,
        high=1,
        low_open=True,
        doc="the decay's share of the run, in (0, 1] (used when ``decay_len`` is not given).",
    )
    decay_len: float | None = arg(
        None,
        unit="length",
        low=0,
        low_open=True,
        optional=True,
        doc="the decay's length in ``interval`` units (instead of a share of the run).",
    )
    anneal: str = arg(
        "1-sqrt",
        kind="choice",
        choices=ANNEALS,
        doc='the decay\'s shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"`` (``1 - sqrt(p)``, the best of the three '
        "in Hägele et al. 2024).",
    )
    min_lr: float = arg(0.0, unit="lr", low=0, doc="the lr at the end of the decay.")
    warmup_lr_init: float = arg(0.0, unit="lr", low=0, doc="the lr where warmup starts.")
    moms: tuple[float, float] | None = inverse_moms()
    total_steps: float | None = None

    needs_total: ClassVar[bool] = True

    @classmethod
    def decay_steps(cls, values: Mapping[str, Any], total: float) -> float:
        """The decay's length in optimizer steps for a run of ``total``: ``decay_len``, or ``decay_pct * total``."""
        length = values.get("decay_len")
        return length if length is not None else values.get("decay_pct", 0.2) * total

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        check_order(values, "min_lr", "max_lr")
        if numbers(values, "total_steps"):
            total, warmup = values["total_steps"], values.get("warmup", 0)
            decay = cls.decay_steps(values, total)
            if warmup + decay > total:
                raise ValueError(
                    f"warmup and decay must fit in the run: got warmup={warmup!r} steps and a decay of {decay:g} "
                    f"steps in total_steps={total!r}"
                )

    def _decay_start(self) -> tuple[float, float]:
        total = self._total()
        decay = self.decay_steps({"decay_len": self.decay_len, "decay_pct": self.decay_pct}, total)
        return total - decay, decay

    def lr(self, step: float) -> float:
        step = max(step, 0.0)
        if step < self.warmup:
            return warmup_lr(self.warmup_lr_init, self.max_lr, step, self.warmup)
        start, decay = self._decay_start()
        if step < start:
            return self.max_lr
        p = min((step - start) / decay, 1.0) if decay > 0 else 1.0
        if self.anneal == "1-sqrt":
            return self.min_lr + (self.max_lr - self.min_lr) * (1.0 - math.sqrt(p))
        return ANNEAL_FUNCTIONS[self.anneal](self.max_lr, self.min_lr, p)

    def momentum(self, step: float) -> float | None:
        if self.moms is None:
            return None
        low = min(self.min_lr, self.warmup_lr_init)
        return inverse_momentum(self.moms, self.lr(step), low, self.max_lr)
