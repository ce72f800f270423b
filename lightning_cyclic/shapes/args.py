"""A schedule's arguments, declared once: what each one is, what it may be, and what it means.

Each argument of a :class:`~lightning_cyclic.shapes.Schedule` is one dataclass field made by :func:`arg`: its
default, an :class:`Arg` (the kind of value, its range, and its unit) and one line of documentation. The schedule's
``ARGS`` table is read off those fields, in their order:

    lr      an lr: scaled by the app's ``lr_scaling``, and where ``auto`` is set, "auto" takes a part of the
            LR range test's suggestion
    length  a length or a position in the run: in the callbacks' ``interval`` units (steps or epochs), which
            the callbacks convert to optimizer steps in one place
    plain   anything else (factors, choices, momentum pairs)

The schedule checks its arguments against the table when it is built, and the callbacks check theirs against
the same table when they are made (an "auto" argument is skipped until the range test has run); the callbacks'
length conversion, their "auto" arguments and the app's lr scaling are read off it, and the shipped callbacks'
signatures and docstrings are generated from the fields (``python -m lightning_cyclic.callbacks.generate``).
Checks that relate two arguments (``min_lr <= max_lr``) are the schedule's ``check_relations``. A schedule of
one's own may also set ``ARGS`` by hand, a dict of :class:`Arg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any

from lightning_cyclic.shapes._checks import _is_number, check_choice, check_moms, check_number

UNITS = ("lr", "length", "plain")
KINDS = ("number", "integer", "choice", "moms", "callable", "positions")
# other spellings a choice still takes (one word per concept is shown and stored: the value on the right)
ALIASES = {"cos": "cosine"}


@dataclass(frozen=True)
class Arg:
    """One argument of a schedule (see the module's description)."""

    unit: str = "plain"
    kind: str = "number"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False  # None is allowed (and means what the schedule documents)
    auto: str | None = None  # "auto" takes this part of the range test's suggestion: "lr", "low" or "high"

    def __post_init__(self) -> None:
        check_choice("unit", self.unit, UNITS)
        check_choice("kind", self.kind, KINDS)
        if self.auto is not None:
            check_choice("auto", self.auto, ("lr", "low", "high"))

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it is allowed (a momentum pair or positions normalised to a tuple); else ``ValueError``
        naming the argument, the value and what is allowed."""
        if value is None and self.optional:
            return None
        if self.kind in ("number", "integer"):
            bounds = dict(low_open=self.low_open, high_open=self.high_open, integer=self.kind == "integer")
            check_number(name, value, self.low, self.high, **bounds)
            return value
        if self.kind == "choice":
            if isinstance(value, str) and ALIASES.get(value) in self.choices:
                return ALIASES[value]
            check_choice(name, value, self.choices)
            return value
        if self.kind == "moms":
            return check_moms(name, value)
        if self.kind == "callable":
            if not callable(value):
                raise ValueError(f"{name} must be a callable, got {value!r}")
            return value
        return self._positions(name, value)

    def _positions(self, name: str, value: Any) -> tuple[float, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a list of increasing positions, got {value!r}")
        for v in value:
            check_number(name, v, self.low, self.high, low_open=self.low_open, high_open=self.high_open)
        if list(value) != sorted(value):
            raise ValueError(f"{name} must be increasing, got {list(value)!r}")
        return tuple(value)


def arg(
    default: Any = MISSING,
    *,
    doc: str,
    unit: str = "plain",
    kind: str = "number",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] = (),
    optional: bool = False,
    auto: str | None = None,
) -> Any:
    """One argument of a schedule, as its dataclass field: the default (none: required), what it may be (the
    keywords of :class:`Arg`) and ``doc``, the line that documents it wherever the argument appears."""
    check = Arg(unit, kind, low, high, low_open, high_open, choices, optional, auto)
    return field(default=default, metadata={"arg": check, "doc": doc})


def inverse_moms() -> Any:
    """The ``moms`` argument of a schedule whose momentum, where given, moves inversely to its lr (off by default)."""
    return arg(
        None,
        kind="moms",
        optional=True,
        doc="``(high, low)`` momentum, moving inversely to lr; ``None`` (default) leaves it alone.",
    )


def check_order(values: dict[str, Any], low: str, high: str, strict: bool = False, about_high: bool = False) -> None:
    """``values[low] <= values[high]`` (``<`` where ``strict``), where both are numbers; else a ``ValueError``
    naming both, said of ``low`` (or of ``high``, ``about_high``: the argument a user sets against the other)."""
    if not numbers(values, low, high) or values[low] < values[high] or (values[low] == values[high] and not strict):
        return
    first, relation, second = (high, ">", low) if about_high else (low, "<", high)
    relation += "" if strict else "="
    raise ValueError(
        f"{first} must be {relation} {second}, got {first}={values[first]!r} and {second}={values[second]!r}"
    )


def numbers(values: dict[str, Any], *names: str) -> bool:
    """Whether every one of ``names`` holds a number (not "auto", not None, not skipped): a relation between
    them can be checked."""
    return all(_is_number(values.get(name)) for name in names)
