"""Closed-form schedules in plain Python (no torch): ``schedule(step) -> (lr, momentum)``."""

from lightning_cyclic.shapes.args import Arg
from lightning_cyclic.shapes.base import Schedule, anneal_cos, anneal_exp, anneal_linear, inverse_momentum
from lightning_cyclic.shapes.compose import LambdaSchedule, SequenceSchedule
from lightning_cyclic.shapes.cyclical import CyclicalSchedule
from lightning_cyclic.shapes.onecycle import OneCycleSchedule
from lightning_cyclic.shapes.rangetest import RangeTestSweep
from lightning_cyclic.shapes.restarts import WarmRestartsSchedule
from lightning_cyclic.shapes.warmup import WarmupDecaySchedule
from lightning_cyclic.shapes.wsd import WarmupStableDecaySchedule

__all__ = [
    "Arg",
    "CyclicalSchedule",
    "LambdaSchedule",
    "OneCycleSchedule",
    "RangeTestSweep",
    "Schedule",
    "SequenceSchedule",
    "WarmRestartsSchedule",
    "WarmupDecaySchedule",
    "WarmupStableDecaySchedule",
    "anneal_cos",
    "anneal_exp",
    "anneal_linear",
    "inverse_momentum",
]
