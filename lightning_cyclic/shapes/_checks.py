"""Argument checks shared by every schedule: one message format everywhere.

Each check names the argument, shows the value given and says what is allowed,
so a bad config fails with e.g. ``pct_start must be in (0, 1), got 1.5``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number in the given interval."""
    kind = "an integer" if integer else "a number"
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be {kind}{_interval_text(low, high, low_open, high_open)}, got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be{_interval_text(low, high, low_open, high_open)}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (a flag's ``True``/``False`` is not ``1``/``0``)."""
    choices = tuple(choices)
    if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_moms(name: str, value: Any) -> tuple[float, float] | None:
    """``moms=(high, low)``: two momentum values in [0, 1), or ``None`` to leave momentum alone."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (high, low) of momentum values in [0, 1) or None, got {value!r}")
    high, low = value
    for part, v in (("high", high), ("low", low)):
        if not _is_number(v) or not 0 <= v < 1:
            raise ValueError(
                f"{name} must be a pair (high, low) with each value in [0, 1), got {value!r} ({part}={v!r})"
            )
    return float(high), float(low)


def _interval_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""
