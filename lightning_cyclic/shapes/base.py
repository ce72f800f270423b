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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from lightning_cyclic.shapes.args import Arg

TOTAL_STEPS = Arg(low=0, low_open=True, optional=True)  # every schedule's run length, in optimizer steps


class _DeclaredArgs:
    """A schedule's ``ARGS``: the :class:`Arg` of each field made by :func:`~lightning_cyclic.shapes.args.arg`,
    in field order (read once per class). A schedule that sets ``ARGS`` itself shadows this."""

    def __init__(self) -> None:
        self._read: dict[type, dict[str, Arg]] = {}

    def __get__(self, obj: object, owner: type) -> Mapping[str, Arg]:
        table = self._read.get(owner)
        if table is None:
            if "__dataclass_fields__" not in vars(owner):  # (the dataclass decorator has not run on it yet)
                return {}
            table = self._read[owner] = {f.name: f.metadata["arg"] for f in fields(owner) if "arg" in f.metadata}
        return table


def anneal_cos(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def anneal_linear(start: float, end: float, pct: float) -> float:
    """Straight line from ``start`` (pct=0) to ``end`` (pct=1)."""
    return (end - start) * pct + start


def warmup_lr(start: float, end: float, step: float, length: float) -> float:
    """Linear warmup: ``start`` at step 0, ``end`` at step ``length`` (every warmup here is this one line)."""
    return start + (end - start) * step / length


def anneal_exp(start: float, end: float, pct: float) -> float:
    """Geometric from ``start`` (pct=0) to ``end`` (pct=1); both must be > 0."""
    return start * (end / start) ** pct


ANNEALS = {"cosine": anneal_cos, "linear": anneal_linear, "exp": anneal_exp}


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
    # the arguments, declared once as fields (see lightning_cyclic.shapes.args): checked here, read by the callbacks
    ARGS: ClassVar[Mapping[str, Arg]] = _DeclaredArgs()  # type: ignore[assignment]  # a table read off the fields

    @classmethod
    def check_arguments(cls, values: Mapping[str, Any], skip: Collection[str] = ()) -> dict[str, Any]:
        """``values`` checked against ``ARGS`` and ``check_relations``, normalised (a momentum pair as a tuple);
        a ``ValueError`` names the first bad argument. Names in ``skip`` (an "auto" argument the range test has
        not filled yet) and names not given are left out, and so are the relations that involve them."""
        out = dict(values)
        for name, arg in (*cls.ARGS.items(), ("total_steps", TOTAL_STEPS)):
            if name in out and name not in skip:
                out[name] = arg.check(name, out[name])
        cls.check_relations({k: v for k, v in out.items() if k not in skip})
        return out

    @classmethod  # noqa: B027  (not abstract: most schedules relate no two arguments)
    def check_relations(cls, values: dict[str, Any]) -> None:
        """Checks that relate two arguments (``min_lr <= max_lr``); ``values`` holds only the arguments known
        so far (see :func:`~lightning_cyclic.shapes.args.numbers`)."""

    @classmethod
    def requires_total(cls, values: Mapping[str, Any]) -> bool:
        """Whether a schedule of these arguments needs the run's length (``needs_total``)."""
        return cls.needs_total

    def __post_init__(self) -> None:
        """Every schedule checks its arguments when it is made; a subclass that derives fields from them calls
        this first (``super().__post_init__()``)."""
        self._check_fields()

    def _check_fields(self) -> None:
        """Check this schedule's own arguments against ``ARGS`` and keep their normalised values."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        checked = self.check_arguments(given)
        set_fields(self, **{name: value for name, value in checked.items() if value is not given[name]})

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
