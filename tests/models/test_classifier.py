"""The application's LightningModule: discriminative lrs and soft targets."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lightning_cyclic import OneCycle
from lightning_cyclic.models import MLP, Classifier
from tests.helpers import tiny_loader, tiny_trainer


def make(lr_mult=None):
    return Classifier(partial(MLP, hidden=[8, 8]), partial(torch.optim.SGD, lr=0.1, momentum=0.9), (4,), 3, lr_mult)


def test_lr_mult_builds_groups_and_schedules_keep_the_ratios(tmp_path):
    module = make({"net.1": 0.1, "net.3": 0.5})  # the two hidden layers; the head keeps the full lr
    lrs = []
    from lightning.pytorch.callbacks import Callback

    class Lrs(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            lrs.append([g["lr"] for g in optimizer.param_groups])

    trainer = tiny_trainer(tmp_path, [OneCycle(max_lr=0.4), Lrs()], max_epochs=1)
    trainer.fit(module, tiny_loader())
    groups = trainer.optimizers[0].param_groups
    assert [len(g["params"]) for g in groups] == [2, 2, 2]  # weight and bias per layer, by multiplier
    for step in lrs:
        assert step[0] == pytest.approx(0.1 * step[2]) and step[1] == pytest.approx(0.5 * step[2])
    assert 0.35 < max(s[2] for s in lrs) <= 0.4  # the schedule drives the largest group


def test_lr_mult_that_matches_nothing_lists_the_layers():
    with pytest.raises(ValueError, match=r"lr_mult names 'net.9', which matches no parameter; the layers are: net.1"):
        make({"net.9": 0.1})
    with pytest.raises(ValueError, match=r"lr_mult\['net.1'\] must be > 0, got -1.0"):
        make({"net.1": -1})


def test_soft_targets_train_and_count_accuracy_on_their_argmax(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    x, y = next(iter(tiny_loader(n=64, batch_size=64, learnable=True)))
    soft = torch.nn.functional.one_hot(y, 3).float() * 0.7 + 0.1  # rows sum to 1, argmax = y
    module = make()
    trainer = tiny_trainer(tmp_path, max_epochs=30)
    trainer.fit(module, DataLoader(TensorDataset(x, soft), batch_size=16))
    assert trainer.callback_metrics["train/acc"] > 0.8  # learnt y from soft targets


def test_trainer_test_reports_loss_and_accuracy_on_the_test_batches(tmp_path):
    module = make()
    trainer = tiny_trainer(tmp_path, max_epochs=30)
    trainer.fit(module, tiny_loader(n=64, batch_size=16, learnable=True))
    test = tiny_loader(n=48, batch_size=16, learnable=True)
    (metrics,) = trainer.test(module, test, verbose=False)
    module.eval()
    with torch.no_grad():
        pairs = [(module(x), y) for x, y in test]
    correct = sum(int((logits.argmax(-1) == y).sum()) for logits, y in pairs)
    loss = sum(float(torch.nn.functional.cross_entropy(logits, y)) for logits, y in pairs) / len(pairs)
    assert metrics["test/acc"] == pytest.approx(correct / 48) and metrics["test/acc"] > 0.8
    assert metrics["test/loss"] == pytest.approx(loss, rel=1e-5)
