"""Lightning callbacks: schedules, the LR range test, the guard, best-snapshot restore, snapshot ensembles, and
Optuna pruning."""

from lightning_cyclic.callbacks.best import BestSnapshot
from lightning_cyclic.callbacks.composed import CustomSchedule, Sequential
from lightning_cyclic.callbacks.cycles import Cyclical, OneCycle, WarmRestarts
from lightning_cyclic.callbacks.decays import WarmupDecay, WarmupStableDecay
from lightning_cyclic.callbacks.ensemble import Ensemble, SnapshotEnsemble
from lightning_cyclic.callbacks.finetune import FineTune
from lightning_cyclic.callbacks.guard import Guard
from lightning_cyclic.callbacks.lr_finder import LRFinder, lr_find
from lightning_cyclic.callbacks.plateau import PlateauDecay
from lightning_cyclic.callbacks.preemption import Preemption
from lightning_cyclic.callbacks.pruning import OptunaPruning
from lightning_cyclic.callbacks.rng import RngState
from lightning_cyclic.callbacks.sanity import InitialLossCheck
from lightning_cyclic.callbacks.schedule import ScheduleCallback
from lightning_cyclic.callbacks.schedule_free import ScheduleFree

__all__ = [
    "BestSnapshot",
    "CustomSchedule",
    "Cyclical",
    "Ensemble",
    "FineTune",
    "Guard",
    "InitialLossCheck",
    "LRFinder",
    "OneCycle",
    "OptunaPruning",
    "PlateauDecay",
    "Preemption",
    "RngState",
    "ScheduleCallback",
    "ScheduleFree",
    "Sequential",
    "SnapshotEnsemble",
    "WarmRestarts",
    "WarmupDecay",
    "WarmupStableDecay",
    "lr_find",
]
