"""The LightningModule of the application: any network, cross-entropy, accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from lightning_cyclic.mixins import ScheduleMixin


class Classifier(ScheduleMixin, pl.LightningModule):
    """Trains ``net`` with cross-entropy and logs ``train/loss``, ``val/loss``, ``val/acc`` (and
    ``test/loss``, ``test/acc`` under ``trainer.test``).

    Training targets may be class indices or class probabilities (soft targets, as mixup makes).

    Args:
        net: an ``nn.Module``, or a callable (a Hydra ``_partial_``) taking
            ``input_shape`` and ``num_classes`` that builds one.
        optimizer: a callable taking the parameters (a Hydra ``_partial_``
            optimizer such as ``functools.partial(torch.optim.SGD, lr=0.1)``).
        input_shape: given by the data module.
        num_classes: given by the data module.
        lr_mult: discriminative learning rates: parameter-name prefixes and their lr
            multipliers, e.g. ``{"net.1": 0.1}`` puts the first linear layer of an MLP at a
            tenth of the lr (the longest matching prefix wins). Schedules keep these ratios.
        schedule: a schedule run inside ``configure_optimizers`` (see
            :class:`~lightning_cyclic.ScheduleMixin`); ``None`` when a schedule callback drives the lr.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        input_shape: Sequence[int],
        num_classes: int,
        lr_mult: dict[str, float] | None = None,
        schedule: Any = None,
    ) -> None:
        super().__init__()
        # plain containers (Hydra hands ListConfig/DictConfig), so checkpoints load with weights_only=True
        input_shape = [int(s) for s in input_shape]
        lr_mult = {str(k): float(v) for k, v in lr_mult.items()} if lr_mult else None
        self.save_hyperparameters(ignore=["net", "optimizer", "schedule"])
        self.net = net if isinstance(net, nn.Module) else net(input_shape=input_shape, num_classes=num_classes)
        self.optimizer_factory = optimizer
        self.lr_mult = lr_mult or {}
        self.schedule = schedule
        self.check_lr_mult()
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.test_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)  # y may be class indices, or class probabilities (mixup)
        self.train_acc(logits, y.argmax(-1) if y.is_floating_point() else y)
        # sync_dist: under DDP the logged loss is every rank's mean, not rank 0's share of the data (the
        # accuracies are torchmetrics states, summed over the ranks by compute())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("test/acc", self.test_acc)
