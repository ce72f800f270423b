"""Old names of keyword arguments, still accepted for a while, with a ``DeprecationWarning``."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**new_names: str) -> Callable[[F], F]:
    """Let a function take each keyword under its old name too (``old="new"``): a caller's code keeps working and
    is told the new name once per place (Python's default filter). Giving both names is a ``TypeError``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in new_names.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{fn.__qualname__}() got both {old}={kwargs[old]!r} and {new}={kwargs[new]!r}; "
                        f"{old} is the old name of {new}: give {new} only"
                    )
                warnings.warn(
                    f"{fn.__qualname__}({old}=...) is deprecated: the argument is now {new}=...",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
