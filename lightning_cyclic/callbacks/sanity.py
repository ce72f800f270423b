"""``InitialLossCheck``: the first check of the recipe people are taught (cs231n).

With a softmax over ``C`` classes and small random weights the first loss
should be close to ``log(C)``. Far above it means a broken initialisation,
labels or final layer; far below, a leak of the labels or an easy task. The
check runs on the first training batch, warns once with the numbers, and
costs nothing after that.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic._compat import Callback
from lightning_cyclic.shapes._checks import check_number


class InitialLossCheck(Callback):
    """Warn when the first training loss is far from ``log(num_classes)``.

    Args:
        num_classes: defaults to the LightningModule's ``hparams.num_classes``.
        tolerance: allowed relative distance from ``log(num_classes)`` (0.5: within 50%).
    """

    def __init__(self, num_classes: int | None = None, tolerance: float = 0.5) -> None:
        if num_classes is not None:
            check_number("num_classes", num_classes, 2, integer=True)
        check_number("tolerance", tolerance, 0, low_open=True)
        self.num_classes, self.tolerance = num_classes, tolerance
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` checks its own first loss."""
        self.initial_loss: float | None = None
        self.expected: float | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._fresh()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.initial_loss is not None or trainer.global_step > 1:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        classes = self.num_classes or getattr(pl_module.hparams, "num_classes", None)
        if not isinstance(loss, torch.Tensor) or not classes:
            return
        self.initial_loss = float(loss.detach())
        self.expected = math.log(classes)
        gap = abs(self.initial_loss - self.expected) / self.expected
        if not math.isfinite(self.initial_loss) or gap > self.tolerance:
            rank_zero_warn(
                f"InitialLossCheck: the first training loss is {self.initial_loss:.4g}, but a softmax over "
                f"{classes} classes starts near log({classes}) = {self.expected:.4g} ({100 * gap:.0f}% off). "
                f"Check the initialisation (last layer's scale), the labels and the loss before tuning the lr."
            )
        else:
            rank_zero_info(
                f"InitialLossCheck: first loss {self.initial_loss:.4g} vs log({classes}) = {self.expected:.4g}: ok"
            )
