"""Torch glue: read and write lr and momentum on any optimizer's param groups.

"Momentum" is whatever the optimizer calls it: ``momentum`` for SGD and
RMSprop, ``betas[0]`` for the Adam family (Adam, AdamW, NAdam, RAdam, Adamax,
...), whose ``betas[1]`` is kept as it is. Param groups keep their lr ratios:
a backbone group built at 0.1x the head's lr stays at 0.1x through a schedule.

``ScheduleLR`` runs any schedule from :mod:`lightning_cyclic.shapes` as a
``torch.optim.lr_scheduler.LRScheduler``, for plain PyTorch loops or a
LightningModule's ``configure_optimizers`` (``"interval": "step"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lightning_cyclic.shapes import Schedule


def momentum_key(group: dict[str, Any]) -> str | None:
    """The key a param group keeps its momentum under, or ``None`` if it has none to cycle.

    SGD and RMSprop built with ``momentum=0`` count as having none: turning
    momentum on would change the optimizer's algorithm behind the user's back.
    """
    if "betas" in group:
        return "betas"
    if "momentum" in group and group["momentum"] > 0:
        return "momentum"
    return None


def get_momentum(group: dict[str, Any]) -> float | None:
    key = momentum_key(group)
    if key is None:
        return None
    return float(group["betas"][0]) if key == "betas" else float(group["momentum"])


def set_momentum(group: dict[str, Any], value: float) -> bool:
    """Write ``value`` as the group's momentum; ``False`` if the group has none."""
    key = momentum_key(group)
    if key == "betas":
        group["betas"] = (value, *tuple(group["betas"])[1:])
    elif key == "momentum":
        group["momentum"] = value
    return key is not None


def _set_lr(group: dict[str, Any], value: float) -> None:
    if isinstance(group["lr"], torch.Tensor):  # capturable/fused optimizers keep lr as a tensor
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def lr_ratios(lrs: Sequence[float]) -> list[float]:
    """Each group's lr relative to the largest: the schedule's lr goes to the largest group."""
    lrs = [float(lr) for lr in lrs]
    top = max(lrs, default=0.0)
    if top <= 0:
        return [1.0] * len(lrs)
    return [lr / top for lr in lrs]


SCALING_RULES = ("linear", "sqrt")


def lr_scale_factor(batch_size: int, base_batch_size: int, rule: str) -> float:
    """How much to multiply an lr tuned at ``base_batch_size`` by, at ``batch_size``.

    ``"linear"`` (Goyal et al., 2017: lr proportional to the batch, for SGD) or
    ``"sqrt"`` (proportional to its square root, often better for Adam).
    ``batch_size`` is the effective one: per device x devices x nodes x accumulation.
    """
    from lightning_cyclic.shapes._checks import check_choice, check_number

    check_choice("rule", rule, SCALING_RULES)
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("base_batch_size", base_batch_size, 1, integer=True)
    ratio = batch_size / base_batch_size
    return ratio if rule == "linear" else ratio**0.5


def optimizer_name(optimizer: Optimizer) -> str:
    return type(optimizer).__name__


def momentum_warning(optimizer: Optimizer, owner: str) -> str:
    return (
        f"{owner}: {optimizer_name(optimizer)} has no momentum to cycle (no 'betas', and 'momentum' "
        f"absent or 0), so momentum is left alone and only the lr is scheduled. "
        f"Pass moms=None to silence this, or build the optimizer with momentum > 0."
    )


class ParamGroupWriter:
    """Writes a schedule's ``(lr, momentum)`` into an optimizer, keeping group ratios.

    It warns once, naming the optimizer, if momentum is to be cycled on an
    optimizer that has none.
    """

    def __init__(self, optimizer: Optimizer, ratios: Sequence[float] | None = None, owner: str = "schedule"):
        self.optimizer = optimizer
        self.ratios = list(ratios) if ratios is not None else lr_ratios([g["lr"] for g in optimizer.param_groups])
        if len(self.ratios) != len(optimizer.param_groups):
            raise ValueError(
                f"ratios must have one value per param group ({len(optimizer.param_groups)}), got {len(self.ratios)}"
            )
        self.owner = owner
        self._warned = False

    def write(self, lr: float, momentum: float | None) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self.ratios):
            _set_lr(group, lr * ratio)
            if momentum is not None and not set_momentum(group, momentum) and not self._warned:
                self._warned = True
                warnings.warn(momentum_warning(self.optimizer, self.owner), UserWarning, stacklevel=3)


class ScheduleLR(LRScheduler):
    """A closed-form ``LRScheduler`` that runs any :class:`~lightning_cyclic.shapes.Schedule`.

    The lr at ``last_epoch = k`` is ``schedule.lr(k)`` times each group's ratio
    to the largest group's initial lr; momentum is set too where the schedule
    cycles it. It keeps only ``last_epoch``, never raises past the planned end,
    and resumes exactly from its ``state_dict``.

    Example::

        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.1, total_steps=1000))
        for batch in loader:
            ...; opt.step(); sched.step()
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, last_epoch: int = -1):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a lightning_cyclic.shapes.Schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        initial = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self._writer = ParamGroupWriter(optimizer, lr_ratios(initial), owner=type(self).__name__)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr, momentum = self.schedule(self.last_epoch)
        if momentum is not None:
            self._writer.write(lr, momentum)  # momentum now; torch writes the lrs we return
        return [lr * r for r in self._writer.ratios]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    # The schedule is configuration, rebuilt by whoever builds this scheduler; the state is
    # plain numbers only, so checkpoints load with torch.load(weights_only=True).
    _not_state = ("_writer", "schedule")

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k not in self._not_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in self._not_state})
