"""Weights kept apart from the model: a copy on the CPU, written to a file, compared with
``StochasticWeightAveraging``'s average, or a schedule-free optimizer's training point (what
:class:`~lightning_cyclic.BestSnapshot` and :class:`~lightning_cyclic.SnapshotEnsemble` keep, save and check)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_cyclic import _compat
from lightning_cyclic.optim import is_schedule_free


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module.state_dict()`` on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """``torch.save`` of ``state`` at ``path``, its folder made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def holds_swa_average(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Whether the model's parameters are ``StochasticWeightAveraging``'s average (it wrote it at
    ``on_train_end``: the run reached its last epoch)."""
    swa = _compat.swa_callback(trainer)
    if swa is None or swa.n_averaged is None or int(swa.n_averaged) == 0:
        return False
    average = _compat.swa_average(swa)
    if average is None:
        return False
    pairs = list(zip(average.parameters(), pl_module.parameters()))
    return bool(pairs) and all(torch.equal(a.detach().cpu(), p.detach().cpu()) for a, p in pairs)


def training_point_warning(trainer: pl.Trainer, name: str) -> str:
    """What ``name`` warns when the weights it evaluates are a schedule-free optimizer's training point (the
    optimizer in train mode), not its average; ``""`` when they are not."""
    if not any(is_schedule_free(o) and o.param_groups[0].get("train_mode") for o in trainer.optimizers):
        return ""
    return (
        f"{name}: a schedule-free optimizer is in train mode during validation, so the weights evaluated (and kept) "
        "are its training point, not its average. Add lightning_cyclic.ScheduleFree() to the callbacks: it puts the "
        "optimizer in eval mode for validation and checkpoints."
    )
