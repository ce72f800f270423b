"""Schedules made of other things: :class:`Sequential` (schedule callbacks one after another) and
:class:`CustomSchedule` (any shape of one's own as a callback)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.callbacks.schedule import ScheduleCallback, as_pair
from lightning_cyclic.shapes import Schedule, SequenceSchedule
from lightning_cyclic.shapes.compose import check_boundaries

__all__ = ["CustomSchedule", "Sequential"]


class Sequential(ScheduleCallback):
    """Schedule callbacks one after another: ``parts[0]`` until ``boundaries[0]``, then ``parts[1]`` from its own
    step 0, and so on: torch's ``SequentialLR``, closed form (a resume needs the step alone).

    Each part is built for its own segment of the run, with its own ``interval`` for its own lengths, so a
    one-cycle part anneals within its segment and a warmup part's epochs are converted as they would be alone::

        Sequential([WarmupDecay(max_lr=0.01, decay="constant"), OneCycle(max_lr=0.1)], boundaries=[2], interval="epoch")

    holds 0.01 for two epochs, then runs one-cycle over the rest of the run.

    Args:
        parts: schedule callbacks (not themselves in the Trainer's callbacks), with numbers: an ``"auto"``
            argument of a part has no range test to take it from.
        boundaries: where each part after the first starts, in ``interval`` units, increasing; one fewer than
            the parts.
        interval: ``"step"`` or ``"epoch"``, the unit of ``boundaries``.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches``.
        log: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
    """

    schedule_cls = SequenceSchedule

    def __init__(
        self,
        parts: list[ScheduleCallback],
        boundaries: list[float],
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        optimizer: int | list[int] | None = None,
    ) -> None:
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:  # (Hydra: a ListConfig)
            raise ValueError(f"parts must be a non-empty list of schedule callbacks, got {parts!r}")
        for i, part in enumerate(parts):
            if not isinstance(part, ScheduleCallback):
                raise ValueError(f"parts[{i}] must be a schedule callback (OneCycle(...), ...), got {part!r}")
            if part.auto:
                raise ValueError(
                    f"parts[{i}] ({type(part).__name__}) has {', '.join(sorted(part.auto))}='auto': a part takes "
                    f"numbers (run lr_find first, and give its suggestion)"
                )
        if isinstance(boundaries, Sequence) and not isinstance(boundaries, str):
            boundaries = list(boundaries)
        check_boundaries(len(parts), boundaries)
        self.parts = list(parts)
        # the parts by their arguments: in the state_key, so two sequences of other parts keep two states
        params = {"boundaries": boundaries, "schedules": tuple(repr(part) for part in self.parts)}
        super().__init__(params, interval=interval, total_steps=total_steps, log=log, optimizer=optimizer)

    @override
    def _fresh(self) -> None:
        super()._fresh()
        self._warned_short = False

    @override
    def build(self, total_steps: float | None, steps_per_epoch: float) -> Schedule:
        unit = steps_per_epoch if self.interval == "epoch" else 1
        bounds = [b * unit for b in self.params["boundaries"]]
        kept = self.parts
        if total_steps is not None and bounds and bounds[-1] >= total_steps:  # the run ends before a part starts
            i = next(i for i, b in enumerate(bounds) if b >= total_steps)  # where part i + 1 (0-based) starts
            kept, bounds = self.parts[: i + 1], bounds[:i]
            if not self._warned_short:
                rank_zero_warn(
                    f"Sequential: the run ({total_steps:g} optimizer steps) ends before part {i + 2} starts (at "
                    f"{self.params['boundaries'][i]:g} {self.interval}s): the parts from there on are left out"
                )
                self._warned_short = True
        edges = [0.0, *bounds, total_steps]
        parts = [
            part.build(
                total_steps=None if edges[i + 1] is None else edges[i + 1] - edges[i],
                steps_per_epoch=steps_per_epoch,
            )
            for i, part in enumerate(kept)
        ]
        return SequenceSchedule(parts=parts, boundaries=bounds, total_steps=total_steps)

    def __repr__(self) -> str:
        return f"Sequential({self.parts!r}, boundaries={self.params['boundaries']!r}, interval={self.interval!r})"


class CustomSchedule(ScheduleCallback):
    """Any :class:`~lightning_cyclic.shapes.Schedule` as a callback: a schedule of your own is one declaration.

    The shape's ``ARGS`` say everything the callback needs: which arguments are lengths (given in ``interval``
    units and converted to optimizer steps here), which are lrs and may be ``"auto"`` (filled by the LR range
    test at the start of ``fit``), and what each may be (checked now). Everything else is as for the shipped
    schedules: the step is the optimizer step, resume and gradient accumulation give the planned trajectory,
    param-group ratios are kept, ``lr`` and ``momentum`` are logged.

    Args:
        shape: the :class:`~lightning_cyclic.shapes.Schedule` subclass (a frozen dataclass of its arguments,
            with ``ARGS`` and ``lr(step)``; ``momentum(step)`` where it cycles momentum).
        interval: ``"step"`` or ``"epoch"``, the unit of the shape's ``Arg(unit="length")`` arguments.
        total_steps: run length in optimizer steps; default ``trainer.estimated_stepping_batches`` (passed to
            the shape where it has a ``total_steps`` field).
        warms_up: whether the schedule warms up to its ``"auto"`` peak (``True``) or jumps to it in one step, as
            a warm restart does (the range test's reading depends on it).
        log: as for :class:`OneCycle`.
        finder: as for :class:`OneCycle`.
        optimizer: as for :class:`OneCycle`.
        **args: the shape's arguments.
    """

    def __init__(
        self,
        shape: type[Schedule],
        interval: str = "step",
        total_steps: int | None = None,
        warms_up: bool = True,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
        **args: Any,
    ) -> None:
        if not (isinstance(shape, type) and issubclass(shape, Schedule) and dataclasses.is_dataclass(shape)):
            raise TypeError(f"shape must be a Schedule subclass (a frozen dataclass), got {shape!r}")
        unknown = sorted(set(args) - {f.name for f in dataclasses.fields(shape) if f.init})
        if unknown:
            raise ValueError(
                f"CustomSchedule({shape.__name__}): {', '.join(unknown)} is not an argument of the shape; it takes: "
                f"{', '.join(shape.ARGS)}"
            )
        self.schedule_cls = shape
        self.warms_up = warms_up  # type: ignore[misc]  # a class default, set per instance here
        super().__init__(
            {k: as_pair(v) if k == "moms" else v for k, v in args.items()},
            interval=interval,
            total_steps=total_steps,
            log=log,
            finder=finder,
            optimizer=optimizer,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"CustomSchedule({self.schedule_cls.__name__}, {args}, interval={self.interval!r})"
