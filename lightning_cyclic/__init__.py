"""lightning_cyclic: learning-rate schedules, range tests and snapshots for PyTorch Lightning."""

from lightning_cyclic.callbacks import Cyclical, OneCycle, ScheduleCallback, WarmRestarts, WarmupDecay
from lightning_cyclic.optim import ScheduleLR
from lightning_cyclic.plot import plot_schedule

__version__ = "0.1.0"

__all__ = [
    "Cyclical",
    "OneCycle",
    "ScheduleCallback",
    "ScheduleLR",
    "WarmRestarts",
    "WarmupDecay",
    "plot_schedule",
]
