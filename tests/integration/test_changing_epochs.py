"""Epochs that change length: Lightning's ``reload_dataloaders_every_n_epochs=1`` with a ``train_dataloader`` of
another length each epoch. Schedules in epochs follow the real epoch boundaries; a schedule in steps planned
for the wrong length is re-planned at each epoch and says so once."""

from __future__ import annotations

import logging
import math

import pytest

from lightning_cyclic import OneCycle, SnapshotEnsemble, WarmRestarts
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

BATCHES = [3, 4, 6]  # per epoch, in epochs 0, 1 and 2


class Growing(TinyModule):
    """A LightningModule whose ``train_dataloader`` has ``BATCHES[epoch]`` batches of 8."""

    def train_dataloader(self):
        return tiny_loader(n=8 * BATCHES[min(self.current_epoch, len(BATCHES) - 1)], seed=self.current_epoch)


def fit(tmp_path, callback, *more, **kwargs):
    module = Growing()
    trainer = tiny_trainer(tmp_path, [callback, *more], max_epochs=3, reload_dataloaders_every_n_epochs=1, **kwargs)
    trainer.fit(module)
    return module


def by_epoch(module):
    lrs, k = [], 0
    for n in BATCHES:
        lrs.append([lr for _, lr, *_ in module.seen[k : k + n]])
        k += n
    assert k == len(module.seen)
    return lrs


def test_warm_restarts_in_epochs_restart_at_every_real_epoch_start(tmp_path):
    module = fit(tmp_path, WarmRestarts(max_lr=0.01, cycle_len=1, interval="epoch"))
    for n, lrs in zip(BATCHES, by_epoch(module)):
        # a cosine over each epoch's own steps: 0.01 at its first step, down towards 0 at its end
        assert lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * k / n)) / 2 for k in range(n)], rel=1e-9)


def test_snapshot_ensemble_keeps_the_weights_at_the_end_of_every_real_cycle(tmp_path):
    ensemble = SnapshotEnsemble(max_snapshots=5)
    module = fit(tmp_path, WarmRestarts(max_lr=0.01, cycle_len=1, interval="epoch"), ensemble)
    ends = [sum(BATCHES[: k + 1]) for k in range(len(BATCHES))]  # 3, 7, 13: the last step of each epoch
    lrs = [lr for _, lr, *_ in module.seen]
    assert [k for k in range(1, len(lrs)) if lrs[k] > lrs[k - 1]] == ends[:-1]  # where the lr restarts
    assert [s["step"] for s in ensemble.snapshots] == ends  # (was 3, 6, 9, 12: the first epoch's length)


def test_onecycle_is_replanned_for_the_real_run_and_says_so_once(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        module = fit(tmp_path, OneCycle(max_lr=0.1))
    lrs = [lr for _, lr, *_ in module.seen]
    assert len(lrs) == sum(BATCHES) == 13
    said = [r.getMessage() for r in caplog.records if "re-planned" in r.getMessage()]
    assert (
        len(said) == 1
        and said[0].startswith("OneCycle: epoch 1 has 4 optimizer steps")
        and "as 11 steps (was 9)" in said[0]
    )
    # the last epoch runs on the plan of the real run's 13 steps, down to its final value at its last step
    final = OneCycleSchedule(max_lr=0.1, total_steps=13)
    assert lrs[7:] == pytest.approx([final.lr(k) for k in range(7, 13)], rel=1e-9)
    assert len(set(lrs[9:])) == 4  # no longer stuck at the final value over the last 4 steps


def test_epochs_of_one_length_keep_the_steps_trajectory(tmp_path):
    """Reloading a dataloader of the same length every epoch changes nothing."""

    class Same(TinyModule):
        def train_dataloader(self):
            return tiny_loader(n=32)

    def run(path, reload):
        module = Same()
        trainer = tiny_trainer(
            path, [WarmRestarts(max_lr=0.1, cycle_len=1.5)], reload_dataloaders_every_n_epochs=reload
        )
        trainer.fit(module)
        return module.seen

    assert run(tmp_path / "a", 1) == run(tmp_path / "b", 0)
