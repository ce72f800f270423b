"""``LRFinder``: the LR range test at the start of ``fit``, and ``lr_find`` to run it alone.

The callback stays thin: the test itself is :func:`lightning_cyclic.finder.run_range_test`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.finder import FAST_DEV_RUN, RangeTestConfig, RangeTestResult, run_range_test, skipped_result
from lightning_cyclic.snapshot import dataloaders, loader_generators, rng_states, set_rng_states


class LRFinder(Callback):
    """Leslie Smith's LR range test, run once at the start of ``fit``; the model, optimizer, RNGs,
    counters and other callbacks are left exactly as they were.

    Its result belongs to one fit: the same instance in a second ``fit`` (a k-fold loop) tests the new model
    again; a fit resumed from a checkpoint takes the result the checkpoint holds, with no new test.

    Schedule callbacks given ``max_lr="auto"`` in the same ``fit`` take their value from it.

    Args:
        min_lr: the lr the sweep starts at.
        max_lr: the lr the sweep ends at (or goes past, see ``extend``).
        num_steps: optimizer steps in the sweep (each of ``accumulate_grad_batches`` micro-batches).
        mode: ``"exponential"`` (even in log lr) or ``"linear"``.
        smooth: beta of the debiased moving average of the loss, in [0, 1).
        diverge: stop once the smoothed loss exceeds ``diverge`` times its best and its start.
        suggestion: the rule that reads the curve: ``"edge"`` (default), ``"valley"``,
            ``"steepest"`` or ``"minimum"`` (see :mod:`lightning_cyclic.suggest`).
        evaluate: ``"val"``: after each step, the loss on ``val_batches`` fixed validation
            batches (through ``training_step`` in eval mode): a far steadier curve for one
            forward pass more per step; ``"train"``: the training loss of each step; ``"auto"``
            (default): ``"val"`` when the fit has validation data, else ``"train"``.
        val_batches: how many validation batches ``evaluate="val"`` reads at each step. They are
            moved to the device once and read as one batch, concatenated along the first
            dimension, where their structure allows (tensors in tuples, lists, named tuples,
            dicts); a model whose ``training_step`` refuses the merged batch gets them one by one.
        extend: where the sweep reaches ``max_lr`` before the loss turns back up (the ``edge``
            rule has no edge to read), it goes on, from the weights where they are and with the
            same spacing, up to ``extend * max_lr`` (at most ``num_steps`` more steps), until the
            loss has climbed back to its start or diverges; ``1`` never goes past ``max_lr``.
        trials: after an ``edge`` reading, run the second signal of ``"auto"``: short trials, each
            one-cycle compressed to ``trial_steps`` from the same starting state, at 1/4, 1/2, 1, 2
            and 4 times the reading; the candidate with the lowest validation loss after its trial
            (the training loss of its last quarter where there is no validation data), divided by
            sqrt(2) for the short horizon's bias towards bold lrs (taken as it is where a ``Guard``
            is in the fit: it rolls a too bold peak back), is what ``"auto"`` arguments
            take (``result.chosen``); the curve's reading stays in ``result.suggestion``. Where
            the five cannot tell the candidates apart (the lowest loss within 1% of their median,
            as where every trial of a deep plain net ends near chance), two more at 1/64 and 1/16
            of the reading, the lower of them taken where it beats the five's lowest by more than
            that 1% (a warning where neither does: nothing tested the peak). Where they tell them
            apart but none ends lower than the sweep's own lowest (smoothed) loss, and that
            lowest's lr is below them (a curve read far too bold, as a deep plain net's can be),
            two more at half of that lr and at it, taken as the two below are (by 1% of the five's
            lowest where most of the five blew up). Where none of the seven told and none ended
            lower than the sweep's lowest (a plateau at chance that a short trial does not leave),
            longer trials (4x the steps) at 1/64 of the reading, then, where that did not leave
            the plateau, at 4x it; one that ends more than 1% (of the seven's median) below the
            seven is taken. Where every trial blows up, a quarter of the lowest candidate. Undone
            as the test is; one line says what the trials chose and why (with ``verbose``; a
            warning either way where they all blew up or told nothing).
        trial_steps: optimizer steps of each trial; ``None`` (default): 3% of the fit's
            optimizer steps, at least 30.
        save_dir: write ``lr_find.json`` (curve and suggestion) and ``lr_find.png`` there;
            ``None`` writes no files.
        verbose: print the suggestion, its confidence and what the trials chose (the warnings of a low
            confidence or a fallback, of trials that all blew up or that told nothing come either way).

    After the test ``finder.result`` holds the curve and ``finder.result.suggestion``, with its
    ``confidence``. Where the rule read nothing (the loss never fell, was NaN from the start, or
    never turned back up even past ``max_lr``), ``result.fallback`` holds what ``"auto"``
    arguments take instead and ``result.outcome`` is ``"fallback"``; one warning says so. A
    suggestion of low confidence gets one warning too, with what steadies the curve. Under
    ``fast_dev_run`` the test does not run (as Lightning's Tuner): ``run`` returns a result with
    no curve whose ``suggestion.lr`` is ``None`` and whose ``suggestion.reason`` says so.
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
        extend: float = 100.0,
        trials: bool = True,
        trial_steps: int | None = None,
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
            extend=extend,
            trials=trials,
            trial_steps=trial_steps,
        )
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.verbose = verbose
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit: a new ``fit`` runs a new test (a resumed one takes the checkpoint's result)."""
        self.result: RangeTestResult | None = None
        self._skipped: RangeTestResult | None = None  # this fit's fast_dev_run stand-in, never saved

    @property
    def state_key(self) -> str:
        return self._fixed_state_key(self.config, self._state_key_args)  # (the config is frozen)

    def _state_key_args(self) -> dict[str, Any]:
        # arguments added later are left out at their defaults, so checkpoints saved before they existed still match
        later = {
            "extend": RangeTestConfig.extend,
            "trials": RangeTestConfig.trials,
            "trial_steps": RangeTestConfig.trial_steps,
        }
        return {k: v for k, v in self.config.__dict__.items() if k not in later or v != later[k]}

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> RangeTestResult:
        """Run the test unless this finder already has a result (from this fit or a checkpoint).

        Under ``fast_dev_run``: no test; one line says so, and the result has no suggestion.
        """
        if self.result is None and _compat.fast_dev_run(trainer):
            if self._skipped is None:
                self._skipped = skipped_result(self.config, FAST_DEV_RUN)
                rank_zero_warn(f"LRFinder: the LR range test does not run: {FAST_DEV_RUN}")
            return self._skipped
        if self.result is None:
            self.result = run_range_test(trainer, pl_module, self.config)
            self._report(trainer)
        return self.result

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a callback's state belongs to one fit: a checkpoint's is loaded after setup
            self._fresh()

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run(trainer, pl_module)

    def _report(self, trainer: pl.Trainer) -> None:
        result = self.result
        if result is None:
            return
        s, chosen = result.suggestion, result.chosen
        if chosen.lr is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"lr_find/suggestion": chosen.lr}, step=trainer.global_step)
        if self.verbose:
            if s:
                found = f"suggests lr={s.lr:.3g} (good range {s.low:.3g}..{s.high:.3g})"
                found += f", confidence {s.confidence.describe()}" if s.confidence is not None else ""
            else:
                found = f"no suggestion: {s.reason}"
                found += f"; fallback lr={chosen.lr:.3g} ({chosen.rule})" if chosen.lr is not None else ""
            rank_zero_info(
                f"LRFinder: {len(result.lrs)} steps in {result.seconds:.1f}s, {result.stop_reason}; {s.rule} {found}"
            )
        trials = result.extra.get("trials")
        if trials is not None:  # (its warnings whatever ``verbose`` says, as the result's own below)
            took = f"'auto' takes lr={chosen.lr:.3g}" if trials.get("lr") is not None else "the reading stands"
            line = f"LRFinder: short trials: {trials['reason']}; {took}"
            if trials.get("losses") and all(x is None for x in trials["losses"]):
                rank_zero_warn(line)  # the curve's reading would have blown up: worth a warning, not a note
            elif trials.get("told") is False and not (trials.get("long") or {}).get("taken"):  # the peak is untested
                rank_zero_warn(
                    f"{line}. No trial learnt more than the others within {trials['steps']} steps, so nothing "
                    "tested that peak: where the fit does not learn, give LRFinder(trial_steps=...) longer "
                    "trials or set max_lr"
                )
            elif self.verbose:
                rank_zero_info(line)
        warning = result.warning()
        if warning:
            rank_zero_warn(warning)
        if self.save_dir is not None:
            self._save(result, self.save_dir)

    @rank_zero_only
    def _save(self, result: RangeTestResult, save_dir: Path) -> None:
        result.save_json(save_dir / "lr_find.json")
        try:
            result.plot(save_dir / "lr_find.png")
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

    It runs on a throw-away single-device Trainer of ``trainer``'s class (``lightning.pytorch``
    or ``pytorch_lightning``) with its accelerator, precision, gradient accumulation and
    clipping, so ``trainer`` itself is not touched and can ``fit`` afterwards; the given
    dataloaders' generators, and the global RNGs its helper fit draws from (a ``train_dataloader``
    that builds its data with ``torch.randn``), are left as they were. ``finder_kwargs`` are :class:`LRFinder`'s;
    ``trials`` is off here unless given (give ``trial_steps`` with it: there is no fit to take a share of).
    For DDP, add ``LRFinder()`` to the callbacks instead. Under ``trainer.fast_dev_run`` it does
    not run and returns a result without a suggestion.
    """
    finder_kwargs.setdefault("trials", False)  # the trials' length is a share of a fit, which this is not
    finder = LRFinder(**finder_kwargs)
    if _compat.fast_dev_run(trainer):
        rank_zero_warn(f"lr_find: the LR range test does not run: {FAST_DEV_RUN}")
        return skipped_result(finder.config, FAST_DEV_RUN)
    device = trainer.strategy.root_device
    previous = _compat.attached_trainer(model)
    generators = [(g, g.get_state()) for g in loader_generators(dataloaders(train_dataloaders, val_dataloaders))]
    # the helper's fit asks the module (or datamodule) for its dataloaders, which may draw their data from the
    # global RNG (Lightning's BoringModel does): those draws are undone, so the fit that follows draws the same
    rng = rng_states()
    helper = type(trainer)(
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
        _compat.attach_trainer(model, previous)
        for generator, state in generators:
            generator.set_state(state)
        set_rng_states(rng)
    if finder.result is None:  # fit returned without reaching on_fit_start (another callback stopped it)
        raise RuntimeError("lr_find: the fit ended before the LR range test ran")
    return finder.result
