"""Lightning callbacks: schedules applied at every optimizer step."""

from lightning_cyclic.callbacks.schedule import Cyclical, OneCycle, ScheduleCallback, WarmRestarts, WarmupDecay

__all__ = ["Cyclical", "OneCycle", "ScheduleCallback", "WarmRestarts", "WarmupDecay"]
