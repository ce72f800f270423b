"""Schedules made of others, for the shapes this package does not ship.

``SequenceSchedule``: schedules one after another, each starting its own clock at its boundary, as torch's
``SequentialLR`` runs its schedulers (equal to it where both apply), but closed form: the lr at step ``k`` is a
function of ``k``, so a resume needs nothing but the step.

``LambdaSchedule``: ``max_lr * fn(progress)``, with ``progress`` the share of the run done (0 at the first step,
1 at the end, held there after it): torch's ``LambdaLR`` in the unit that survives a change of run length.
``fn`` must be a pure function (a checkpoint keeps the step, not the function).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from lightning_cyclic.shapes.args import Arg
from lightning_cyclic.shapes.base import Schedule


def check_boundaries(parts: int, boundaries: Any) -> None:
    """One boundary fewer than the ``parts`` (a count), where ``boundaries`` is a list; else a ``ValueError``."""
    if isinstance(boundaries, Sequence) and not isinstance(boundaries, str) and len(boundaries) != parts - 1:
        raise ValueError(
            f"boundaries must hold one position fewer than parts: got {len(boundaries)} boundaries for {parts} parts"
        )


@dataclass(frozen=True)
class SequenceSchedule(Schedule):
    """``parts[0]`` until ``boundaries[0]``, then ``parts[1]`` from its step 0, and so on.

    ``boundaries`` are optimizer steps (increasing, > 0), one fewer than the parts; part ``i`` sees the step
    ``k - boundaries[i - 1]``. Each part is built for its own length (the callback :class:`~lightning_cyclic.
    Sequential` does it), so a one-cycle part anneals within its segment.
    """

    parts: Sequence[Schedule]
    boundaries: Sequence[float]
    total_steps: float | None = None  # unused here: each part has its own

    ARGS: ClassVar[dict[str, Arg]] = {"boundaries": Arg("length", kind="positions", low=0, low_open=True)}

    @classmethod
    def check_relations(cls, values: dict[str, Any]) -> None:
        parts, boundaries = values.get("parts"), values.get("boundaries")
        if parts is None:
            return
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:
            raise ValueError(f"parts must be a non-empty list of schedules, got {parts!r}")
        for i, part in enumerate(parts):
            if not isinstance(part, Schedule):
                raise ValueError(f"parts[{i}] must be a Schedule, got {type(part).__name__}")
        check_boundaries(len(parts), boundaries)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "parts", tuple(self.parts))

    def _part(self, step: float) -> tuple[Schedule, float]:
        i = bisect.bisect_right(self.boundaries, step)
        return self.parts[i], step - (self.boundaries[i - 1] if i else 0.0)

    def lr(self, step: float) -> float:
        part, local = self._part(max(step, 0.0))
        return part.lr(local)

    def momentum(self, step: float) -> float | None:
        part, local = self._part(max(step, 0.0))
        return part.momentum(local)

    def __call__(self, step: float) -> tuple[float, float | None]:
        part, local = self._part(max(step, 0.0))
        return part(local)


@dataclass(frozen=True)
class LambdaSchedule(Schedule):
    """``max_lr * fn(progress)``, ``progress = step / total_steps`` in [0, 1]; momentum ``momentum_fn(progress)``
    where given (else left alone)."""

    max_lr: float
    fn: Callable[[float], float]
    momentum_fn: Callable[[float], float] | None = None
    total_steps: float | None = None

    needs_total: ClassVar[bool] = True
    ARGS: ClassVar[dict[str, Arg]] = {
        "max_lr": Arg("lr", low=0, low_open=True, auto="lr"),
        "fn": Arg(kind="callable"),
        "momentum_fn": Arg(kind="callable", optional=True),
    }

    def _progress(self, step: float) -> float:
        return min(max(step, 0.0) / self._total(), 1.0)

    def lr(self, step: float) -> float:
        value = self.max_lr * float(self.fn(self._progress(step)))
        if not value >= 0:  # negative or NaN: no optimizer takes it
            raise ValueError(f"fn({self._progress(step):.4g}) gave the lr {value!r}; an lr must be >= 0")
        return value

    def momentum(self, step: float) -> float | None:
        return None if self.momentum_fn is None else float(self.momentum_fn(self._progress(step)))
