"""lightning_cyclic: learning-rate schedules, range tests and snapshots for PyTorch Lightning."""

from lightning_cyclic.callbacks import (
    BestSnapshot,
    Cyclical,
    Ensemble,
    InitialLossCheck,
    LRFinder,
    OneCycle,
    ScheduleCallback,
    SnapshotEnsemble,
    WarmRestarts,
    WarmupDecay,
    lr_find,
)
from lightning_cyclic.finder import RangeTestResult
from lightning_cyclic.mixins import ScheduleMixin
from lightning_cyclic.optim import ScheduleLR
from lightning_cyclic.plot import plot_schedule

__version__ = "0.1.0"

__all__ = [
    "BestSnapshot",
    "Cyclical",
    "Ensemble",
    "InitialLossCheck",
    "LRFinder",
    "OneCycle",
    "RangeTestResult",
    "ScheduleCallback",
    "ScheduleLR",
    "ScheduleMixin",
    "SnapshotEnsemble",
    "WarmRestarts",
    "WarmupDecay",
    "lr_find",
    "plot_schedule",
]
