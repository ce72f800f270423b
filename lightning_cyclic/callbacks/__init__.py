"""Lightning callbacks: schedules applied at every optimizer step, and the LR range test."""

from lightning_cyclic.callbacks.lr_finder import LRFinder, lr_find
from lightning_cyclic.callbacks.schedule import Cyclical, OneCycle, ScheduleCallback, WarmRestarts, WarmupDecay

__all__ = ["Cyclical", "LRFinder", "OneCycle", "ScheduleCallback", "WarmRestarts", "WarmupDecay", "lr_find"]
