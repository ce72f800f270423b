"""``ScheduleFree``: schedule-free optimizers (Defazio et al. 2024) in a Lightning fit, evaluated and saved right.

A schedule-free optimizer (the ``schedulefree`` package: ``SGDScheduleFree``, ``AdamWScheduleFree``, ...) keeps
two points: the one it trains at and the average it should be evaluated at. It must be told which one the model
holds: ``optimizer.train()`` before training steps, ``optimizer.eval()`` before validation, before a checkpoint
is written and before the model is used after training. Lightning calls neither. This callback does:

- ``train()`` at the start of training and before every training batch that follows a validation;
- ``eval()`` at the start of every validation (so ``BestSnapshot`` keeps, and restores, the evaluated
  weights) and at the end of training (the model you get back holds the evaluated point);
- every checkpoint holds the evaluated point and the optimizer state in eval mode, whenever it is written
  (mid-epoch too): the model is put in eval mode for the copy and back, so a resume goes on exactly, and a
  checkpoint loaded for inference holds the right weights.

Schedule-free optimizers set their own lr (with their own ``warmup_steps``): the schedule callbacks refuse them
with a message saying so, and nothing here touches their ``betas`` or ``momentum``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lightning_cyclic._compat import Callback
from lightning_cyclic.optim import is_schedule_free


def _schedule_free(trainer: pl.Trainer) -> list[Any]:
    return [opt for opt in trainer.optimizers if is_schedule_free(opt)]


def _set_mode(optimizers: list[Any], train: bool) -> bool:
    """Put each optimizer in train or eval mode where it is not already; whether any changed."""
    changed = False
    for opt in optimizers:
        if bool(opt.param_groups[0].get("train_mode")) != train:
            opt.train() if train else opt.eval()
            changed = True
    return changed


class ScheduleFree(Callback):
    """Train and eval modes of schedule-free optimizers, switched where Lightning needs them (see the module)."""

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _set_mode(_schedule_free(trainer), train=True)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        _set_mode(_schedule_free(trainer), train=True)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _set_mode(_schedule_free(trainer), train=False)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before every on_fit_end: BestSnapshot puts the best (evaluated) weights back there, into a model that
        # must then already be in eval mode (switching after would move them)
        _set_mode(_schedule_free(trainer), train=False)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        optimizers = _schedule_free(trainer)
        if not optimizers or not _set_mode(optimizers, train=False):
            return  # none, or in eval mode already: the checkpoint holds the evaluated point
        try:  # the evaluated point and the eval-mode optimizer state, copied before the model goes back
            state = trainer.strategy.lightning_module_state_dict()
            checkpoint["state_dict"] = {k: v.detach().clone() for k, v in state.items()}
            if "optimizer_states" in checkpoint:
                checkpoint["optimizer_states"] = [trainer.strategy.optimizer_state(opt) for opt in trainer.optimizers]
        finally:
            _set_mode(optimizers, train=True)
