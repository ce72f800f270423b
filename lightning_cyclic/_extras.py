"""Optional dependencies: a module that needs an extra says which one, in one line.

The core (the callbacks, the range test, ``ScheduleLR``, the shapes) needs torch, Lightning and numpy only;
the app, the sweeps, the plots and some datasets come with extras (``pip install "lightning-cyclic[app]"``).
Their imports go through :func:`needs`::

    with needs("app", __name__):
        import hydra

so that, without the extra, the import fails with one line naming the extra to install:
``lightning_cyclic.run needs the [app] extra (no module named 'hydra'): pip install "lightning-cyclic[app]"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# extra -> what it adds (the README's table says the same)
EXTRAS = {
    "app": "the Hydra app (lightning-cyclic train, train.py): hydra-core, omegaconf, rich, and [data] and [plot]",
    "sweeps": "Optuna, joblib and submitit sweeps of the app: the Hydra sweeper and launcher plugins, and [app]",
    "plot": "pictures of schedules, range tests and training curves: matplotlib",
    "data": "the datasets that need a package: scikit-learn (digits), mnist1d",
    "tensorboard": "the TensorBoard logger",
}


_NEEDS = " needs the [{extra}] extra (no module named {missing!r}): "


def install_command(extra: str) -> str:
    return f'pip install "lightning-cyclic[{extra}]"'


def is_missing_extra(error: BaseException) -> bool:
    """Whether ``error`` is the one :func:`needs` raises: an extra to install, not some other missing module."""
    head, _, tail = str(error).partition(" needs the [")
    return isinstance(error, ModuleNotFoundError) and bool(head) and "] extra (no module named " in tail


@contextmanager
def needs(extra: str, user: str) -> Iterator[None]:
    """Imports inside this block that fail for want of a package raise ``ModuleNotFoundError`` naming ``extra``.

    ``user`` is what needs it (a module's ``__name__``, a class): it leads the message. A missing module of this
    package itself is not an extra's: that error passes unchanged, as does the error of an inner ``needs``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are: {', '.join(EXTRAS)}")
    try:
        yield
    except ModuleNotFoundError as err:
        missing = err.name or str(err)
        if is_missing_extra(err) or missing.partition(".")[0] == "lightning_cyclic":
            raise
        message = user + _NEEDS.format(extra=extra, missing=missing) + install_command(extra)
        raise ModuleNotFoundError(message, name=err.name) from None
