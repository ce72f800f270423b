"""The fixed validation batches the range test reads its loss on (``evaluate="val"``)."""

from __future__ import annotations

import contextlib
from typing import Any

import lightning.pytorch as pl
import torch


def has_val(trainer: pl.Trainer) -> bool:
    """The fit has validation batches to read (a loader, and ``limit_val_batches`` not 0)."""
    loaders = trainer.val_dataloaders
    if loaders is None or trainer.limit_val_batches == 0:
        return False
    return not isinstance(loaders, (list, tuple)) or len(loaders) > 0


class NotMergeable(Exception):
    """Batches that differ in structure, or in their tensors' dtype, device or shape past the first dimension."""


def merge_batches(batches: list[Any]) -> Any:
    """The batches as one, concatenated along the first dimension, where every batch has the same structure
    (tensors, or plain tuples, lists, named tuples and dicts of them) and the tensors agree in everything but
    their first dimension; raises ``NotMergeable`` otherwise."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0 or not all(
            isinstance(b, torch.Tensor)
            and b.shape[1:] == first.shape[1:]
            and b.dtype == first.dtype
            and b.device == first.device
            for b in batches
        ):
            raise NotMergeable
        return torch.cat(batches)
    kind = type(first)
    if kind in (tuple, list) or (issubclass(kind, tuple) and hasattr(kind, "_fields")):
        if not all(type(b) is kind and len(b) == len(first) for b in batches):
            raise NotMergeable
        parts = [merge_batches([b[i] for b in batches]) for i in range(len(first))]
        return kind(*parts) if hasattr(kind, "_fields") else kind(parts)
    if kind is dict:
        if not all(type(b) is dict and b.keys() == first.keys() for b in batches):
            raise NotMergeable
        return {k: merge_batches([b[k] for b in batches]) for k in first}
    raise NotMergeable


class ValBatches:
    """The fixed validation batches of ``evaluate="val"``, moved to the device once (the module's transfer hooks
    run once per batch, not once per step), and read as one concatenated batch where they merge (one forward
    per step instead of ``val_batches``; the mean loss is the same for losses averaged over equal batches).
    Where the merged batch cannot be built, or its first evaluation raises (a model that expects its batch size,
    memory), they are read one by one from then on. One range test reads one set: its sweep and its short trials
    are compared on the same batches."""

    def __init__(self, batches: list[Any], strategy: Any):
        self.batches = [strategy.batch_to_device(b) for b in batches]
        self.merged: Any = None
        if len(self.batches) > 1:
            with contextlib.suppress(NotMergeable):
                self.merged = merge_batches(self.batches)
        self.strategy = strategy
        self.checked = False

    @classmethod
    def first(cls, trainer: pl.Trainer, count: int) -> ValBatches:
        """The first ``count`` batches of the fit's (first) validation loader."""
        loaders = trainer.val_dataloaders
        if loaders is None:
            raise ValueError("LRFinder(evaluate='val') needs a validation dataloader; this fit has none")
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == count:
                break
        return cls(batches, trainer.strategy)

    @torch.no_grad()
    def loss(self, pl_module: pl.LightningModule, training_loss: Any, device: Any) -> float:
        """The mean loss of the batches, through ``training_step`` in eval mode, over all ranks."""
        modes = [(m, m.training) for m in pl_module.modules()]
        pl_module.eval()
        try:
            total = None
            if self.merged is not None:
                try:
                    loss = training_loss(self.merged, 0, on_device=True)
                    total = torch.zeros((), device=device) if loss is None else loss.float()
                except Exception:
                    if self.checked:
                        raise
                    self.merged = None  # read them one by one from now on
                self.checked = True
            if total is None:
                total = torch.zeros((), device=device)
                for i, batch in enumerate(self.batches):
                    loss = training_loss(batch, i, on_device=True)
                    if loss is not None:
                        total += loss.float()
                total /= max(len(self.batches), 1)
        finally:
            for module, training in modes:  # as they were: a part frozen in eval mode stays so
                module.training = training
        return float(self.strategy.reduce(total, reduce_op="mean"))
