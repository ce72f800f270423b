"""Where a schedule callback's values go: the optimizers it drives, their param groups' ratios, and a table of
the schedule's values read one step at a time."""

from __future__ import annotations

from typing import Any

from lightning_cyclic.optim import ParamGroupWriter, lr_ratios
from lightning_cyclic.shapes import Schedule

AHEAD = 256  # schedule values computed at once, for this many steps from the current one


def optimizer_indices(optimizer: Any) -> tuple[int, ...] | None:
    """A schedule callback's ``optimizer=`` as a tuple of indices, or ``None`` for every optimizer."""
    if optimizer is None:
        return None
    values = (
        [optimizer] if isinstance(optimizer, int) else list(optimizer) if isinstance(optimizer, (list, tuple)) else None
    )
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(
            f"optimizer must be None (every optimizer), an index into trainer.optimizers or a list of them, "
            f"got {optimizer!r}"
        )
    return tuple(values)


class ScheduleWriter:
    """One fit's schedule, written into its optimizers: :meth:`write` is the one place the lr is set.

    A param group keeps the ratio its lr had, when the writer was made (or when the group appeared), to the group
    the schedule drives; ``ratios`` (per optimizer, per group) is the list the callback saves in checkpoints, kept
    current here.
    """

    def __init__(self, schedule: Schedule, optimizers: list[Any], ratios: list[list[float]] | None, owner: str):
        if ratios is None or [len(r) for r in ratios] != [len(o.param_groups) for o in optimizers]:
            # first start, or param groups added since the ratios were taken: the ratios the groups have now
            ratios = [lr_ratios([g["lr"] for g in opt.param_groups]) for opt in optimizers]
        self.schedule = schedule
        self.ratios = ratios
        self.writers = [ParamGroupWriter(opt, r, owner=owner) for opt, r in zip(optimizers, ratios)]
        self.written: float | None = None  # the position whose values are in the optimizers (None: write again)
        self._ahead: list[tuple[float, float | None]] = []  # schedule(k) for k = _ahead_from, _ahead_from + 1...
        self._ahead_from = 0

    def replace(self, schedule: Schedule) -> None:
        """Write ``schedule`` from now on (the run was re-planned): its values are computed and written afresh."""
        self.schedule, self._ahead, self.written = schedule, [], None

    def momentum_missing(self) -> list[str]:
        """A warning for each optimizer without a momentum to cycle, where the schedule cycles one (given once)."""
        if self.schedule.momentum(0) is None:
            return []
        return [text for writer in self.writers if (text := writer.momentum_missing()) is not None]

    def values(self, position: float) -> tuple[float, float | None]:
        """The schedule's ``(lr, momentum)`` at ``position``.

        Inside a fit, where every step runs through much of Lightning, a schedule's arithmetic run once per step
        costs several times what it costs in a loop: the values are computed ``AHEAD`` steps at a time, and each
        step reads one from a list. A fractional position (an epoch of another length) has no table.
        """
        if not isinstance(position, int):
            return self.schedule(position)
        i = position - self._ahead_from
        if not 0 <= i < len(self._ahead):
            self._ahead = [self.schedule(k) for k in range(position, position + AHEAD)]
            self._ahead_from, i = position, 0
        return self._ahead[i]

    def write(self, position: float, again: bool = False) -> tuple[float, float | None]:
        """Put the values at ``position`` into the optimizers, unless they are there already (written for this
        position, no param group added since, and not ``again``: something else may have set an lr); return
        them. It runs in three hooks per step, so the check is one comparison and one length per optimizer."""
        values = self.values(position)
        grown = False
        for writer in self.writers:
            if len(writer.optimizer.param_groups) != len(writer.ratios):
                grown = True
                break
        if again or grown or self.written != position:
            if grown:
                self._adopt_new_groups()
            lr, momentum = values
            for writer in self.writers:
                writer.write(lr, momentum)
            self.written = position
        return values

    def _adopt_new_groups(self) -> None:
        """Param groups added since the last write join the schedule at their current ratio to the lead group."""
        for index, writer in enumerate(self.writers):
            groups = writer.optimizer.param_groups
            if len(groups) == len(writer.ratios):
                continue
            lead = max(range(len(writer.ratios)), key=writer.ratios.__getitem__)
            lead_lr = float(groups[lead]["lr"]) / writer.ratios[lead] if writer.ratios[lead] > 0 else 0.0
            for group in groups[len(writer.ratios) :]:
                writer.ratios.append(float(group["lr"]) / lead_lr if lead_lr > 0 else 1.0)
            self.ratios[index] = list(writer.ratios)
