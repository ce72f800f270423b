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

from lightning_cyclic.callbacks import ScheduleCallback

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
    callbacks: list[pl.Callback] = []
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
    metrics = _float_metrics(trainer)
    if trainer.is_global_zero:
        acc = metrics.get("val/acc")
        summary = f"val/acc = {acc:.4f}" if acc is not None else "no validation metric"
        if schedule is not None and schedule.resolved:
            found = ", ".join(f"{k}={v:.4g}" for k, v in schedule.resolved.items())
            summary += f" with {found} from the LR range test ({cfg.paths.output_dir}/lr_find.png)"
        print(f"[lightning_cyclic] {summary} after {trainer.global_step} optimizer steps; logs in {logger.log_dir}")
    return metrics, {"trainer": trainer, "model": model, "datamodule": datamodule, "schedule": schedule}
