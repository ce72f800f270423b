"""PlateauDecay: torch's ReduceLROnPlateau decision on scripted metrics, the best weights kept and put back,
warmup, resume, and DDP."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_cyclic import PlateauDecay
from tests.callbacks.test_best import Scripted, Weights, assert_weights, fit


class LrAtEpochStart(Callback):
    def __init__(self):
        self.lrs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def torch_plateau_lrs(values, mode, **kwargs):
    """The lr ReduceLROnPlateau gives each epoch when stepped with ``values`` at each epoch's end."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, **kwargs)
    lrs = []
    for v in values:
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(v)
    return [*lrs, opt.param_groups[0]["lr"]]  # and after the last evaluation


@pytest.mark.parametrize(
    "values, mode, kwargs",
    [
        ([5, 4, 4, 4, 4, 3.9, 3.9, 3.9, 3.9, 3.9], "min", dict(factor=0.5, patience=1)),
        ([5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4], "min", dict(factor=0.5, patience=1, cooldown=2)),
        ([1, 2, 2.0001, 2.1, 2.1, 2.1, 2.1], "max", dict(factor=0.1, patience=0, threshold=0.01)),
        ([1, 2, 2.0001, 2.1, 2.1, 2.1, 2.1], "max", dict(factor=0.1, patience=0, threshold=0.01, threshold_mode="abs")),
        ([5, 5, 5, 5, 5, 5, 5, 5], "min", dict(factor=0.1, patience=0, min_lr=0.0005)),  # the floor
    ],
)
def test_the_lr_follows_torchs_reduce_lr_on_plateau_evaluation_by_evaluation(tmp_path, values, mode, kwargs):
    seen = LrAtEpochStart()
    callback = PlateauDecay(monitor="score", mode=mode, verbose=False, **kwargs)
    fit(tmp_path, Scripted(values), [callback, seen])  # TinyModule's SGD starts at lr 0.1
    reference = torch_plateau_lrs(values, mode, **kwargs)
    assert seen.lrs == pytest.approx(reference[:-1])
    assert callback.lead_lr() == pytest.approx(reference[-1])
    # a cut recorded at each epoch whose end lowered the lr
    assert [c[0] for c in callback.cuts] == [e for e in range(len(values)) if reference[e + 1] < reference[e]]


def test_restore_best_puts_the_best_weights_back_before_each_cut_and_at_the_end(tmp_path):
    weights, seen = Weights(), LrAtEpochStart()
    callback = PlateauDecay(monitor="score", factor=0.5, patience=1, restore_best=True, verbose=False)
    module = Scripted([5, 3, 4, 4, 2.5, 4, 4, 4])  # best at 1, plateau, cut after 3; best at 4, cut after 6
    trainer = fit(tmp_path, module, [callback, weights, seen])

    assert [c[0] for c in callback.cuts] == [3, 6]
    assert seen.lrs[4] == pytest.approx(0.05) and seen.lrs[7] == pytest.approx(0.025)
    assert callback.best_epoch == 4 and trainer.current_epoch == 8
    assert_weights(module, weights.by_epoch[4])  # the best, put back at the end of fit
    assert callback.describe(trainer) == "PlateauDecay on score, lr 0.1 -> 0.025, 2 cuts (after epochs 3, 6)"


def test_restore_best_continues_from_the_best_point(tmp_path):
    """The weights that epoch 4 starts training from are epoch 1's, the best when the cut came."""
    starts = {}

    class AtEpochStart(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            starts[trainer.current_epoch] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    weights = Weights()
    callback = PlateauDecay(monitor="score", factor=0.5, patience=1, restore_best=True, verbose=False)
    fit(tmp_path, Scripted([5, 3, 4, 4, 4]), [callback, weights, AtEpochStart()])
    assert_weights_equal(starts[4], weights.by_epoch[1])
    assert not all(torch.equal(starts[3][k], weights.by_epoch[1][k]) for k in starts[3])  # before the cut: not


def assert_weights_equal(a, b):
    for name, value in a.items():
        assert torch.equal(value.cpu(), b[name]), name


def test_warmup_ramps_to_the_optimizers_lr_then_the_plateau_decides(tmp_path):
    class Lrs(Callback):
        def __init__(self):
            self.lrs = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.lrs.append(optimizer.param_groups[0]["lr"])

    seen = Lrs()
    callback = PlateauDecay(monitor="score", factor=0.5, patience=0, warmup=1, interval="epoch", verbose=False)
    fit(tmp_path, Scripted([5, 5, 5]), [callback, seen])  # 32 samples / 8: 4 steps an epoch
    assert seen.lrs[:4] == pytest.approx([0.0, 0.025, 0.05, 0.075])
    assert seen.lrs[4:8] == pytest.approx([0.1] * 4)  # epoch 0 set the best: no cut
    assert seen.lrs[8:] == pytest.approx([0.05] * 4)  # epoch 1 did not improve, patience 0: cut


def test_a_resumed_run_keeps_its_cuts_counters_and_base_lr(tmp_path):
    values = [5, 4, 4, 4, 4, 4, 3, 3, 3, 3]
    seen_full = LrAtEpochStart()
    fit(tmp_path / "full", Scripted(values), [PlateauDecay(monitor="score", factor=0.5, patience=1), seen_full])
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    fit(tmp_path / "a", Scripted(values), [PlateauDecay(monitor="score", factor=0.5, patience=1), ckpt],
        max_epochs=5, enable_checkpointing=True)  # fmt: skip
    seen = LrAtEpochStart()
    callback = PlateauDecay(monitor="score", factor=0.5, patience=1)
    fit(tmp_path / "b", Scripted(values), [callback, seen], ckpt_path=str(tmp_path / "ckpt" / "epoch=4.ckpt"))
    assert seen.lrs == pytest.approx(seen_full.lrs[5:])
    assert [c[0] for c in callback.cuts][:1] == [3]  # the cut before the checkpoint is remembered


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(factor=1.0), "factor must be in (0, 1), got 1.0"),
        (dict(patience=-1), "patience must be >= 0, got -1"),
        (dict(threshold_mode="relative"), "threshold_mode must be one of 'rel', 'abs'"),
        (dict(min_lr=-1), "min_lr must be >= 0, got -1"),
        (dict(interval="batch"), "interval must be one of 'step', 'epoch'"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        PlateauDecay(**kwargs)
