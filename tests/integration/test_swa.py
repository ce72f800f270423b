"""Schedules, PlateauDecay and BestSnapshot beside Lightning's own ``StochasticWeightAveraging``: the schedule
(and PlateauDecay) gives the lr over to SWA's ``SWALR`` from SWA's first epoch on, and a run that reaches SWA's
end keeps SWA's average."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging
from torch import nn

from lightning_cyclic import BestSnapshot, OneCycle, PlateauDecay
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer
from tests.integration.test_best_and_ensemble import Regressing, val_loader

EPOCHS, BATCHES = 5, 8  # tiny_loader(): 64 samples in batches of 8


class Scored(TinyModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))


class Normed(Scored):
    """With batch norm: SWA adds an epoch that recomputes its statistics for the average."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x):
        return super().forward(self.norm(x))


def swa_fit(tmp_path, module, *callbacks, swa_epoch_start=2, **kwargs):
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=swa_epoch_start, annealing_epochs=1)
    kwargs.setdefault("max_epochs", EPOCHS)
    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.1), swa, *callbacks], **kwargs)
    trainer.fit(module, tiny_loader(learnable=True), val_loader())
    return swa, trainer


@pytest.mark.parametrize("swa_epoch_start, first", [(2, 1), (0.6, 2)])  # 1-based, or a share of max_epochs
def test_the_schedule_gives_the_lr_over_to_swa_from_its_first_epoch(tmp_path, swa_epoch_start, first):
    module = Scored(lr=0.1)
    swa_fit(tmp_path, module, swa_epoch_start=swa_epoch_start)
    lrs = [lr for _, lr, _, _ in module.seen]
    assert len(lrs) == EPOCHS * BATCHES
    start = first * BATCHES  # SWA's first step
    schedule = OneCycleSchedule(max_lr=0.1, total_steps=EPOCHS * BATCHES)
    # before SWA: the one-cycle, step by step
    assert lrs[:start] == pytest.approx([schedule(k)[0] for k in range(start)], rel=1e-9)
    # SWA's first epoch: its SWALR anneals from the lr it found in the optimizer (the schedule's next value),
    # stepping once an epoch; after annealing_epochs=1, every step uses swa_lrs
    assert lrs[start : start + BATCHES] == pytest.approx([schedule(start)[0]] * BATCHES, rel=1e-9)
    assert lrs[start + BATCHES :] == [0.05] * (EPOCHS * BATCHES - start - BATCHES)


class Flat(Scored):
    """Its validation loss never improves: PlateauDecay(patience=0) cuts after every evaluation but the first."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0))


class EpochStarts(pl.Callback):
    """The weights at the start of each training epoch."""

    def __init__(self):
        self.weights: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.weights.append(torch.cat([p.detach().flatten().clone() for p in pl_module.parameters()]))


def test_plateau_decay_gives_the_lr_over_to_swa_and_cuts_nothing_in_its_epochs(tmp_path):
    module, starts = Flat(lr=0.1), EpochStarts()
    decay = PlateauDecay(monitor="val_loss", patience=0, factor=0.5, restore_best=True)
    swa = StochasticWeightAveraging(swa_lrs=0.07, swa_epoch_start=3, annealing_epochs=1)  # epochs 2.. (0-based)
    trainer = tiny_trainer(tmp_path, [decay, swa, starts], max_epochs=EPOCHS)
    trainer.fit(module, tiny_loader(learnable=True), val_loader())
    lrs = [lr for _, lr, _, _ in module.seen]
    epochs = [lrs[e * BATCHES : (e + 1) * BATCHES] for e in range(EPOCHS)]
    assert all(len(set(epoch)) == 1 for epoch in epochs)  # each epoch at one lr
    # one cut (after epoch 1) before SWA; SWALR's first epoch anneals from the lr it found, then swa_lrs: the cuts
    # PlateauDecay used to make in SWA's epochs (0.025, 0.0125, ...) overrode swa_lrs
    assert [epoch[0] for epoch in epochs] == pytest.approx([0.1, 0.1, 0.05, 0.07, 0.07], rel=1e-9)
    assert [cut[0] for cut in decay.cuts] == [1]
    # the best weights are epoch 0's (the loss never improves): put back at the cut before SWA, never in its epochs
    # (each cut there used to put them back into the model SWA was averaging)
    best = starts.weights[1]
    assert torch.equal(starts.weights[2], best)
    assert not torch.equal(starts.weights[3], best) and not torch.equal(starts.weights[4], best)


@pytest.mark.parametrize("module_cls", [Scored, Normed])
def test_best_snapshot_keeps_the_average_of_a_run_that_reached_the_end_of_swa(tmp_path, module_cls):
    module = module_cls(lr=0.1)
    best = BestSnapshot("val_loss", "min", verbose=False, save_path=tmp_path / "best.pt")
    swa, _ = swa_fit(tmp_path, module, best, num_sanity_val_steps=0)
    assert best.kept_swa_average and not best.restored
    average = dict(swa._average_model.named_parameters())
    for name, value in module.named_parameters():
        assert torch.equal(value, average[name]), name
    # the best snapshot is still there, and differs from the average the model holds
    assert best.snapshot is not None
    state = module.state_dict()
    assert any(not torch.equal(state[k], v) for k, v in best.snapshot.items())
    saved = torch.load(tmp_path / "best.pt")
    assert all(torch.equal(saved[k], v) for k, v in best.snapshot.items())


def test_best_snapshot_restores_the_best_when_the_run_stops_before_swa_ends(tmp_path):
    module = Regressing(lr=0.2)  # its validation loss climbs from epoch 2: patience=1 stops it at epoch 3
    best = BestSnapshot("val_loss", "min", patience=1, verbose=False)
    _, trainer = swa_fit(tmp_path, module, best, num_sanity_val_steps=0, max_epochs=8)
    assert best.stopped_epoch is not None and trainer.current_epoch < 8
    assert best.restored and not best.kept_swa_average
    assert all(torch.equal(v, best.snapshot[k]) for k, v in module.state_dict().items())
