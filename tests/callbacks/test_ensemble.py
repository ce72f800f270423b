"""SnapshotEnsemble on a real (tiny) Trainer: snapshots at cycle ends, the ensemble's evaluation, save and load."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_cyclic import Ensemble, OneCycle, SnapshotEnsemble, WarmRestarts
from lightning_cyclic.callbacks.best import cpu_state
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


class Classifier(TinyModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))


class StepWeights(Callback):
    """Weights after every optimizer step, by global_step."""

    def __init__(self):
        self.by_step = {}

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.by_step[trainer.global_step] = cpu_state(pl_module)


def fit(tmp_path, callbacks, **kwargs):
    module = Classifier()
    trainer = tiny_trainer(tmp_path, callbacks, num_sanity_val_steps=0, **kwargs)
    trainer.fit(module, tiny_loader(learnable=True), tiny_loader(n=24, seed=5, learnable=True))
    return module, trainer


@pytest.mark.parametrize(
    "cycle_len, cycle_mult, epochs, max_snapshots, steps",
    [
        (1, 1, 4, 3, [16, 24, 32]),  # a cycle per epoch (8 steps), the last 3 kept
        (1, 2, 7, 5, [8, 24, 56]),  # cycles of 1, 2, 4 epochs
        (2, 1, 5, 5, [16, 32]),  # the third cycle has not ended when training stops
    ],
)
def test_snapshots_are_the_weights_at_each_cycle_end(tmp_path, cycle_len, cycle_mult, epochs, max_snapshots, steps):
    ensemble, weights = SnapshotEnsemble(max_snapshots=max_snapshots), StepWeights()
    restarts = WarmRestarts(max_lr=0.3, cycle_len=cycle_len, cycle_mult=cycle_mult, interval="epoch")
    module, _ = fit(tmp_path, [restarts, ensemble, weights], max_epochs=epochs)
    assert [s["step"] for s in ensemble.snapshots] == steps
    for snap in ensemble.snapshots:
        for name, value in snap["state"].items():
            assert torch.equal(value, weights.by_step[snap["step"]][name])
    # each snapshot follows the cycle's last step, where the lr is lowest; the next step restarts at the peak
    lrs = {step: lr for step, lr, _, _ in module.seen}
    for step in steps:
        assert lrs[step - 1] < lrs[step - 2] and lrs.get(step, 0.3) == pytest.approx(0.3)


def test_every_n_epochs_with_another_schedule(tmp_path):
    ensemble = SnapshotEnsemble(max_snapshots=10, every_n_epochs=2)
    fit(tmp_path, [OneCycle(max_lr=0.3), ensemble], max_epochs=5)
    assert [(s["epoch"], s["step"]) for s in ensemble.snapshots] == [(1, 16), (3, 32)]


def test_ensemble_evaluation_is_the_mean_of_softmaxes(tmp_path):
    ensemble = SnapshotEnsemble(max_snapshots=3)
    module, _ = fit(tmp_path, [WarmRestarts(max_lr=0.3, cycle_len=1, interval="epoch"), ensemble], max_epochs=3)
    x, y = next(iter(tiny_loader(n=24, seed=5, learnable=True, batch_size=24)))
    model = ensemble.ensemble(module)
    probs = model(x)
    assert probs.shape == (24, 3) and torch.allclose(probs.sum(1), torch.ones(24))
    manual = []
    for snap in ensemble.snapshots:
        module.load_state_dict(snap["state"])
        manual.append(torch.softmax(module(x), -1))
    expected = torch.stack(manual).mean(0)
    assert torch.allclose(probs, expected, atol=1e-6)
    metrics = ensemble.metrics
    assert metrics["val_acc"] == pytest.approx(float((expected.argmax(1) == y).float().mean()))
    assert len(metrics["member_acc"]) == 3
    assert metrics["member_acc"][-1] == pytest.approx(float((manual[-1].argmax(1) == y).float().mean()))
    last_two = torch.stack(manual[1:]).mean(0)
    assert metrics["last_k_acc"][1] == pytest.approx(float((last_two.argmax(1) == y).float().mean()))
    assert metrics["last_k_acc"][0] == metrics["member_acc"][-1] and metrics["last_k_acc"][2] == metrics["val_acc"]


def test_the_training_model_keeps_its_own_weights_after_evaluation(tmp_path):
    weights = StepWeights()
    module, trainer = fit(
        tmp_path, [WarmRestarts(max_lr=0.3, cycle_len=1, interval="epoch"), SnapshotEnsemble(), weights], max_epochs=2
    )
    for name, value in module.state_dict().items():
        assert torch.equal(value, weights.by_step[trainer.global_step][name])


def test_save_and_load_predict_the_same(tmp_path):
    ensemble = SnapshotEnsemble(save_path=tmp_path / "ensemble.pt")
    module, _ = fit(tmp_path, [WarmRestarts(max_lr=0.3, cycle_len=1, interval="epoch"), ensemble], max_epochs=2)
    loaded = Ensemble.load(tmp_path / "ensemble.pt", Classifier())
    x = torch.randn(5, 4)
    assert torch.equal(loaded(x), ensemble.ensemble(module)(x))
    assert len(loaded.members) == 2


def test_without_restarts_or_rhythm_it_says_what_to_add(tmp_path):
    with pytest.raises(ValueError, match="this Trainer has no WarmRestarts callback; add one, or give every_n_epochs"):
        fit(tmp_path, [SnapshotEnsemble()], max_epochs=1)
    with pytest.raises(ValueError, match="max_snapshots must be >= 1, got 0"):
        SnapshotEnsemble(max_snapshots=0)
    with pytest.raises(ValueError, match="an ensemble needs at least one member"):
        Ensemble([])
    with pytest.raises(
        TypeError, match=r"predict must be a callable \(pl_module, batch\) -> \(logits, targets\), or None, got 'x'"
    ):
        SnapshotEnsemble(predict="x")
