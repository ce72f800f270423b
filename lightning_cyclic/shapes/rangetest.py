"""The range test's lr sweep (Smith, 2017, section 3.3): from ``min_lr`` to ``max_lr`` in ``num_steps`` steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_cyclic.shapes.args import Arg, numbers
from lightning_cyclic.shapes.base import Schedule, anneal_exp, anneal_linear


@dataclass(frozen=True)
class RangeTestSweep(Schedule):
    """Step ``k`` of ``num_steps`` gets ``min_lr`` at 0 and ``max_lr`` at ``num_steps - 1``.

    ``mode="exponential"`` spaces the lrs evenly in log space (the usual choice:
    each step multiplies the lr by the same factor); ``"linear"`` evenly.
    """

    min_lr: float = 1e-6
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"
    total_steps: float | None = None  # unused: the sweep's length is num_steps

    ARGS: ClassVar[dict[str, Arg]] = {
        "min_lr": Arg("lr", low=0, low_open=True),
        "max_lr": Arg("lr", low=0, low_open=True),
        "num_steps": Arg(kind="integer", low=2),
        "mode": Arg(kind="choice", choices=("exponential", "linear")),
    }

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        if numbers(values, "min_lr", "max_lr") and values["max_lr"] <= values["min_lr"]:
            raise ValueError(
                f"max_lr must be > min_lr, got max_lr={values['max_lr']!r} and min_lr={values['min_lr']!r}"
            )

    def lr(self, step: float) -> float:
        return self.extended_lr(min(step, self.num_steps - 1))

    def extended_lr(self, step: float) -> float:
        """The lr of step ``step`` with the sweep's spacing, also past ``num_steps - 1``, where ``lr`` holds
        ``max_lr``: a range test that goes on past ``max_lr`` keeps its spacing."""
        anneal = anneal_exp if self.mode == "exponential" else anneal_linear
        return anneal(self.min_lr, self.max_lr, max(step, 0.0) / (self.num_steps - 1))
