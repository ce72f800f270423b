"""``ScheduleMixin``: ``configure_optimizers`` from an optimizer factory and a schedule.

For LightningModules that build their optimizer from a config (a Hydra
``_partial_``: a callable taking the parameters) and want the schedule inside
``configure_optimizers`` as a closed-form ``LRScheduler`` stepped every
optimizer step, instead of as a callback. Both paths give the same lr at
every step; the callback path also takes ``max_lr="auto"``.

    class Net(ScheduleMixin, pl.LightningModule):
        def __init__(self, optimizer, schedule=None, lr_mult=None):
            super().__init__()
            self.optimizer_factory, self.schedule, self.lr_mult = optimizer, schedule, lr_mult or {}

``schedule`` is a schedule callback (``OneCycle(max_lr=0.1)``: its lengths are
converted with the Trainer's run, like the callback would), a
:class:`~lightning_cyclic.shapes.Schedule` in optimizer steps, or ``None``.
``lr_mult`` maps parameter-name prefixes to lr multipliers (discriminative lrs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lightning_cyclic.callbacks.schedule import ScheduleCallback
from lightning_cyclic.optim import ScheduleLR
from lightning_cyclic.shapes import Schedule

if TYPE_CHECKING:  # its methods use the LightningModule's (parameters, trainer); at run time a plain mixin
    import lightning.pytorch as pl

    _Module = pl.LightningModule
else:
    _Module = object


class ScheduleMixin(_Module):
    """``configure_optimizers`` for a LightningModule with ``optimizer_factory``, ``schedule`` and ``lr_mult``.

    Put it before ``LightningModule`` in the bases: ``class Net(ScheduleMixin, pl.LightningModule)``.
    """

    optimizer_factory: Any
    schedule: ScheduleCallback | Schedule | None = None
    lr_mult: dict[str, float] = {}

    def check_lr_mult(self) -> None:
        """Every ``lr_mult`` prefix must name parameters, and every multiplier be positive."""
        names = [n for n, _ in self.named_parameters()]
        for prefix, mult in self.lr_mult.items():
            if not mult > 0:
                raise ValueError(f"lr_mult[{prefix!r}] must be > 0, got {mult!r}")
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                shown = ", ".join(sorted({n.rsplit(".", 1)[0] for n in names}))
                raise ValueError(f"lr_mult names {prefix!r}, which matches no parameter; the layers are: {shown}")

    def param_groups(self) -> list[dict[str, Any]] | Any:
        """The trainable parameters, grouped by ``lr_mult`` (one group per multiplier) when it is given. Frozen ones
        (``requires_grad=False``: a backbone ``FineTune`` or ``BackboneFinetuning`` adds later) are left out."""
        if not self.lr_mult:
            return [p for p in self.parameters() if p.requires_grad]
        probe = self.optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))])
        base_lr = probe.param_groups[0]["lr"]
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            matches = [p for p in self.lr_mult if name == p or name.startswith(p + ".")]
            mult = self.lr_mult[max(matches, key=len)] if matches else 1.0
            groups.setdefault(mult, []).append(param)
        return [{"params": params, "lr": base_lr * mult} for mult, params in sorted(groups.items())]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.param_groups())
        schedule = self.schedule
        if schedule is None:
            return optimizer
        if isinstance(schedule, ScheduleCallback):
            if schedule.auto:
                raise ValueError(
                    f"{type(schedule).__name__}(... 'auto') needs the LR range test, which runs after "
                    f"configure_optimizers: pass the schedule to the Trainer's callbacks instead"
                )
            schedule = schedule.build(**schedule.planned(self.trainer))  # the callback's own rule, one place
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"schedule must be a schedule callback, a lightning_cyclic.shapes.Schedule or None, "
                f"got {type(schedule).__name__}"
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": ScheduleLR(optimizer, schedule), "interval": "step"},
        }
