"""The LR range test engine: a short side-effect-free training run with a growing lr.

:func:`run_range_test` runs inside a ``fit`` (from a callback's ``on_fit_start``) and
trains as ``fit`` does, step by step through the same objects: the strategy's
``training_step`` and ``backward`` (DDP, FSDP and the precision context), the
module's ``optimizer_zero_grad``, ``optimizer_step`` and backward hooks, and the
precision plugin's optimizer step (its GradScaler, ``configure_gradient_clipping``,
``on_before_optimizer_step``). It steps the optimizer once per
``accumulate_grad_batches`` micro-batches (their mean loss is the point of the
curve), keeps the param groups' lr ratios, and reduces losses over ranks so every
rank sees one curve and one suggestion. A step the GradScaler skipped (overflowed
fp16 gradients) is not a point of the curve: that lr is tried again.

Nothing of this shows outside: no other callback sees its steps, no counter moves,
nothing is logged, and everything it changes (weights, optimizer, schedulers, RNGs,
the GradScaler, DataLoader generators) is put back from an in-memory
:class:`~lightning_cyclic.snapshot.Snapshot`. Under ``fast_dev_run`` it does not run.

A curve that reaches ``max_lr`` before the loss turns back up (the ``edge`` rule has nothing
to read) is extended: the sweep goes on from where it is, with the same spacing, up to
``extend`` times ``max_lr``. A curve that still has no reading gets a stated fallback for
``"auto"`` arguments (:func:`~lightning_cyclic.finder_result.fallback`); ``RangeTestResult.outcome`` says which
happened, and :meth:`~lightning_cyclic.finder_result.RangeTestResult.warning` is the one line that says so.

This module runs the test; its parts live beside it and their public names are importable from here:
:mod:`~lightning_cyclic.finder_result` (the config and the result), :mod:`~lightning_cyclic.finder_control`
(every decision of the sweep and the short trials, in plain Python), :mod:`~lightning_cyclic.finder_step` (one
optimizer step as ``fit`` takes it) and :mod:`~lightning_cyclic.finder_val` (the validation batches).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_cyclic import _compat
from lightning_cyclic.finder_control import (
    GUARDED_TRIAL_BIAS,
    SKIPPED_IN_A_ROW,
    TRIAL_BIAS,
    TRIAL_LADDER,
    TRIAL_MIN_STEPS,
    TRIAL_SHARE,
    SweepControl,
    choose_long,
    choose_trial,
    left_plateau,
    long_length,
    sweep_lowest,
    trial_length,
    trial_peaks,
    trials_above,
    trials_at_lowest,
    trials_below,
    trials_long,
)
from lightning_cyclic.finder_result import (
    EVALUATE,
    FAST_DEV_RUN,
    OUTCOMES,
    RangeTestConfig,
    RangeTestResult,
    fallback,
    skipped_result,
)
from lightning_cyclic.finder_step import Silenced, Stepper, StepWatch
from lightning_cyclic.finder_val import NotMergeable, ValBatches, has_val, merge_batches
from lightning_cyclic.shapes import OneCycleSchedule
from lightning_cyclic.snapshot import Snapshot, dataloaders, loader_generators, rng_states, set_rng_states
from lightning_cyclic.suggest import suggest

__all__ = [
    "EVALUATE",
    "FAST_DEV_RUN",
    "GUARDED_TRIAL_BIAS",
    "OUTCOMES",
    "SKIPPED_IN_A_ROW",
    "TRIAL_BIAS",
    "TRIAL_LADDER",
    "TRIAL_MIN_STEPS",
    "TRIAL_SHARE",
    "NotMergeable",
    "RangeTestConfig",
    "RangeTestResult",
    "StepWatch",
    "SweepControl",
    "fallback",
    "merge_batches",
    "run_range_test",
    "skipped_result",
    "trial_length",
]
_NotMergeable = NotMergeable  # also importable under this name


def run_range_test(trainer: pl.Trainer, pl_module: pl.LightningModule, config: RangeTestConfig) -> RangeTestResult:
    """Run the range test inside a ``fit`` whose strategy is set up (``on_fit_start`` or later).

    Under ``fast_dev_run`` nothing runs: the result has no curve and its suggestion says why.
    """
    if _compat.fast_dev_run(trainer):
        return skipped_result(config, FAST_DEV_RUN)
    if not pl_module.automatic_optimization:
        raise ValueError(
            "LRFinder needs automatic optimization (the LR range test steps the optimizer itself); "
            "this LightningModule sets automatic_optimization=False"
        )
    optimizers = trainer.optimizers
    if len(optimizers) != 1:
        raise ValueError(f"LRFinder works with one optimizer, got {len(optimizers)} from configure_optimizers")
    optimizer = optimizers[0]
    optimizer_lr = max(float(g["lr"]) for g in optimizer.param_groups)
    schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
    # Set up the dataloaders first, as fit would anyway; only the test is undone. Fit's order: validation
    # first, in the sanity check, whose RNG draws are undone (isolate_rng); then training, whose draws stay.
    # A fit with no sanity check (num_sanity_val_steps=0, a resume) sets its validation data up at its first
    # validation instead, where their draws move the training's random stream on: there the validation loop is
    # put back as it was after the test, so that the fit sets them up at that point, as it would have.
    val_before: dict[str, Any] | None = None
    if config.evaluate != "train" and _compat.has_val_source(trainer):
        if not _compat.runs_sanity_check(trainer):
            val_before = _compat.val_data_state(trainer)
        states = rng_states()
        _compat.setup_val_data(trainer)
        set_rng_states(states)
    _compat.setup_train_data(trainer)
    val_data = has_val(trainer) if config.evaluate != "train" else _compat.has_val_source(trainer)
    if config.evaluate == "auto":
        config = replace(config, evaluate="val" if has_val(trainer) else "train")
    loaders = dataloaders(trainer.train_dataloader, trainer.val_dataloaders)
    persistent = [loader for loader in loaders if getattr(loader, "persistent_workers", False)]
    snapshot = Snapshot(
        pl_module,
        [optimizer],
        schedulers,
        generators=loader_generators(loaders),
        stateful=[trainer.precision_plugin],  # the GradScaler's scale and growth tracker
    )
    callbacks = _compat.trainer_callbacks(trainer)
    # no schedule, logger or monitor sees the test's steps (the precision plugin calls them); the progress bar stays
    # (its hooks there do nothing): a Rich bar's refresh thread, live in the fit, asserts that the Trainer has one
    _compat.set_trainer_callbacks(trainer, _compat.progress_bars(callbacks))
    # fit's own persistent-worker iterators (set up for its next epoch) are set aside: the test starts its own
    kept = [(loader, _compat.swap_worker_iterator(loader, None)) for loader in persistent]
    start = time.perf_counter()
    trials: dict[str, Any] | None = None
    try:
        with Silenced(pl_module):
            val_batches = ValBatches.first(trainer, config.val_batches) if config.evaluate == "val" else None
            sweep = _sweep(trainer, pl_module, optimizer, config, val_batches)
            suggestion = suggest(sweep.lrs, sweep.losses, config.suggestion, config.smooth)
            if config.trials and config.suggestion == "edge" and suggestion.lr is not None:
                guarded = any(getattr(callback, "catches_bold_peaks", False) for callback in callbacks)
                lowest = sweep_lowest(sweep.lrs, sweep.losses, config.smooth)
                trials = _trials(
                    trainer, pl_module, optimizer, config, suggestion.lr, snapshot, val_batches, guarded, lowest
                )
    finally:
        _compat.set_trainer_callbacks(trainer, callbacks)
        for loader, iterator in kept:
            _compat.shutdown_workers(_compat.swap_worker_iterator(loader, iterator))
        snapshot.restore()
        if val_before is not None:
            _compat.set_val_data_state(trainer, val_before)
    seconds = time.perf_counter() - start
    extra: dict[str, Any] = {
        "world_size": trainer.world_size,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "skipped_steps": sweep.skipped,
        "optimizer_lr": optimizer_lr,
        "val_data": val_data,
    }
    if sweep.extended:
        extra["extended_to"] = sweep.lrs[-1]
    if trials is not None:
        extra["trials"] = trials
    result = RangeTestResult(
        lrs=sweep.lrs,
        losses=sweep.losses,
        config=config,
        suggestion=suggestion,
        stop_reason=sweep.stop_reason,
        seconds=seconds,
        optimizer_steps=len(sweep.lrs),
        extra=extra,
        fallback=None if suggestion else fallback(sweep.lrs, sweep.losses, config.smooth, optimizer_lr),
    )
    if trainer.world_size > 1:  # identical on every rank already; rank 0's copy makes it certain
        result = RangeTestResult.from_dict(trainer.strategy.broadcast(result.to_dict(), src=0))
    return result


def _sweep(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    config: RangeTestConfig,
    val_batches: ValBatches | None,
) -> SweepControl:
    """One optimizer step at each lr the :class:`~lightning_cyclic.finder_control.SweepControl` asks for, with its
    loss (the validation loss after it, where ``val_batches`` are given), until the control stops."""
    sweep = SweepControl(config)
    with Stepper(trainer, pl_module, optimizer) as stepper:
        while not sweep.stop_reason:
            loss, stepped = stepper.step(sweep.lr, None, sweep.k)
            if not sweep.counts(loss, stepped):
                sweep.skip()
            elif val_batches is not None and math.isfinite(loss):
                sweep.add(val_batches.loss(pl_module, stepper.training_loss, stepper.device))
            else:
                sweep.add(loss)
    return sweep


# --- the second signal: short trials around the edge ----------------------------------------------------------


def _trial(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    peak: float,
    steps: int,
    val_batches: ValBatches | None,
) -> float:
    """One-cycle compressed to ``steps`` at ``peak`` from the weights as they are; the validation loss after it
    (the training loss of its last quarter where there is no validation data); ``inf`` where it blew up."""
    shape = OneCycleSchedule(max_lr=peak, total_steps=steps)
    tail: list[float] = []
    with Stepper(trainer, pl_module, optimizer) as stepper:
        for k in range(steps):
            lr, momentum = shape(k)
            value, _ = stepper.step(lr, momentum, k)
            if not math.isfinite(value):
                return math.inf
            if k >= steps - max(1, steps // 4):
                tail.append(value)
        if val_batches is not None:
            value = val_batches.loss(pl_module, stepper.training_loss, stepper.device)
            return value if math.isfinite(value) else math.inf
    return sum(tail) / len(tail)


def _trials(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    config: RangeTestConfig,
    edge: float,
    snapshot: Snapshot,
    val_batches: ValBatches | None,
    guarded: bool,
    lowest: tuple[float, float] = (math.nan, math.nan),
) -> dict[str, Any]:
    """The short trials at each of :func:`~lightning_cyclic.finder_control.trial_peaks` of ``edge``, each from the
    state in ``snapshot``, and what they chose (:func:`~lightning_cyclic.finder_control.choose_trial`); where they
    :func:`~lightning_cyclic.finder_control.cannot_tell` the candidates apart, two more below them; where they learnt
    no more than the sweep's ``lowest`` (its smoothed loss and lr), two at that lr
    (:func:`~lightning_cyclic.finder_control.trials_at_lowest`); where none of them told and none learnt more than
    the sweep, two longer ones (:func:`~lightning_cyclic.finder_control.trials_long`)."""
    steps = trial_length(config, float(trainer.estimated_stepping_batches))
    if steps is None:
        return {"lr": None, "reason": "the fit's length is unknown (max_steps and max_epochs are -1)"}

    def run(ladder: tuple[float, ...]) -> list[float]:
        return [
            _trial_from(snapshot, trainer, pl_module, optimizer, p, steps, val_batches)
            for p in trial_peaks(edge, ladder)
        ]

    ladder: tuple[float, ...] = TRIAL_LADDER
    losses = run(ladder)
    read: float | None = None  # the sweep's lowest, where the trials at it ran
    if below := trials_below(losses):  # they cannot tell the candidates apart: two more below
        ladder, losses = (*below, *ladder), run(below) + losses
        if above := trials_above(losses, ladder):  # (off unless TRIAL_ABOVE is set) nor those: two more above
            ladder, losses = (*ladder, *above), losses + run(above)
    elif at := trials_at_lowest(losses, edge, *lowest):  # they learnt no more than the sweep: two at its lowest
        ladder, losses, read = (*at, *ladder), run(at) + losses, lowest[0]
    evaluated = "validation loss" if val_batches is not None else "training loss of the last quarter"
    chosen = choose_trial(trial_peaks(edge, ladder), losses, steps, evaluated, guarded, ladder, read)
    if longer := trials_long(chosen, lowest[0]):  # nothing told, and nothing left the sweep's plateau: longer ones
        peaks, n, ends = trial_peaks(edge, longer), long_length(steps), []
        for peak in peaks:  # (the most cautious first, until one leaves the plateau)
            ends.append(_trial_from(snapshot, trainer, pl_module, optimizer, peak, n, val_batches))
            if left_plateau(chosen, ends[-1]):
                break
        chosen = choose_long(chosen, peaks[: len(ends)], ends, n, lowest[0], longer[: len(ends)])
    return chosen


def _trial_from(snapshot: Snapshot, *args: Any) -> float:
    """:func:`_trial` from the state in ``snapshot``."""
    snapshot.restore()
    return _trial(*args)
