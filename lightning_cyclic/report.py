"""The app's report of a run: the summary it prints at the end, and the training-curves picture.

The summary is one screen: what was reached, with what lr, on which device, and where the checkpoint, the logs
and the pictures are, as paths the user can paste.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning_cyclic._extras import needs

with needs("app", __name__):
    from omegaconf import DictConfig

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_cyclic import _compat
from lightning_cyclic.callbacks import (
    BestSnapshot,
    FineTune,
    Guard,
    PlateauDecay,
    ScheduleCallback,
    SnapshotEnsemble,
)
from lightning_cyclic.faults import last_checkpoint


def training_curves(trainer: pl.Trainer, cfg: DictConfig, schedule: Any) -> Path | None:
    """The training-curves PNG, from the CSV logger's metrics, next to the run; the lr drawn from the schedule
    itself (logging follows ``log_every_n_steps``, too sparse for a cyclical lr)."""
    csv = next((lg for lg in trainer.loggers if type(lg).__name__ == "CSVLogger"), None)
    if csv is None or csv.log_dir is None or not trainer.is_global_zero:
        return None
    metrics = Path(csv.log_dir) / "metrics.csv"
    if not metrics.exists():
        return None
    from lightning_cyclic.plot import plot_training_curves

    path = Path(cfg.paths.output_dir) / "training_curves.png"
    drawn = getattr(schedule, "schedule", None)  # PlateauDecay has none (it decides from the metrics): the log
    if isinstance(schedule, ScheduleCallback) and drawn is None and not schedule.auto:  # schedule_via=scheduler
        try:
            drawn = schedule.build(**schedule.planned(trainer))
        except ValueError:  # a run too short for it (fast_dev_run): the logged lr, if any
            drawn = None
    try:
        title = f"{cfg.data._target_.rsplit('.', 1)[-1]}, seed {cfg.seed}"
        fig = plot_training_curves(metrics, path, title=title, schedule=drawn)
        import matplotlib.pyplot as plt

        plt.close(fig)  # a sweep runs its jobs in one process: each run's figure goes with it
    except ImportError:
        return None
    return path


def _device(trainer: pl.Trainer) -> str:
    """``cpu``, ``cuda:0 (NVIDIA H100 80GB HBM3)``; with the process count under DDP and a precision other
    than 32-bit."""
    device = trainer.strategy.root_device
    text = str(device)
    if device.type == "cuda":
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    if trainer.world_size > 1:
        text += f", {trainer.world_size} processes ({type(trainer.strategy).__name__})"
    precision = str(trainer.precision)
    if precision not in ("32-true", "32"):
        text += f", precision {precision}"
    return text


def _shown(path: str | Path) -> str:
    """A path as the user can paste it: relative to the working folder when it is inside it."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def number(value: Any) -> str:
    """A config number as people write it: 4 significant digits (``0.1039``, not ``0.10387349801017592``)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _group_peaks(model: Any, mult: dict[str, float], peak: float) -> str:
    """``net.1: 0.01 (x0.1), the rest: 0.1``: each ``lr_mult`` prefix's lr where the schedule peaks. The schedule
    drives the group with the largest lr; the others keep their ratio to it."""
    names = [n for n, _ in model.named_parameters()]
    rest = any(not any(n == p or n.startswith(p + ".") for p in mult) for n in names)
    top = max([*mult.values(), 1.0] if rest else mult.values())
    parts = [f"{prefix}: {number(peak * m / top)} (x{m:g})" for prefix, m in mult.items()]
    if rest:
        parts.append(f"the rest: {number(peak / top)}")
    return ", ".join(parts)


def summary(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: Any,
    metrics: dict[str, float],
    schedule: ScheduleCallback | PlateauDecay | FineTune | None,
    best: BestSnapshot | None,
    ensemble: SnapshotEnsemble | None,
    curves: Path | None,
    factor: float | None,
    terminated: str = "",
    pruned: str = "",
) -> str:
    """One screen: what was reached, with what lr, and where everything is."""
    acc, train_acc = metrics.get("val/acc"), metrics.get("train/acc")
    head = f"val/acc = {acc:.4f}" if acc is not None else "no validation metric"
    head += f", train/acc = {train_acc:.4f}" if train_acc is not None else ""
    lines = ["", "[lightning_cyclic] " + ("TERMINATED: " if terminated else "") + head]
    if terminated:
        lines.append(f"  terminated: {terminated}")
    if pruned:
        lines.append(f"  {pruned}")
    if best is not None and best.restored:
        lines.append(f"  best weights restored: epoch {best.best_epoch}, {best.monitor} = {best.best_score:.4f}")
    if best is not None and best.stop_reason:
        lines.append(f"  stopped early: {best.stop_reason}")
    guard = next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, Guard)), None)
    if guard is not None and guard.events:
        steps = ", ".join(str(e["step"]) for e in guard.events)
        lines.append(
            f"  guard: {guard.rollbacks} rollback(s) (at step {steps}), lr scaled by {guard.lr_scale:.4g} since"
            + ("; it gave up and stopped the run" if guard.gave_up else "")
        )
    if ensemble is not None and ensemble.metrics:
        lines.append(f"  snapshot ensemble of {len(ensemble.snapshots)}: val/acc = {ensemble.metrics['val_acc']:.4f}")
    if schedule is not None:
        lines.append(f"  schedule: {schedule.describe(trainer)}")
        params = getattr(schedule, "params", {})
        peak = {**params, **(getattr(schedule, "resolved", None) or {})}.get("max_lr")
        mult = dict(getattr(model, "lr_mult", None) or {})
        if mult and isinstance(peak, (int, float)):
            lines.append(f"  lr per param group (model.lr_mult), at the peak: {_group_peaks(model, mult, peak)}")
    if factor is not None:
        lines.append(f"  lr scaling: {cfg.lr_scaling.rule}, lrs x {factor:.4g}")
    epochs = trainer.current_epoch
    lines.append(f"  {trainer.global_step} optimizer steps, {epochs} epoch{'' if epochs == 1 else 's'}")
    lines.append(f"  device: {_device(trainer)}")
    callbacks = _compat.trainer_callbacks(trainer)
    ckpt = last_checkpoint(trainer) or next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    saved = ckpt and (ckpt.last_model_path or ckpt.best_model_path)
    io = trainer.strategy.checkpoint_io
    refused = [reason for path, reason in getattr(io, "skipped", []) if path == saved]
    if saved and Path(saved).exists():
        note = f"; later saves were not written: {refused[-1]}" if refused else ""
        lines.append(f"  checkpoint: {_shown(saved)} (resume with ckpt_path=...{note})")
    elif refused:
        lines.append(f"  checkpoint: none written: {refused[-1]}")
    for lg in trainer.loggers:
        if lg.log_dir:
            lines.append(f"  logs ({type(lg).__name__}): {_shown(lg.log_dir)}")
    if curves is not None:
        lines.append(f"  training curves: {_shown(curves)}")
    found = schedule.resolved if isinstance(schedule, ScheduleCallback) else None
    if found and math.isfinite(found.get("max_lr", 0)):
        lines.append(f"  range test: {_shown(Path(cfg.paths.output_dir) / 'lr_find.png')}")
    return "\n".join(lines)
