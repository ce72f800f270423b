"""``LRFinder``: the LR range test at the start of ``fit``, and ``lr_find`` to run it alone.

The callback stays thin: the test itself is :func:`lightning_cyclic.finder.run_range_test`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from typing_extensions import override

from lightning_cyclic.finder import RangeTestConfig, RangeTestResult, run_range_test


class LRFinder(Callback):
    """Leslie Smith's LR range test, run once at the start of ``fit``; the model, optimizer, RNGs,
    counters and other callbacks are left exactly as they were.

    Schedule callbacks given ``max_lr="auto"`` in the same ``fit`` take their value from it.

    Args:
        min_lr, max_lr: the sweep's ends.
        num_steps: optimizer steps in the sweep (each of ``accumulate_grad_batches`` micro-batches).
        mode: ``"exponential"`` (even in log lr) or ``"linear"``.
        smooth: beta of the debiased moving average of the loss, in [0, 1).
        diverge: stop once the smoothed loss exceeds ``diverge`` times its best and its start.
        suggestion: the rule that reads the curve: ``"edge"`` (default), ``"valley"``,
            ``"steepest"`` or ``"minimum"`` (see :mod:`lightning_cyclic.suggest`).
        evaluate: ``"val"``: after each step, the loss on ``val_batches`` fixed validation
            batches (through ``training_step`` in eval mode): a far steadier curve for about
            twice the cost; ``"train"``: the training loss of each step; ``"auto"`` (default):
            ``"val"`` when the fit has validation data, else ``"train"``.
        save_dir: write ``lr_find.json`` (curve and suggestion) and ``lr_find.png`` there;
            ``None`` writes no files.
        verbose: print the suggestion.

    After the test ``finder.result`` holds the curve and ``finder.result.suggestion``.
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        smooth: float = 0.9,
        diverge: float = 4.0,
        suggestion: str = "edge",
        evaluate: str = "auto",
        val_batches: int = 4,
        save_dir: str | Path | None = None,
        verbose: bool = True,
    ) -> None:
        self.config = RangeTestConfig(
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=num_steps,
            mode=mode,
            smooth=smooth,
            diverge=diverge,
            suggestion=suggestion,
            evaluate=evaluate,
            val_batches=val_batches,
        )
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.verbose = verbose
        self.result: RangeTestResult | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self.config.__dict__)

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> RangeTestResult:
        """Run the test unless this finder already has a result (from this fit or a checkpoint)."""
        if self.result is None:
            self.result = run_range_test(trainer, pl_module, self.config)
            self._report(trainer)
        return self.result

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run(trainer, pl_module)

    def _report(self, trainer: pl.Trainer) -> None:
        result = self.result
        s = result.suggestion
        if s.lr is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"lr_find/suggestion": s.lr}, step=trainer.global_step)
        if self.verbose:
            found = (
                f"suggests lr={s.lr:.3g} (good range {s.low:.3g}..{s.high:.3g})" if s else f"no suggestion: {s.reason}"
            )
            rank_zero_info(
                f"LRFinder: {len(result.lrs)} steps in {result.seconds:.1f}s, {result.stop_reason}; {s.rule} {found}"
            )
        if self.save_dir is not None:
            self._save()

    @rank_zero_only
    def _save(self) -> None:
        self.result.save_json(self.save_dir / "lr_find.json")
        try:
            self.result.plot(self.save_dir / "lr_find.png")
        except ImportError:
            pass  # matplotlib is optional; the JSON holds the curve

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result.to_dict() if self.result is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        data = state_dict.get("result")
        self.result = RangeTestResult.from_dict(data) if data else None


class _StopAfterFinder(Callback):
    """Ends a ``fit`` right after ``on_fit_start``: used by :func:`lr_find` to run the test alone."""

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def lr_find(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    **finder_kwargs: Any,
) -> RangeTestResult:
    """Run the LR range test alone, before ``trainer.fit``; returns the :class:`RangeTestResult`.

    It runs on a throw-away single-device Trainer with ``trainer``'s accelerator,
    precision, gradient accumulation and clipping, so ``trainer`` itself is not
    touched and can ``fit`` afterwards. ``finder_kwargs`` are :class:`LRFinder`'s.
    For DDP, add ``LRFinder()`` to the callbacks instead.
    """
    finder = LRFinder(**finder_kwargs)
    device = trainer.strategy.root_device
    previous = model._trainer
    helper = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else device.type,
        devices=[device.index or 0] if device.type == "cuda" else 1,
        precision=trainer.precision,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        gradient_clip_val=trainer.gradient_clip_val,
        gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[finder, _StopAfterFinder()],
    )
    try:
        helper.fit(model, train_dataloaders=train_dataloaders, val_dataloaders=val_dataloaders, datamodule=datamodule)
    finally:
        model._trainer = previous
    return finder.result
