"""lightning_cyclic: learning-rate schedules, range tests and snapshots for PyTorch Lightning.

The names below are imported on first use (PEP 562), so ``import lightning_cyclic.shapes`` (the closed-form
schedules, pure Python) loads neither torch nor Lightning; ``from lightning_cyclic import OneCycle`` loads
what the callbacks need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "BestSnapshot": "lightning_cyclic.callbacks",
    "CustomSchedule": "lightning_cyclic.callbacks",
    "Cyclical": "lightning_cyclic.callbacks",
    "Ensemble": "lightning_cyclic.callbacks",
    "FineTune": "lightning_cyclic.callbacks",
    "Guard": "lightning_cyclic.callbacks",
    "InitialLossCheck": "lightning_cyclic.callbacks",
    "LRFinder": "lightning_cyclic.callbacks",
    "OneCycle": "lightning_cyclic.callbacks",
    "OptunaPruning": "lightning_cyclic.callbacks",
    "PlateauDecay": "lightning_cyclic.callbacks",
    "Preemption": "lightning_cyclic.callbacks",
    "RngState": "lightning_cyclic.callbacks",
    "ScheduleCallback": "lightning_cyclic.callbacks",
    "ScheduleFree": "lightning_cyclic.callbacks",
    "Sequential": "lightning_cyclic.callbacks",
    "SnapshotEnsemble": "lightning_cyclic.callbacks",
    "WarmRestarts": "lightning_cyclic.callbacks",
    "WarmupDecay": "lightning_cyclic.callbacks",
    "WarmupStableDecay": "lightning_cyclic.callbacks",
    "lr_find": "lightning_cyclic.callbacks",
    "RangeTestResult": "lightning_cyclic.finder",
    "ScheduleMixin": "lightning_cyclic.mixins",
    "ScheduleLR": "lightning_cyclic.optim",
    "layer_decay_groups": "lightning_cyclic.optim",
    "plot_schedule": "lightning_cyclic.plot",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what static analysis and IDEs see; at run time __getattr__ imports them when first asked for
    from lightning_cyclic.callbacks import (  # noqa: F401
        BestSnapshot,
        CustomSchedule,
        Cyclical,
        Ensemble,
        FineTune,
        Guard,
        InitialLossCheck,
        LRFinder,
        OneCycle,
        OptunaPruning,
        PlateauDecay,
        Preemption,
        RngState,
        ScheduleCallback,
        ScheduleFree,
        Sequential,
        SnapshotEnsemble,
        WarmRestarts,
        WarmupDecay,
        WarmupStableDecay,
        lr_find,
    )
    from lightning_cyclic.finder import RangeTestResult  # noqa: F401
    from lightning_cyclic.mixins import ScheduleMixin  # noqa: F401
    from lightning_cyclic.optim import ScheduleLR, layer_decay_groups  # noqa: F401
    from lightning_cyclic.plot import plot_schedule  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_cyclic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
