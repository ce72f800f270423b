"""``train(cfg) -> (metrics, objects)``: the application as a plain function.

``train.py`` only wraps it in ``@hydra.main``; tests compose a config and call it.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig

from lightning_cyclic.callbacks import BestSnapshot, ScheduleCallback, SnapshotEnsemble

log = logging.getLogger(__name__)


def _float_metrics(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Build data, model, optimizer, schedule and trainer from ``cfg``; fit; return the metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(
        cfg.model,
        optimizer=instantiate(cfg.optimizer),
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
    )
    callbacks: list[pl.Callback] = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    schedule = instantiate(cfg.schedule) if cfg.get("schedule") else None
    if schedule is not None:
        if not isinstance(schedule, ScheduleCallback):
            raise TypeError(
                f"schedule must build a lightning_cyclic schedule callback, got {type(schedule).__name__} "
                f"from _target_={cfg.schedule.get('_target_')!r}"
            )
        callbacks.append(schedule)
        if schedule.auto and cfg.get("lr_finder"):
            schedule.finder = instantiate(cfg.lr_finder)
            callbacks.append(schedule.finder)
    logger = CSVLogger(save_dir=cfg.paths.output_dir, name="csv")
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = next((c for c in callbacks if isinstance(c, BestSnapshot)), None)
    if best is not None and best.restored:  # measure the weights the model now holds
        trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = _float_metrics(trainer)
    ensemble = next((c for c in callbacks if isinstance(c, SnapshotEnsemble)), None)
    if ensemble is not None and ensemble.metrics:
        metrics["ensemble/val_acc"] = ensemble.metrics["val_acc"]
    if trainer.is_global_zero:
        print(_summary(cfg, trainer, metrics, schedule, best, ensemble, logger.log_dir))
    objects = {"trainer": trainer, "model": model, "datamodule": datamodule, "schedule": schedule}
    return metrics, {**objects, "best": best, "ensemble": ensemble}


def _summary(cfg, trainer, metrics, schedule, best, ensemble, log_dir) -> str:
    acc = metrics.get("val/acc")
    summary = f"val/acc = {acc:.4f}" if acc is not None else "no validation metric"
    if best is not None and best.restored:
        summary += f" (best weights restored: epoch {best.best_epoch}, {best.monitor}={best.best_score:.4f})"
    if ensemble is not None and ensemble.metrics:
        summary += f"; snapshot ensemble of {len(ensemble.snapshots)}: val/acc = {ensemble.metrics['val_acc']:.4f}"
    if schedule is not None and schedule.resolved:
        found = ", ".join(f"{k}={v:.4g}" for k, v in schedule.resolved.items())
        summary += f"; {found} from the LR range test ({cfg.paths.output_dir}/lr_find.png)"
    return f"[lightning_cyclic] {summary}; {trainer.global_step} optimizer steps; logs in {log_dir}"
