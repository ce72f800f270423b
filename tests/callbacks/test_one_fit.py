"""A callback's state belongs to one fit: one instance reused over the folds of a k-fold loop gives each fold
what a new instance would; a fit resumed from a checkpoint takes the checkpoint's state instead."""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_cyclic import (
    BestSnapshot,
    CustomSchedule,
    Cyclical,
    FineTune,
    Guard,
    InitialLossCheck,
    LRFinder,
    OneCycle,
    PlateauDecay,
    ScheduleFree,
    Sequential,
    SnapshotEnsemble,
    WarmRestarts,
    WarmupDecay,
    WarmupStableDecay,
)
from lightning_cyclic.callbacks.best import cpu_state
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

# two folds: other data (of another length) and other scores; the second fold never scores as well as the first
FOLDS = [
    dict(seed=0, n=48, scores=[1.0, 2.0, 3.0]),
    dict(seed=1, n=64, scores=[5.0, 4.0, 6.0]),
]


class Fold(TinyModule):
    """TinyModule that logs ``score = scores[epoch]`` at each validation; its optimizer takes the trainable
    parameters only (as FineTune asks); ``optimizer="schedule_free"`` gives it an SGDScheduleFree."""

    def __init__(self, scores, optimizer="sgd"):
        super().__init__(optimizer=optimizer)
        self.scores = scores

    def validation_step(self, batch, batch_idx):
        self.log("score", self.scores[min(self.current_epoch, len(self.scores) - 1)])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_kind == "schedule_free":
            import schedulefree

            return schedulefree.SGDScheduleFree(params, lr=self.lr, momentum=0.9)
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9)


def fit_fold(tmp_path, fold, callbacks, optimizer="sgd", ckpt_path=None, **kwargs):
    pl.seed_everything(fold["seed"])
    module = Fold(fold["scores"], optimizer)
    trainer = tiny_trainer(tmp_path, callbacks, num_sanity_val_steps=0, **{"max_epochs": 3, **kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(
            module,
            tiny_loader(n=fold["n"], seed=fold["seed"], learnable=True),
            tiny_loader(n=16, seed=9),
            ckpt_path=ckpt_path,
        )
    return module


def plain(value):
    """A value as plain data to compare: dataclasses as dicts, without the range test's wall time."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


PER_FIT = (
    "best_score",
    "best_epoch",
    "best_step",
    "stopped_epoch",
    "stop_reason",
    "snapshot",
    "cuts",
    "snapshots",
    "metrics",
    "resolved",
    "result",
    "results",
    "lrs",
    "unfrozen",
    "initial_loss",
    "lr_scale",
    "events",
)


def what_it_holds(callback):
    held = {name: plain(getattr(callback, name)) for name in PER_FIT if hasattr(callback, name)}
    return {**held, "state_dict": plain(callback.state_dict())}


def finder():
    return LRFinder(num_steps=20, verbose=False)


CASES = {
    "best_snapshot": lambda: [BestSnapshot("score", verbose=False)],
    "plateau_decay": lambda: [PlateauDecay("score", patience=0, factor=0.5, verbose=False)],
    "snapshot_ensemble": lambda: [WarmRestarts(max_lr=0.1, cycle_len=1), SnapshotEnsemble(max_snapshots=2)],
    "onecycle": lambda: [OneCycle(max_lr=0.3)],
    "onecycle_auto": lambda: [OneCycle(max_lr="auto"), finder()],
    "onecycle_auto_own_finder": lambda: [OneCycle(max_lr="auto", finder=finder())],
    "cyclical": lambda: [Cyclical(base_lr=0.01, max_lr=0.3, step_size_up=1, interval="epoch")],
    "warm_restarts_auto": lambda: [WarmRestarts(max_lr="auto", cycle_len=1), finder()],
    "warmup_decay": lambda: [WarmupDecay(max_lr=0.3, warmup=1, interval="epoch")],
    "warmup_stable_decay": lambda: [WarmupStableDecay(max_lr=0.3, warmup=1, interval="epoch")],
    "sequential": lambda: [
        Sequential([WarmupDecay(max_lr=0.01, decay="constant"), OneCycle(max_lr=0.1)], boundaries=[1], interval="epoch")
    ],
    "custom": lambda: [CustomSchedule(OneCycleSchedule, max_lr=0.3)],
    "finetune": lambda: [FineTune(backbone="layer", max_lr=0.1, unfrozen_max_lr=0.05)],
    "finetune_auto": lambda: [FineTune(backbone="layer", finder=finder())],
    "lr_finder": lambda: [finder()],
    "initial_loss_check": lambda: [InitialLossCheck(num_classes=3)],
    "guard": lambda: [Guard(verbose=False)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_second_fold_of_a_reused_instance_is_a_fit_with_a_new_one(tmp_path, case):
    reused = CASES[case]()
    fit_fold(tmp_path / "a", FOLDS[0], reused)
    second = fit_fold(tmp_path / "b", FOLDS[1], reused)
    new = CASES[case]()
    alone = fit_fold(tmp_path / "c", FOLDS[1], new)

    assert second.seen == alone.seen  # every step's lr, momentum and group lrs
    a, b = cpu_state(second), cpu_state(alone)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for used, fresh in zip(reused, new):
        assert what_it_holds(used) == what_it_holds(fresh), type(used).__name__


def test_schedule_free_and_best_snapshot_over_two_folds(tmp_path):
    pytest.importorskip("schedulefree")
    reused = [ScheduleFree(), BestSnapshot("score", verbose=False)]
    fit_fold(tmp_path / "a", FOLDS[0], reused, optimizer="schedule_free")
    second = fit_fold(tmp_path / "b", FOLDS[1], reused, optimizer="schedule_free")
    new = [ScheduleFree(), BestSnapshot("score", verbose=False)]
    alone = fit_fold(tmp_path / "c", FOLDS[1], new, optimizer="schedule_free")
    a, b = cpu_state(second), cpu_state(alone)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert what_it_holds(reused[1]) == what_it_holds(new[1])
    assert (reused[1].best_epoch, reused[1].best_score) == (1, 4.0)


def test_a_reused_best_snapshot_restores_its_own_fold_and_a_resume_restores_the_checkpoints_best(tmp_path):
    best = BestSnapshot("score", verbose=False)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    fit_fold(tmp_path / "a", FOLDS[0], [best, saver], enable_checkpointing=True)
    assert (best.best_epoch, best.best_score) == (0, 1.0)
    fold_a_best = best.snapshot

    second = fit_fold(tmp_path / "b", FOLDS[1], [best])
    assert (best.best_epoch, best.best_score) == (1, 4.0)
    assert all(torch.equal(v, best.snapshot[k]) for k, v in cpu_state(second).items())

    # the same instance again, resumed from fold A's checkpoint of epoch 1: fold A's best comes back
    resumed = fit_fold(tmp_path / "c", FOLDS[0], [best], ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    assert (best.best_epoch, best.best_score) == (0, 1.0)
    assert all(torch.equal(v, fold_a_best[k]) for k, v in cpu_state(resumed).items())


def test_auto_runs_the_range_test_again_in_a_new_fit_and_says_so(tmp_path, caplog):
    cycle, lrs = OneCycle(max_lr="auto", finder=finder()), LrsOf()
    fit_fold(tmp_path / "a", FOLDS[0], [cycle])
    first = cycle.resolved["max_lr"]
    with caplog.at_level(logging.INFO):
        fit_fold(tmp_path / "b", FOLDS[1], [cycle, lrs])
    said = [r.getMessage() for r in caplog.records if "a new fit" in r.getMessage()]
    assert said == [
        f"OneCycle: a new fit: the LR range test runs again (the last fit's max_lr={first:.4g} is not reused)"
    ]
    alone = OneCycle(max_lr="auto", finder=finder())
    fit_fold(tmp_path / "c", FOLDS[1], [alone])
    assert cycle.resolved == alone.resolved and cycle.resolved["max_lr"] != first
    assert max(lrs.seen) == pytest.approx(alone.resolved["max_lr"], rel=0.01)


def test_a_resumed_fit_keeps_the_lr_found_before_and_runs_no_test(tmp_path, caplog):
    cycle = OneCycle(max_lr="auto", finder=finder())
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    fit_fold(tmp_path / "a", FOLDS[0], [cycle, saver], enable_checkpointing=True)
    found = dict(cycle.resolved)
    fit_fold(tmp_path / "b", FOLDS[1], [cycle])  # another fit in between: it finds its own
    assert cycle.resolved != found
    caplog.clear()
    with caplog.at_level(logging.INFO):
        fit_fold(tmp_path / "c", FOLDS[0], [cycle], ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt"))
    assert cycle.resolved == found
    assert cycle.finder.result is None  # no range test ran in the resumed fit
    assert not [r for r in caplog.records if "a new fit" in r.getMessage() or r.getMessage().startswith("LRFinder")]


class LrsOf(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append(float(optimizer.param_groups[0]["lr"]))
